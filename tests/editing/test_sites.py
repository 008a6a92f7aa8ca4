"""Finding the heads generically, and clear errors for models without them."""

import pytest
import torch

from jola_ray.editing import JoLAConfig, apply_edit, find_head_sites
from jola_ray.errors import UnsupportedModelError
from jola_ray.tiny import TINY_ARCHS


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_sites_of_every_tiny_arch(build, arch):
    model, _ = build(arch)
    sites = find_head_sites(model)
    assert [s.layer for s in sites] == [0, 1]
    assert all((s.num_heads, s.head_dim) == (4, 8) for s in sites)
    for site, layer in zip(sites, model.model.layers, strict=True):
        assert site.o_proj is layer.self_attn.o_proj


def test_unknown_architecture_names_model_type_and_missing_projection():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=64))
    with pytest.raises(UnsupportedModelError) as err:
        apply_edit(model, JoLAConfig())
    text = str(err.value)
    assert "'gpt2'" in text and "o_proj" in text
    assert all(p.requires_grad for p in model.parameters())  # left untouched


def test_projection_width_mismatch_is_reported(build):
    model, _ = build("llama")
    model.config.head_dim = 16  # the config now disagrees with o_proj's 32 input features
    with pytest.raises(UnsupportedModelError, match=r"takes 32 input features.*4 \* 16"):
        find_head_sites(model)


def test_missing_head_count_is_reported():
    class Bare(torch.nn.Module):
        config = type("C", (), {"model_type": "bare"})()

        def __init__(self):
            super().__init__()
            attn = torch.nn.Module()
            attn.o_proj = torch.nn.Linear(8, 8)
            layer = torch.nn.Module()
            layer.self_attn = attn
            self.layers = torch.nn.ModuleList([layer])

    with pytest.raises(UnsupportedModelError, match="'bare'.*num_attention_heads"):
        find_head_sites(Bare())
