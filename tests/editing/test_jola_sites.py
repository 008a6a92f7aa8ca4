"""JoLA at the component study's sites (``jola.site``: ffn, residual, bias and combinations),
against the formula applied by hand to each site's untouched output."""

import math

import pytest
import torch

from jola_ray.editing import JoLAConfig, apply_edit, count_edit_params, load_edit, save_edit
from jola_ray.errors import ConfigError

L, HIDDEN = 2, 32  # the tiny llama


def _eval_gate(la) -> float:
    return min(1.0, max(0.0, 1.2 / (1 + math.exp(-float(la.detach()))) - 0.1))


def _randomise(edit, seed=3):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in edit.named_parameters():
            if "log_alpha" in name:
                param.copy_((torch.rand(param.shape, generator=gen) * 2 - 1) * 3.0)
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)


def _hidden(output):
    return output[0] if isinstance(output, tuple) else output


def _record(modules, store, key):
    """Forward hooks keeping each module's output hidden states under ``store[key][i]``."""
    handles = []
    for i, module in enumerate(modules):

        def hook(mod, args, output, i=i):
            store.setdefault(key, {})[i] = _hidden(output).detach().clone()

        handles.append(module.register_forward_hook(hook))
    return handles


def _run(model, batch):
    ids, mask = batch
    return model(input_ids=ids, attention_mask=mask).logits


@pytest.mark.parametrize("site", ["ffn", "residual"])
@pytest.mark.parametrize("gates", ["two", "none"])
def test_layer_site_edit_is_the_formula(build, batch, site, gates):
    model, _ = build("llama")
    layers = model.model.layers
    modules = [layer.mlp if site == "ffn" else layer for layer in layers]
    seen: dict = {}
    raw = _record(modules, seen, "raw")  # registered first: sees the untouched output
    edit = apply_edit(model, JoLAConfig(site=site, gates=gates, seed=0))
    after = _record(modules, seen, "edited")  # registered after the edit's hook
    _randomise(edit)
    model.eval()
    _run(model, batch)
    group = edit.groups[site]
    for i in range(L):
        if gates == "none":
            g_add = g_mul = 1.0
        else:
            g_add = _eval_gate(group.add_log_alpha[i, 0])
            g_mul = _eval_gate(group.mul_log_alpha[i, 0])
        m, a = group.mul_vector[i].detach(), group.add_vector[i].detach()
        expected = (1 + g_mul * m) * seen["raw"][i] + g_add * a
        torch.testing.assert_close(seen["edited"][i], expected, rtol=1e-5, atol=1e-5)
    for h in raw + after:
        h.remove()
    assert sum(p.numel() for p in edit.parameters()) == count_edit_params(model, edit.config)
    expected_count = L * (2 * HIDDEN + (2 if gates == "two" else 0))
    assert count_edit_params(model, edit.config) == expected_count


def test_bias_site_adds_a_gated_bias_to_every_projection(build, batch):
    model, _ = build("llama")
    names = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
    names += ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    layer = model.model.layers[1]
    modules = [layer.get_submodule(n) for n in names]
    seen: dict = {}
    raw = _record(modules, seen, "raw")
    edit = apply_edit(model, JoLAConfig(site="bias", seed=0))
    after = _record(modules, seen, "edited")
    _randomise(edit)
    model.eval()
    _run(model, batch)
    group = edit.groups["bias"]
    assert not hasattr(group, "mul_vector")  # bias terms are additive
    start = 0
    for u, module in enumerate(modules):
        width = module.out_features
        b = group.add_vector[1, start : start + width].detach()
        expected = seen["raw"][u] + _eval_gate(group.add_log_alpha[1, u]) * b
        torch.testing.assert_close(seen["edited"][u], expected, rtol=1e-5, atol=1e-5)
        start += width
    for h in raw + after:
        h.remove()
    widths = sum(m.out_features for m in modules)
    assert count_edit_params(model, edit.config) == L * (widths + len(modules))


