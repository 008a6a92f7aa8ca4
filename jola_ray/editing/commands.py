"""``jola-ray params``: how many parameters an edit trains on a model, without its weights.

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
        help="count an edit's trainable parameters on a model (no weights loaded)",
        description=(
            "How many parameters an edit trains on a model, without its weights. The model is\n"
            "built from its config on the meta device, so a 70B config answers in seconds.\n"
            "MODEL is a hub id (from the local cache when HF_HUB_OFFLINE is set), a local model\n"
            "directory, a bare config.json or a tiny-<arch> spec."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", required=True, help="hub id, model dir, config.json or tiny-<arch>"
    )
    parser.add_argument(
        "--method",
        choices=("jola", "lofit"),
        default="jola",
        help="the edit to count (default: jola)",
    )
    parser.add_argument(
        "--top-k",
        dest="top_k",
        type=int,
        default=None,
        help="LoFiT stage-2 heads (default: 10%% of all heads)",
    )
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


def describe(spec: str, method: str, top_k: int | None) -> dict:
    """The numbers ``params`` prints, as a dict (also handy for tests and notebooks)."""
    from jola_ray.editing.configs import JoLAConfig, LoFiTConfig, default_top_k
    from jola_ray.editing.edit import build_meta_model, count_edit_params
    from jola_ray.editing.sites import find_head_sites, geometry_of, text_config

    config = load_model_config(spec)
    model = build_meta_model(config)
    g = geometry_of(model, find_head_sites(model))
    base = sum(p.numel() for p in model.parameters())
    out = {
        "model": spec,
        "model_type": g.model_type,
        "layers": g.num_layers,
        "heads": g.num_heads,
        "kv_heads": getattr(text_config(config), "num_key_value_heads", None),
        "head_dim": g.head_dim,
        "base_params": base,
        "method": method,
    }
    if method == "jola":
        out["trainable_params"] = count_edit_params(model, JoLAConfig())
    else:
        k = top_k or default_top_k(g.num_layers, g.num_heads)
        if not 0 < k <= g.total_heads:
            raise JolaRayError(f"--top-k: expected 1..{g.total_heads}, got {k}")
        out["top_k"] = k
        out["stage1_params"] = count_edit_params(model, LoFiTConfig(stage="scale"))
        out["trainable_params"] = count_edit_params(model, LoFiTConfig(stage="bias", top_k=k))
    return out


def run_params(args) -> int:
    info = describe(args.model, args.method, args.top_k)
    share = 100.0 * info["trainable_params"] / max(info["base_params"], 1)
    print(f"model       {info['model']} ({info['model_type']})")
    print(
        f"geometry    {info['layers']} layers x {info['heads']} heads "
        f"(kv heads {info['kv_heads']}), head_dim {info['head_dim']}"
    )
    print(f"base params {info['base_params']:,}")
    if info["method"] == "jola":
        print(f"jola        {info['trainable_params']:,} trainable ({share:.4f}% of base)")
    else:
        print(f"lofit       stage 1 (scale, all heads): {info['stage1_params']:,} trainable")
        print(
            f"            stage 2 (bias, top {info['top_k']} heads): "
            f"{info['trainable_params']:,} trainable ({share:.4f}% of base)"
        )
    return 0
