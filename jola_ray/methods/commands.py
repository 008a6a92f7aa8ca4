"""``jola-ray params``: how many parameters a method trains on a model, without its weights.

Any registered method (``--method``), with its settings as flags (``--lofit.top_k 3``,
``--lora.r 16``); the count is the method module's own (``Method.count``).

The model is built from its config on the meta device, so a 70B config answers in seconds.
MODEL is a hub id (from the local cache when HF_HUB_OFFLINE is set), a local model directory,
a bare ``config.json`` or a ``tiny-<arch>`` spec.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from jola_ray.errors import JolaRayError, UnsupportedModelError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "params",
        help="count a method's trainable parameters on a model (no weights loaded)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", required=True, help="hub id, model dir, config.json or tiny-<arch>"
    )
    from jola_ray.methods import registry
    from jola_ray.settings import add_setting_flags

    names = [n for n in registry.names() if registry.get(n).count is not None]
    parser.add_argument("--method", choices=names, default=names[0] if names else None)
    specs = {
        f"{m.name}.{name}": f for m in registry.all_methods() for name, f in m.fields().items()
    }
    add_setting_flags(parser, specs, {})
    parser.set_defaults(func=run_params)


def load_model_config(spec: str):
    """The HF config named by ``spec`` (see module docstring); clear errors, no traceback."""
    from jola_ray.tiny import parse_tiny_spec, tiny_config

    arch = parse_tiny_spec(spec)
    if arch is not None:
        return tiny_config(arch)
    from transformers import AutoConfig

    path = Path(spec)
    if path.is_file():
        try:
            fields = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise JolaRayError(f"cannot read model config {path}: {err}") from None
        model_type = fields.pop("model_type", None) if isinstance(fields, dict) else None
        if not model_type:
            raise JolaRayError(f"{path}: no `model_type` field; is this a model's config.json?")
        try:
            return AutoConfig.for_model(model_type, **fields)
        except ValueError as err:
            raise UnsupportedModelError(f"{path}: model_type {model_type!r}: {err}") from None
    try:
        return AutoConfig.from_pretrained(spec)
    except (OSError, ValueError) as err:
        if path.is_dir():
            raise JolaRayError(f"cannot read a model config in {path}: {err}") from None
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        hint = (
            "HF_HUB_OFFLINE is set and it is not in the local cache"
            if offline
            else "not a local path, and the hub did not provide it"
        )
        raise JolaRayError(f"cannot load model config {spec!r}: {hint} ({err})") from None


def describe(spec: str, method: str, method_settings: dict | None = None) -> dict:
    """The numbers ``params`` prints, as a dict (also handy for tests and notebooks).

    ``method_settings``: the method's settings by bare name (``{"top_k": 3}``)."""
    from jola_ray.editing.edit import build_meta_model
    from jola_ray.editing.sites import find_head_sites, geometry_of, text_config
    from jola_ray.errors import ConfigError
    from jola_ray.methods import registry

    m = registry.get(method)
    cfg, problems = m.build_config(method_settings or {})
    if problems:
        raise ConfigError("; ".join(problems), problems)
    config = load_model_config(spec)
    model = build_meta_model(config)
    g = geometry_of(model, find_head_sites(model))
    base = sum(p.numel() for p in model.parameters())
    counted = m.count(model, cfg)
    extra = {}
    if isinstance(counted, dict):  # a method with stages reports each: {"trainable_params", ...}
        extra = {k: v for k, v in counted.items() if k != "trainable_params"}
        counted = counted["trainable_params"]
    return {
        "model": spec,
        "model_type": g.model_type,
        "layers": g.num_layers,
        "heads": g.num_heads,
        "kv_heads": getattr(text_config(config), "num_key_value_heads", None),
        "head_dim": g.head_dim,
        "base_params": base,
        "method": method,
        "trainable_params": int(counted),
        **extra,
    }


def run_params(args) -> int:
    prefix = f"{args.method}."
    chosen = {k[len(prefix) :]: v for k, v in vars(args).items() if k.startswith(prefix)}
    info = describe(args.model, args.method, chosen)
    share = 100.0 * info["trainable_params"] / max(info["base_params"], 1)
    print(f"model       {info['model']} ({info['model_type']})")
    print(
        f"geometry    {info['layers']} layers x {info['heads']} heads "
        f"(kv heads {info['kv_heads']}), head_dim {info['head_dim']}"
    )
    print(f"base params {info['base_params']:,}")
    print(f"{info['method']:<11} {info['trainable_params']:,} trainable ({share:.4f}% of base)")
    for key, value in info.items():
        if key not in _SHOWN:
            print(
                f"            {key}: {value:,}" if isinstance(value, int) else f"  {key}: {value}"
            )
    return 0


_SHOWN = (
    "model",
    "model_type",
    "layers",
    "heads",
    "kv_heads",
    "head_dim",
    "base_params",
    "method",
    "trainable_params",
)
