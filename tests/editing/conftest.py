"""Fixtures of the editing tests: tiny random models of every supported architecture."""

import pytest
import torch

from jola_ray.tiny import build_tiny


def _build(arch: str = "llama", **overrides):
    # SDPA, or eager where the architecture has no SDPA path (Gemma 2): build_tiny decides.
    return build_tiny(arch, **overrides)


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
