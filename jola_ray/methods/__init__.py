"""Methods as plug-ins: one module per method, one registry (see ``base.py`` for the interface).

from jola_ray.methods import registry
method = registry.get("jola")
cfg, problems = method.build_config({"temperature": 0.5})
for stage in method.stages(cfg): ...
"""
