"""Settings: a dataclass field with its meaning and allowed values, and the one check of them.

Every user-facing setting (a ``RunConfig`` leaf, a method's field such as ``jola.temperature``)
is declared with ``setting(default, help, ...)``: its type, bounds, choices and help live in the
field's metadata. ``check_fields`` converts raw values (YAML, CLI strings, JSON) to those types
and checks them, returning every problem at once; ``RunConfig``, the method configs and the
search space all validate through it, so one message style covers every boundary.

Torch-free: the CLI and the sweep's dry run import it at start.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable
from dataclasses import field
from typing import Any

# The value kinds a setting may have. ``auto_float``: a number or the string "auto";
# ``int_list`` / ``str_list``: a list (also "a,b" or "a b" from the CLI).
KINDS = ("str", "int", "float", "bool", "auto_float", "int_list", "str_list", "json")


def setting(
    default: Any,
    help: str,
    *,
    kind: str | None = None,
    choices: tuple | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    optional: bool | None = None,
) -> Any:
    """A dataclass field with metadata: ``help`` (CLI and docs), ``kind`` (inferred from the
    default when it is not None), ``choices``, bounds (``ge`` >=, ``gt`` >, ``le`` <=, ``lt`` <)
    and ``optional`` (None allowed: "None" on the CLI; default: whether the default is None)."""
    if kind is None:
        if default is None:
            raise TypeError(f"setting {help!r}: give kind= when the default is None")
        kind = {bool: "bool", int: "int", float: "float", str: "str", list: "int_list"}[
            type(default)
        ]
    if kind not in KINDS:
        raise TypeError(f"setting kind {kind!r} is not one of {KINDS}")
    meta = {
        "help": help,
        "kind": kind,
        "choices": tuple(choices) if choices else None,
        "bounds": {
            k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None
        },
        "optional": default is None if optional is None else optional,
    }
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def default_of(f: dataclasses.Field) -> Any:
    """A field's default value (a fresh copy for list defaults)."""
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return f.default


def describe(f: dataclasses.Field) -> str:
    """The help text with its allowed values, for the CLI and ``docs``."""
    meta = f.metadata
    text = meta.get("help", "")
    if meta.get("choices"):
        text += f" [{'|'.join(map(str, meta['choices']))}]"
    bounds = meta.get("bounds") or {}
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    if bounds:
        text += " (" + ", ".join(f"{symbols[k]} {v:g}" for k, v in bounds.items()) + ")"
    return text


def check_fields(
    specs: dict[str, dataclasses.Field], raw: dict[str, Any], where: str = ""
) -> tuple[dict[str, Any], list[str]]:
    """Convert and check ``raw`` (name -> value) against ``specs`` (name -> field).

    Returns ``(values, problems)``: the converted values of the good fields, and one message per
    bad field (``<where><name>: ...``), unknown names included with a "did you mean".
    """
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, value in raw.items():
        f = specs.get(name)
        if f is None:
            known = [f"{where}{k}" for k in specs]
            problems.append(f"{where}{name}: unknown field{did_you_mean(where + name, known)}")
            continue
        try:
            values[name] = convert(f, value)
        except ValueError as err:
            problems.append(f"{where}{name}: {err}")
    return values, problems


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean a, b?)`` or ``""``. Names of the same form come first: a bare name is
    matched against bare names (``lrr`` -> ``lr``) before method settings (``lora.r``)."""
    known = list(known)
    same = [k for k in known if ("." in k) == ("." in str(name))]
    close = difflib.get_close_matches(str(name), same, n=3) or difflib.get_close_matches(
        str(name), known, n=3
    )
    return f" (did you mean {', '.join(close)}?)" if close else ""


def convert(f: dataclasses.Field, raw: Any) -> Any:
    """One value to the field's kind, then checked against its choices and bounds."""
    meta = f.metadata
    optional = meta.get("optional", False)
    if raw is None:
        if optional:
            return None
        raise ValueError("may not be empty")
    if optional and isinstance(raw, str) and raw.strip().lower() in ("none", "null"):
        return None
    value = _to_kind(meta.get("kind", "str"), raw)
    choices = meta.get("choices")
    if choices and value not in choices:
        close = did_you_mean(str(value), map(str, choices))
        raise ValueError(f"{value!r} is not one of {', '.join(map(str, choices))}{close}")
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            _check_bounds(item, meta.get("bounds") or {}, optional)
    return value


