"""JoLA's gate ablations (``gates: two | shared | none``) against the formula written out by hand,
and the per-part, per-layer gate statistics reported each epoch."""

import math

import pytest
import torch

from jola_ray.editing import JoLAConfig, apply_edit, find_head_sites, load_edit, save_edit

from .conftest import capture_o_proj

LN11 = math.log(11.0)
H, D, L = 4, 8, 2  # the tiny llama: 4 heads of 8 dims, 2 layers


def _by_hand(z, o_proj, m, a, g_mul, g_add):
    """``(1 + g_m m) * z + g_a a`` per head with an explicit loop, then o_proj by hand.

    z: (b, t, H*d); m, a: [H, d]; g_mul, g_add: [H] (python floats or tensors).
    """
    expected = z.clone()
    for h in range(H):
        cols = slice(h * D, (h + 1) * D)
        expected[:, :, cols] = (1 + g_mul[h] * m[h]) * z[:, :, cols] + g_add[h] * a[h]
    y = expected @ o_proj.weight.detach().T
    return y if o_proj.bias is None else y + o_proj.bias.detach()


def _eval_gate(la: float) -> float:
    return min(1.0, max(0.0, 1.2 / (1 + math.exp(-la)) - 0.1))


def _randomise(edit, seed=3):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in edit.named_parameters():
            if "log_alpha" in name:
                param.copy_((torch.rand(param.shape, generator=gen) * 2 - 1) * 3.0)
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)


def _forward(model, batch):
    ids, mask = batch
    raw, out, handles = capture_o_proj(model)
    model(input_ids=ids, attention_mask=mask)
    for h in handles:
        h.remove()
    return raw, out


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_no_gates_is_the_ungated_formula(build, batch, mode):
    model, _ = build("llama")
    edit = apply_edit(model, JoLAConfig(gates="none", seed=0))
    assert {n for n, _ in edit.named_parameters()} == {"add_vector", "mul_vector"}
    assert sum(p.numel() for p in edit.parameters()) == L * 2 * H * D
    _randomise(edit)
    model.train(mode == "train")
    raw, out = _forward(model, batch)
    ones = [1.0] * H
    for site in find_head_sites(model):
        m, a = edit.mul_vector[site.layer].detach(), edit.add_vector[site.layer].detach()
        expected = _by_hand(raw[site.layer], site.o_proj, m, a, ones, ones)
        torch.testing.assert_close(out[site.layer], expected, rtol=1e-5, atol=1e-5)
    penalty = edit.penalty()
    assert float(penalty) == 0.0 and penalty.shape == ()
    assert edit.open_gate_fraction() == 1.0
    assert edit.gate_statistics()["open_gate_fraction_add_l1"] == 1.0


def test_shared_gate_multiplies_both_parts_in_training(build, batch):
    model, _ = build("llama")
    edit = apply_edit(model, JoLAConfig(gates="shared", seed=0))
    names = {n for n, _ in edit.named_parameters()}
    assert names == {"add_vector", "mul_vector", "shared_log_alpha"}
    assert sum(p.numel() for p in edit.parameters()) == L * (2 * H * D + H)
    _randomise(edit)
    model.train()
    with edit.record_gates() as recorded:
        raw, out = _forward(model, batch)
    for (layer, g), site in zip(recorded, find_head_sites(model), strict=True):
        assert torch.equal(g["add"], g["mul"])  # one sample gates both parts
        m, a = edit.mul_vector[layer].detach(), edit.add_vector[layer].detach()
        expected = _by_hand(raw[layer], site.o_proj, m, a, g["mul"], g["add"])
        torch.testing.assert_close(out[layer], expected, rtol=1e-5, atol=1e-5)
    # penalty (paper form): gate_lambda * sum over the H*L shared gates of P(g != 0)
    la = edit.shared_log_alpha.detach().flatten().tolist()
    p_open = sum(1 / (1 + math.exp(-(x - 0.33 * math.log(0.1 / 1.1)))) for x in la)
    assert math.isclose(float(edit.penalty().detach()), edit.gate_lambda * p_open, rel_tol=1e-5)


def test_shared_gate_at_evaluation_and_round_trip(build, batch, tmp_path):
    model, _ = build("llama")
    edit = apply_edit(model, JoLAConfig(gates="shared", seed=0))
    _randomise(edit)
    model.eval()
    raw, out = _forward(model, batch)
    for site in find_head_sites(model):
        g = [_eval_gate(float(x)) for x in edit.shared_log_alpha[site.layer].detach()]
        m, a = edit.mul_vector[site.layer].detach(), edit.add_vector[site.layer].detach()
        expected = _by_hand(raw[site.layer], site.o_proj, m, a, g, g)
        torch.testing.assert_close(out[site.layer], expected, rtol=1e-5, atol=1e-5)
    path = save_edit(edit, tmp_path / "edit.safetensors")
    edit.remove()
    again = load_edit(model, path)
    assert again.config.gates == "shared"
    _, out2 = _forward(model, batch)
    for layer in out:
        torch.testing.assert_close(out2[layer], out[layer])


def test_same_seed_same_vectors_for_every_gate_variant(build):
    vectors = {}
    for gates in ("two", "shared", "none"):
        model, _ = build("llama")
        edit = apply_edit(model, JoLAConfig(gates=gates, seed=7))
        vectors[gates] = (edit.add_vector.detach().clone(), edit.mul_vector.detach().clone())
    for gates in ("shared", "none"):
        assert all(torch.equal(x, y) for x, y in zip(vectors[gates], vectors["two"], strict=True))


def test_gate_statistics_per_part_and_layer(build):
    model, _ = build("llama")
    edit = apply_edit(model, JoLAConfig(seed=0))
    closed, open_ = -LN11 - 0.1, LN11 + 0.1
    with torch.no_grad():
        edit.add_log_alpha.copy_(torch.tensor([[closed, closed, closed, open_], [open_] * 4]))
        edit.mul_log_alpha.copy_(torch.tensor([[closed] * 4, [closed, 0.0, 0.0, 0.0]]))
    stats = edit.gate_statistics()
    assert stats == {
        "open_gate_fraction_add": 5 / 8,
        "open_gate_fraction_add_l0": 1 / 4,
        "open_gate_fraction_add_l1": 1.0,
        "open_gate_fraction_mul": 3 / 8,
        "open_gate_fraction_mul_l0": 0.0,
        "open_gate_fraction_mul_l1": 3 / 4,
    }


def test_bad_gates_value_is_named():
    from jola_ray.errors import ConfigError

    with pytest.raises(ConfigError, match="gates: expected one of two, shared, none, got 'one'"):
        JoLAConfig(gates="one")
