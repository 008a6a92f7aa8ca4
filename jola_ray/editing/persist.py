"""Save an edit alone (kilobytes, safetensors) and re-apply it to a matching model.

The file holds the edit's tensors (fp32) and, as safetensors string metadata, what is needed to
rebuild it: format version, method, model type, layers/heads/head_dim, the config as JSON, and
which base model it was trained on: the model class (``architecture``) and a fingerprint of the
base model's config (``base_fingerprint``), so an edit trained on one model refuses another with
the same head geometry.
"""

from __future__ import annotations

import hashlib
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


# Config keys that do not change what the base model computes: names and paths, dtype and
# quantization, attention kernel, runtime switches, special-token ids (the run sets pad_token_id).
_NOT_FINGERPRINTED = frozenset(
    {
        "name_or_path", "torch_dtype", "dtype", "transformers_version", "architectures",
        "quantization_config", "attn_implementation", "use_cache", "output_attentions",
        "output_hidden_states", "return_dict", "pad_token_id", "bos_token_id", "eos_token_id",
        "id2label", "label2id", "problem_type", "torchscript", "use_return_dict",
    }
)  # fmt: skip


def base_fingerprint(model: nn.Module) -> str:
    """16 hex digits of a SHA-256 over the base model's config, without the keys above."""
    config = getattr(model, "config", None)
    data = config.to_dict() if config is not None else {}
    kept = {k: v for k, v in data.items() if k not in _NOT_FINGERPRINTED and not k.startswith("_")}
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _architecture(model: nn.Module) -> str:
    return type(model).__name__


def base_model_metadata(model: nn.Module) -> dict[str, str]:
    """The metadata naming the base model a saved file was trained on (any method's file):
    the model class (``architecture``) and ``base_fingerprint``."""
    return {"architecture": _architecture(model), "base_fingerprint": base_fingerprint(model)}


class EditFileError(JolaRayError):
    """An edit file is unreadable, not an edit, or does not match the model it is loaded into."""

    exit_code = 2


def write_file(path: str | Path, tensors: dict, metadata: dict[str, str]) -> Path:
    """Write ``tensors`` (copied to CPU, contiguous) and string ``metadata`` to ``path`` (a
    .safetensors file, its folder created): every method's save file goes through here."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    save_file(cpu, str(path), metadata=metadata)
    return path


def save_edit(edit: HeadEdit, path: str | Path) -> Path:
    """Write ``edit``'s parameters and metadata to ``path`` (a .safetensors file)."""
    g = edit.geometry
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
    model = edit._model_ref() if edit._model_ref is not None else None
    if model is not None:  # the base model it is attached to (a detached edit has none)
        metadata.update(base_model_metadata(model))
    return write_file(path, edit.state_dict(), metadata)


def read_file_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a saved safetensors file (any method's); ``EditFileError`` when
    the file is missing or not safetensors. Callers check its ``format`` and ``method``."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise EditFileError(f"edit file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise EditFileError(f"edit file {path} is not a safetensors file: {err}") from None


def read_edit_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a head-edit file (``save_edit``); ``EditFileError`` for any other."""
    metadata = read_file_metadata(path)
    if metadata.get("format") != FORMAT or metadata.get("method") not in _CONFIGS:
        raise EditFileError(
            f"{path} is not a jola-ray edit file (format={metadata.get('format')!r}, "
            f"method={metadata.get('method')!r})"
        )
    return metadata


def load_edit(model: nn.Module, path: str | Path, *, any_model: bool = False) -> HeadEdit:
    """Apply the edit stored in ``path`` to ``model`` and return it.

    Raises ``EditFileError`` when the file is not an edit or its geometry (layers, heads,
    head_dim) differs from the model's, naming every mismatching field, or when it was saved
    from another base model (another model class, or a config whose fingerprint differs: an
    edit trained on tiny-llama does not load onto tiny-gemma2). ``any_model=True`` skips the
    base-model check (geometry is still checked). Files written before the check existed carry
    no fingerprint and load as before.
    """
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
    if not any_model:
        check_base_model(model, meta, path, "load_edit(..., any_model=True)")
    config = _CONFIGS[meta["method"]].from_dict(json.loads(meta["config"]))
    edit = apply_edit(model, config, generator=0)  # values are overwritten below
    return load_state(edit, path)


def load_state(edit: nn.Module, path: str | Path) -> nn.Module:
    """Copy the tensors of ``path`` into ``edit`` (already built from the file's config and
    attached); ``EditFileError`` naming the tensors when the file's do not fit, and the edit is
    removed. Shared by head edits and ``HookedEdit``s."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    expected = edit.state_dict()
    if set(expected) != set(tensors) or any(
        expected[k].shape != tensors[k].shape for k in expected
    ):
        edit.remove()
        raise EditFileError(
            f"edit file {path} holds tensors "
            f"{sorted((k, tuple(v.shape)) for k, v in tensors.items())}, the config needs "
            f"{sorted((k, tuple(v.shape)) for k, v in expected.items())}"
        )
    edit.load_state_dict(tensors)
    return edit


def check_base_model(model: nn.Module, meta: dict[str, str], path: Path, override: str) -> None:
    """Refuse a saved file (``meta``: its metadata) trained on another base model than
    ``model``; ``override`` names the Python call that skips the check. A file without the
    fields (written before they existed) passes."""
    saved_arch, saved_print = meta.get("architecture"), meta.get("base_fingerprint")
    here_arch, here_print = _architecture(model), base_fingerprint(model)
    problems = []
    if saved_arch is not None and saved_arch != here_arch:
        problems.append(f"architecture: file {saved_arch}, model {here_arch}")
    if saved_print is not None and saved_print != here_print:
        problems.append(f"base config fingerprint: file {saved_print}, model {here_print}")
    if problems:
        raise EditFileError(
            f"edit file {path} was trained on another base model (model type "
            f"{meta.get('model_type')!r}): " + "; ".join(problems) + ". Load it onto the model "
            f"it was trained on (the run's config.yaml names it; in Python, {override} skips "
            "this check)"
        )