def test_combination_edits_heads_and_ffn_and_detaches_exactly(build, batch, tmp_path):
    model, _ = build("llama")
    model.eval()
    before = _run(model, batch)
    heads_only = apply_edit(model, JoLAConfig(seed=0))
    _randomise(heads_only)
    heads_logits = _run(model, batch)
    state = {k: v.clone() for k, v in heads_only.state_dict().items()}
    heads_only.remove()
    edit = apply_edit(model, JoLAConfig(site="heads+ffn", seed=0))
    with torch.no_grad():  # the head site as above, the ffn site zero: the head edit alone
        edit.heads.load_state_dict(state)
        for p in edit.groups["ffn"].parameters():
            p.zero_()
    torch.testing.assert_close(_run(model, batch), heads_logits)
    _randomise(edit, seed=5)
    both = _run(model, batch)
    assert not torch.allclose(both, heads_logits, atol=1e-4)
    # the penalty adds the sites: the head site's own plus 0.1/(L * 1) * sum P(open) of ffn's
    p_ffn = sum(
        1 / (1 + math.exp(-(float(x) - 0.33 * math.log(0.1 / 1.1))))
        for n in ("add", "mul")
        for x in getattr(edit.groups["ffn"], f"{n}_log_alpha").detach().flatten()
    )
    total = float(edit.heads.penalty().detach()) + 0.1 / L * p_ffn
    assert math.isclose(float(edit.penalty().detach()), total, rel_tol=1e-5)
    path = save_edit(edit, tmp_path / "e.safetensors")
    edit.remove()
    torch.testing.assert_close(_run(model, batch), before)  # detached: the model as it was
    again = load_edit(model, path)
    assert again.config.site == "heads+ffn"
    torch.testing.assert_close(_run(model, batch), both)


def test_gate_statistics_cover_every_site(build):
    model, _ = build("llama")
    edit = apply_edit(model, JoLAConfig(site="heads+residual", seed=0))
    closed = -math.log(11.0) - 0.1
    with torch.no_grad():
        edit.heads.add_log_alpha.fill_(closed)  # 2 layers x 4 heads closed
        edit.groups["residual"].add_log_alpha.fill_(5.0)  # 1 gate per layer, open
    stats = edit.gate_statistics()
    assert math.isclose(stats["open_gate_fraction_add"], 2 / 10, rel_tol=1e-6)  # 1 of 5 per layer
    assert math.isclose(stats["open_gate_fraction_add_l1"], 1 / 5, rel_tol=1e-6)
    assert edit.inspect()["layer"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]  # the head site's rows


def test_bad_sites_are_named():
    with pytest.raises(ConfigError, match="site: expected one of heads, ffn, residual, bias"):
        JoLAConfig(site="mlp")
    with pytest.raises(ConfigError, match="site: .*without repeats"):
        JoLAConfig(site="ffn+ffn")
    model_cfg = JoLAConfig(site="bias", parts="mul")
    from jola_ray.tiny import tiny_config

    with pytest.raises(ConfigError, match="the bias site is additive only"):
        count_edit_params(tiny_config("llama"), model_cfg)


def test_count_on_the_real_llama_8b_config():
    """ffn on Llama-3.1-8B: 32 layers x (2 x 4096 + 2 gates) = 262,208 (meta device)."""
    from transformers import LlamaConfig

    config = LlamaConfig(
        hidden_size=4096,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=14336,
        vocab_size=128256,
    )
    assert count_edit_params(config, JoLAConfig(site="ffn")) == 32 * (2 * 4096 + 2)
    # bias: q 4096 + k 1024 + v 1024 + o 4096 + gate 14336 + up 14336 + down 4096, 7 gates
    widths = 4096 + 1024 + 1024 + 4096 + 14336 + 14336 + 4096
    assert count_edit_params(config, JoLAConfig(site="bias")) == 32 * (widths + 7)


def test_sites_on_a_bf16_model_keep_its_dtype(build, batch):
    """fp32 edit parameters, activation-dtype arithmetic (as the head site)."""
    model, _ = build("llama")
    model.to(torch.bfloat16)
    edit = apply_edit(model, JoLAConfig(site="heads+ffn+residual+bias", seed=0))
    _randomise(edit)
    assert all(p.dtype == torch.float32 for p in edit.parameters())
    model.train()
    logits = _run(model, batch)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
    logits.float().sum().backward()
    assert all(p.grad is not None for p in edit.parameters())
