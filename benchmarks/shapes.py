"""Model shapes the harness measures, built on the target device with random weights.

``1b`` and ``8b`` copy the configs of Llama-3.2-1B and Llama-3.1-8B (hidden size, layers, heads,
KV heads, MLP width, vocabulary, tied or untied embeddings, RoPE), so timings match the real
models; the weights are random, so the figures are timings only. ``tiny`` is
``jola_ray.tiny``'s Llama (2 layers, 4 heads over 2 KV heads) for CPU smoke runs. Nothing is
downloaded: the char-level tiny tokenizer serves every shape (its ids exist in every
vocabulary; decoded ids outside it are dropped, which only affects texts, not timings).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Shape:
    """A model shape and the batch a training step uses (batch x seq_len tokens)."""

    name: str
    config: dict
    batch_size: int = 8
    seq_len: int = 256

    @property
    def tiny(self) -> bool:
        return self.name == "tiny"

    @property
    def tiny_vocab(self) -> bool:
        """Built on the tiny tokenizer's vocabulary (``jola_ray.tiny``), so its texts decode."""
        return self.tiny or bool(self.config.get("tiny_vocab"))


_LLAMA3_COMMON = dict(
    num_attention_heads=32,
    num_key_value_heads=8,
    vocab_size=128256,
    max_position_embeddings=131072,
    rms_norm_eps=1e-5,
    hidden_act="silu",
    bos_token_id=128000,
    eos_token_id=128001,
    attention_bias=False,
    mlp_bias=False,
)


def _rope(factor: float) -> dict:
    return {
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": factor,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }


SHAPES: dict[str, Shape] = {
    "tiny": Shape("tiny", {}),
    # The small CPU shape of the trial-time profile (issue 15): a Llama of hidden 512, 8 layers,
    # 8 heads over 2 KV heads (head_dim 64), MLP 1376, on the tiny char-level vocabulary, so a
    # saved copy runs the real demo tasks through `jola-ray train`.
    "cpu-small": Shape(
        "cpu-small",
        {
            "tiny_vocab": True,
            "hidden_size": 512,
            "intermediate_size": 1376,
            "num_hidden_layers": 8,
            "num_attention_heads": 8,
            "num_key_value_heads": 2,
        },
    ),
    # the same with a 32k-token vocabulary (Llama-2's size; the tiny tokenizer's ids are a
    # subset), where logits at every position cost what answer-only logits save
    "cpu-small-32k": Shape(
        "cpu-small-32k",
        {
            "tiny_vocab": True,
            "vocab_size": 32000,
            "hidden_size": 512,
            "intermediate_size": 1376,
            "num_hidden_layers": 8,
            "num_attention_heads": 8,
            "num_key_value_heads": 2,
        },
    ),
    # meta-llama/Llama-3.2-1B config.json
    "1b": Shape(
        "1b",
        {
            **_LLAMA3_COMMON,
            "hidden_size": 2048,
            "head_dim": 64,
            "intermediate_size": 8192,
            "num_hidden_layers": 16,
            "tie_word_embeddings": True,
            "rope_parameters": _rope(32.0),
        },
    ),
    # meta-llama/Llama-3.1-8B config.json
    "8b": Shape(
        "8b",
        {
            **_LLAMA3_COMMON,
            "hidden_size": 4096,
            "head_dim": 128,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "tie_word_embeddings": False,
            "rope_parameters": _rope(8.0),
        },
    ),
}


def get_shape(name: str) -> Shape:
    if name not in SHAPES:
        raise ValueError(f"unknown shape {name!r}; known: {', '.join(SHAPES)}")
    return SHAPES[name]


def default_dtype(device: str) -> torch.dtype:
    """bf16 on a GPU (as the anchors); fp32 on a CPU, where bf16 matmuls are emulated and slow."""
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def model_config(shape: Shape):
    """The transformers config of ``shape``."""
    if shape.tiny_vocab:
        from jola_ray.tiny import tiny_config

        overrides = {k: v for k, v in shape.config.items() if k != "tiny_vocab"}
        return tiny_config("llama", **overrides)
    from transformers import LlamaConfig

    return LlamaConfig(**shape.config)


def build_model(shape: Shape, device: str, dtype: torch.dtype | None = None, seed: int = 0):
    """``(model, tokenizer)``: ``shape`` with random weights, built directly on ``device``.

    SDPA attention, eval mode, no weight frozen yet (the callers freeze or edit it).
    """
    from transformers import LlamaForCausalLM

    from jola_ray.tiny import tiny_tokenizer

    dtype = dtype or default_dtype(device)
    config = model_config(shape)
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, attn_implementation="sdpa", dtype=dtype)
    model.eval()
    return model, tiny_tokenizer()


def random_batch(shape: Shape, vocab_size: int, device: str, seed: int = 0) -> dict:
    """A training batch of random token ids, every position labelled: (batch, seq_len)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (shape.batch_size, shape.seq_len), generator=gen)
    ids = ids.to(device)
    return {"input_ids": ids, "labels": ids.clone()}


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
