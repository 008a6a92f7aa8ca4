"""Load the frozen base model and its tokenizer from a hub id, a local path or a tiny-<arch> spec.

The tokenizer gets a pad token without resizing the embeddings: a model without one pads with
its EOS token (labels are fixed before padding, so the pad never trains as a target). 4-bit NF4
(bitsandbytes) is for the largest models, as the paper ran the 70B model; it needs CUDA.
"""

from __future__ import annotations

import logging

import torch

from jola_ray.errors import ConfigError, TrainingError
from jola_ray.tiny import build_tiny, parse_tiny_spec

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a ConfigError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was asked for but no CUDA device is visible")
    return torch.device(device)


def load_model_and_tokenizer(cfg) -> tuple[torch.nn.Module, object, torch.device]:
    """Build ``(model, tokenizer, device)`` for ``cfg`` (a RunConfig); the model is in eval mode.

    Raises:
        ConfigError: unknown tiny architecture, a model that cannot be found, nf4 without
            CUDA or without bitsandbytes (the ``quant`` extra).
    """
    device = resolve_device(cfg.device)
    if device.type == "cuda" and cfg.gpu_memory_fraction < 1.0:
        torch.cuda.set_per_process_memory_fraction(cfg.gpu_memory_fraction, device)
    dtype = DTYPES[cfg.dtype]
    arch = parse_tiny_spec(cfg.model)
    if arch is not None:
        if cfg.quantization != "none":
            raise ConfigError(
                "quantization: tiny models cannot be quantized; use quantization none"
            )
        model, tok = build_tiny(
            arch, seed=0, attn_implementation=cfg.attn_implementation, dtype=dtype
        )
        model.to(device)
    else:
        model, tok = _load_pretrained(cfg, dtype, device)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
        log.info("tokenizer has no pad token; padding with eos %r", tok.eos_token)
    model.config.pad_token_id = tok.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tok.pad_token_id
    model.eval()
    return model, tok, device


QUANT_EXTRA = "jola-ray[quant]"


def require_bitsandbytes() -> None:
    """4-bit loading needs bitsandbytes, an optional extra (125 MB; GPU nodes only)."""
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(
            "quantization: nf4 (4-bit loading) needs bitsandbytes, which is not installed; "
            f"install the extra: pip install '{QUANT_EXTRA}' (or pip install -e '.[quant]'; "
            "scripts/install.sh adds it on a node with an NVIDIA GPU)"
        )


def _load_pretrained(cfg, dtype: torch.dtype, device: torch.device):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict = {
        "dtype": dtype,
        "trust_remote_code": cfg.trust_remote_code,
        "attn_implementation": cfg.attn_implementation,
    }
    if cfg.quantization == "nf4":
        require_bitsandbytes()
        if device.type != "cuda":
            raise ConfigError("quantization: nf4 (bitsandbytes 4-bit) needs a CUDA device")
        from transformers import BitsAndBytesConfig

        compute = dtype if dtype != torch.float32 else torch.bfloat16
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute
        )
        kwargs["device_map"] = {"": device.index or 0}
    try:
        tok = AutoTokenizer.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(cfg.model, **kwargs)
    except OSError as err:
        raise ConfigError(
            f"model: cannot load {cfg.model!r} ({err}); give a local path, a cached hub id "
            "(HF_HUB_OFFLINE=1 allows only cached ones) or tiny-<arch>"
        ) from err
    except torch.OutOfMemoryError as err:
        raise TrainingError(
            f"out of memory loading {cfg.model!r} in {cfg.dtype}: try dtype bf16 or quantization nf4"
        ) from err
    if cfg.quantization == "none":
        model.to(device)
    return model, tok
