"""Tasks and their data: the registry, sources (hub or local files), prompt formats and seeded
low-resource sampling. See docs/data.md.

Names are imported lazily so that ``jola_ray.data.commands`` (imported by the CLI at start)
does not build the task registry.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "PROMPT_TEMPLATE": "jola_ray.data.task",
    "RESPONSE_MARKER": "jola_ray.data.task",
    "Example": "jola_ray.data.task",
    "Splits": "jola_ray.data.task",
    "Task": "jola_ray.data.task",
    "build_prompt": "jola_ray.data.task",
    "get_task": "jola_ray.data.registry",
    "list_tasks": "jola_ray.data.registry",
    "register_custom_task": "jola_ray.data.registry",
    "unregister_task": "jola_ray.data.registry",
    "load_pools": "jola_ray.data.loading",
    "load_splits": "jola_ray.data.loading",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jola_ray.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