def _check_bounds(value: float, bounds: dict[str, float], optional: bool) -> None:
    tests = {
        "ge": (lambda v, b: v >= b, ">="),
        "gt": (lambda v, b: v > b, ">"),
        "le": (lambda v, b: v <= b, "<="),
        "lt": (lambda v, b: v < b, "<"),
    }
    failed = [
        f"{sym} {b:g}" for k, b in bounds.items() for ok, sym in [tests[k]] if not ok(value, b)
    ]
    if failed:
        tail = " (or None)" if optional else ""
        raise ValueError(f"must be {' and '.join(failed)}{tail}, got {value!r}")


def _to_kind(kind: str, raw: Any) -> Any:
    if kind == "auto_float":
        if isinstance(raw, str) and raw.strip().lower() == "auto":
            return "auto"
        return to_float(raw, "a number or 'auto'")
    if kind == "int_list":
        if isinstance(raw, str):
            raw = [p for p in raw.replace(",", " ").split() if p]
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = [raw]
        if not isinstance(raw, (list, tuple)):
            raise ValueError(f"expected a list of integers, got {raw!r}")
        return [to_int(x) for x in raw]
    if kind == "str_list":
        if isinstance(raw, str):
            raw = [p for p in raw.replace(",", " ").split() if p]
        if (
            not isinstance(raw, (list, tuple))
            or not raw
            or not all(isinstance(x, str) and x for x in raw)
        ):
            raise ValueError(f"expected a non-empty list of names, got {raw!r}")
        return list(raw)
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(raw, str) and raw.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {raw!r}")
    if kind == "int":
        return to_int(raw)
    if kind == "float":
        return to_float(raw)
    if kind == "json":
        return raw
    if not isinstance(raw, str):
        raise ValueError(f"expected a string, got {raw!r}")
    return raw


def to_int(raw: Any) -> int:
    """An integer from an int, an integral float or a numeric string; ValueError otherwise."""
    if isinstance(raw, bool):
        raise ValueError(f"expected an integer, got {raw!r}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str):
        try:
            return int(raw)
        except ValueError:
            pass
    raise ValueError(f"expected an integer, got {raw!r}")


def to_float(raw: Any, what: str = "a number") -> float:
    """A finite float from a number or a numeric string; ValueError otherwise."""
    if isinstance(raw, bool):
        raise ValueError(f"expected {what}, got {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"expected {what}, got {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"must be finite, got {raw!r}")
    return value


def add_setting_flags(parser, specs: dict[str, dataclasses.Field], notes: dict[str, str]) -> None:
    """One CLI flag per setting, spelled as its name: ``--lr``, ``--output-dir`` or
    ``--output_dir``, ``--jola.temperature``, ``--jola.gate-lambda`` or ``--jola.gate_lambda``.
    Values stay strings (``check_fields`` converts them); unset flags are absent."""
    import argparse

    for name, f in specs.items():
        note = notes.get(name)
        help_text = describe(f) + (f" ({note})" if note else "")
        help_text = help_text.replace("%", "%%")  # argparse formats help with %
        flags = ["--" + name.replace("_", "-")]
        if "_" in name:
            flags.append("--" + name)
        extra = (
            {"nargs": "?", "const": "true", "metavar": "BOOL"}
            if f.metadata.get("kind") == "bool"
            else {}
        )
        parser.add_argument(*flags, dest=name, default=argparse.SUPPRESS, help=help_text, **extra)


def config_dict(cfg: Any) -> dict[str, Any]:
    """A settings dataclass as a JSON-safe dict (tuples as lists): what a saved file's
    ``config`` metadata holds, for every method's file (edits and peft adapters alike)."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out
