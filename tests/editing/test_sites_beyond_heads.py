"""The sites beyond the heads: linear layers, FFN outputs, the residual stream; clear errors."""

import pytest
import torch

from jola_ray.editing.sites import (
    decoder_layers,
    find_ffn_sites,
    find_linear_sites,
    find_residual_sites,
)
from jola_ray.errors import UnsupportedModelError
from jola_ray.tiny import TINY_ARCHS


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_linear_sites_default_are_every_projection_of_every_layer(build, arch):
    model, _ = build(arch)
    sites = find_linear_sites(model)
    expected = [
        (i, name, m)
        for i, layer in enumerate(model.model.layers)
        for name, m in layer.named_modules()
        if isinstance(m, torch.nn.Linear)
    ]
    assert [(s.layer, s.name) for s in sites] == [(i, n) for i, n, _ in expected]
    assert all(s.module is m for s, (_, _, m) in zip(sites, expected, strict=True))
    assert all(s.out_features == s.module.weight.shape[0] for s in sites)
    assert any(s.name.endswith("o_proj") for s in sites)
    assert all(s.path == f"model.layers.{s.layer}.{s.name}" for s in sites)


def test_linear_sites_by_target_and_layer(build):
    model, _ = build("llama")
    sites = find_linear_sites(model, ["q_proj", "down_proj"], layers=[1])
    assert [(s.layer, s.name) for s in sites] == [(1, "self_attn.q_proj"), (1, "mlp.down_proj")]
    assert sites[0].module is model.model.layers[1].self_attn.q_proj


def test_missing_linear_target_names_model_type_and_what_exists(build):
    model, _ = build("phi3")  # fused qkv_proj / gate_up_proj
    with pytest.raises(UnsupportedModelError) as err:
        find_linear_sites(model, ["q_proj"])
    text = str(err.value)
    assert "'phi3'" in text and "'q_proj'" in text and "qkv_proj" in text


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_ffn_and_residual_sites(build, arch):
    model, _ = build(arch)
    ffn = find_ffn_sites(model)
    res = find_residual_sites(model, layers=[1])
    assert [s.module for s in ffn] == [layer.mlp for layer in model.model.layers]
    assert [s.module for s in res] == [model.model.layers[1]]
    assert all(s.hidden_size == 32 for s in ffn + res)


def test_missing_ffn_names_model_type(build):
    model, _ = build("llama")
    del model.model.layers[0].mlp
    with pytest.raises(UnsupportedModelError, match=r"'llama'.*layer 0 has no feed-forward"):
        find_ffn_sites(model)


def test_model_without_decoder_layers_names_model_type():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=64))
    for finder in (decoder_layers, find_ffn_sites, find_residual_sites, find_linear_sites):
        with pytest.raises(UnsupportedModelError, match="'gpt2'"):
            finder(model)


def test_layers_out_of_range(build):
    model, _ = build("qwen2")
    with pytest.raises(UnsupportedModelError, match=r"\[5\] out of range.*'qwen2' has 2"):
        find_residual_sites(model, layers=[0, 5])
