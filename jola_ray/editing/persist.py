"""Save an edit alone (kilobytes, safetensors) and re-apply it to a matching model.

The file holds the edit's tensors (fp32) and, as safetensors string metadata, what is needed to
rebuild it: format version, method, model type, layers/heads/head_dim, and the config as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from jola_ray.editing.base import HeadEdit
from jola_ray.editing.configs import JoLAConfig, LoFiTConfig
from jola_ray.editing.edit import apply_edit
from jola_ray.editing.sites import find_head_sites, geometry_of
from jola_ray.errors import JolaRayError

FORMAT = "jola_ray.head_edit/1"
_CONFIGS = {cls.method: cls for cls in (JoLAConfig, LoFiTConfig)}


class EditFileError(JolaRayError):
    """An edit file is unreadable, not an edit, or does not match the model it is loaded into."""

    exit_code = 2


def save_edit(edit: HeadEdit, path: str | Path) -> Path:
    """Write ``edit``'s parameters and metadata to ``path`` (a .safetensors file)."""
    from safetensors.torch import save_file

    path = Path(path)
    g = edit.geometry
    tensors = {k: v.detach().cpu().contiguous() for k, v in edit.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "method": edit.method,
        "model_type": g.model_type,
        "num_layers": str(g.num_layers),
        "num_heads": str(g.num_heads),
        "head_dim": str(g.head_dim),
        "layers": json.dumps(edit.edited_layers()),
        "config": json.dumps(edit.config.to_dict()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def read_edit_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise EditFileError(f"edit file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise EditFileError(f"edit file {path} is not a safetensors file: {err}") from None
    if metadata.get("format") != FORMAT or metadata.get("method") not in _CONFIGS:
        raise EditFileError(
            f"{path} is not a jola-ray edit file (format={metadata.get('format')!r}, "
            f"method={metadata.get('method')!r})"
        )
    return metadata


def load_edit(model: nn.Module, path: str | Path) -> HeadEdit:
    """Apply the edit stored in ``path`` to ``model`` and return it.

    Raises ``EditFileError`` when the file is not an edit or its geometry (layers, heads,
    head_dim) differs from the model's, naming every mismatching field. A different model type
    with the same geometry is allowed (e.g. a fine-tuned variant registered under another name).
    """
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_edit_metadata(path)
    geometry = geometry_of(model, find_head_sites(model))
    mismatches = [
        f"{name}: file {meta[name]}, model {getattr(geometry, name)}"
        for name in ("num_layers", "num_heads", "head_dim")
        if int(meta[name]) != getattr(geometry, name)
    ]
    if mismatches:
        raise EditFileError(
            f"edit file {path} (saved for model type {meta['model_type']!r}) does not fit this "
            f"{geometry.model_type!r} model: " + "; ".join(mismatches)
        )
    config = _CONFIGS[meta["method"]].from_dict(json.loads(meta["config"]))
    tensors = load_file(str(path))
    edit = apply_edit(model, config, generator=0)  # values are overwritten below
    expected = edit.state_dict()
    if set(expected) != set(tensors) or any(
        expected[k].shape != tensors[k].shape for k in expected
    ):
        edit.remove()
        raise EditFileError(
            f"edit file {path} holds tensors {sorted((k, tuple(v.shape)) for k, v in tensors.items())}, "
            f"the config needs {sorted((k, tuple(v.shape)) for k, v in expected.items())}"
        )
    edit.load_state_dict(tensors)
    return edit
