"""The one registry: method name -> the module that declares it (``METHOD`` in that module).

Adding a method is one module in ``jola_ray/methods/`` plus one line here (and its row in
``catalog.py`` if the report should place it). Modules are imported on first use; they import
without torch, so reading a method's config fields is cheap.
"""

from __future__ import annotations

import functools
import importlib

from jola_ray.errors import ConfigError
from jola_ray.methods.base import Method
from jola_ray.settings import did_you_mean

# The method of a run that names none (the project's subject).
DEFAULT = "jola"

MODULES: dict[str, str] = {
    "zero_shot": "jola_ray.methods.zero_shot",
    "jola": "jola_ray.methods.jola",
    "lofit": "jola_ray.methods.lofit",
    "lora": "jola_ray.methods.lora",
    "bitfit": "jola_ray.methods.bitfit",
    "red": "jola_ray.methods.red",
    "loreft": "jola_ray.methods.loreft",
    "repe": "jola_ray.methods.repe",
    "iti": "jola_ray.methods.iti",
}


def names() -> tuple[str, ...]:
    """Every registered method name, in registration order."""
    return tuple(MODULES)


@functools.cache
def get(name: str) -> Method:
    """The ``Method`` of ``name``; ``ConfigError`` with close matches for an unknown name."""
    module = MODULES.get(name)
    if module is None:
        raise ConfigError(
            f"method: unknown method {name!r}{did_you_mean(name, MODULES)}; "
            f"known: {', '.join(MODULES)}"
        )
    method = importlib.import_module(module).METHOD
    if method.name != name:
        raise RuntimeError(f"{module}.METHOD is named {method.name!r}, registered as {name!r}")
    return method


def all_methods() -> list[Method]:
    return [get(n) for n in MODULES]


def load_saved(model, path):
    """Re-attach a method saved with ``Attached.save`` (its metadata names the method)."""
    from jola_ray.editing.persist import EditFileError, read_file_metadata

    meta = read_file_metadata(path)
    name = meta.get("method")
    if name not in MODULES or get(name).load is None:
        raise EditFileError(
            f"{path} is not a jola-ray edit file (method={name!r}, format={meta.get('format')!r})"
        )
    return get(name).load(model, path)
