"""Fixtures of the editing tests: tiny random models of every supported architecture."""

import pytest
import torch

from jola_ray.tiny import build_tiny

# Gemma 2 has no SDPA path in transformers; every other tiny model runs its default (SDPA).
_ATTN = {"gemma2": "eager"}


def _build(arch: str = "llama", **overrides):
    model, tokenizer = build_tiny(arch, attn_implementation=_ATTN.get(arch, "sdpa"), **overrides)
    return model, tokenizer


@pytest.fixture
def build():
    """``build(arch, **config_overrides) -> (model, tokenizer)`` (fresh, seeded, eval mode)."""
    return _build


@pytest.fixture
def batch():
    """Two right-padded prompts of the tiny tokenizer: ``(input_ids, attention_mask)``."""
    from jola_ray.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    enc = tok(["Is the sky blue?", "ok"], return_tensors="pt", padding=True)
    return enc["input_ids"], enc["attention_mask"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
