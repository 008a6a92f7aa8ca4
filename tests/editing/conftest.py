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


def capture_o_proj(model):
    """Hooks recording each o_proj's raw input (before an edit's hook) and its output, per
    layer: ``(raw, out, handles)``."""
    from jola_ray.editing import find_head_sites

    raw, out, handles = {}, {}, []
    for site in find_head_sites(model):

        def pre(mod, args, layer=site.layer):
            raw[layer] = args[0].detach().clone()

        def post(mod, args, output, layer=site.layer):
            out[layer] = output.detach().clone()

        handles.append(site.o_proj.register_forward_pre_hook(pre, prepend=True))
        handles.append(site.o_proj.register_forward_hook(post))
    return raw, out, handles
