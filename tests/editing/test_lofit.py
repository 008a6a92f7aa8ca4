"""LoFiT: identity at zero, both stages against per-head loops, top-K selection, L1 penalty."""

import pytest
import torch

from jola_ray.editing import (
    LoFiTConfig,
    apply_edit,
    count_edit_params,
    find_head_sites,
    select_top_heads,
)
from jola_ray.errors import ConfigError
from jola_ray.tiny import TINY_ARCHS

from .conftest import capture_o_proj


def _logits(model, ids, mask):
    return model(input_ids=ids, attention_mask=mask).logits


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_identity_at_zero_both_stages(build, batch, arch):
    model, _ = build(arch)
    ids, mask = batch
    ref = _logits(model, ids, mask)
    for config in (
        LoFiTConfig(stage="scale", seed=0),
        LoFiTConfig(stage="bias", heads=[(1, 2), (0, 0)]),
    ):
        edit = apply_edit(model, config)
        with torch.no_grad():
            for p in edit.parameters():
                p.zero_()
        for training in (True, False):
            model.train(training)
            torch.testing.assert_close(_logits(model, ids, mask), ref)
        model.eval()
        edit.remove()


def test_stage_scale_matches_loop_and_l1(build, batch):
    model, _ = build("llama")
    ids, mask = batch
    edit = apply_edit(model, LoFiTConfig(stage="scale", l1_lambda=0.01, seed=0))
    with torch.no_grad():
        edit.scale_vector.normal_(0, 0.5)
    raw, out, handles = capture_o_proj(model)
    _logits(model, ids, mask)
    for h in handles:
        h.remove()
    A = edit.scale_vector.detach()
    for site in find_head_sites(model):
        z = raw[site.layer].clone()
        for h in range(4):
            cols = slice(h * 8, (h + 1) * 8)
            z[..., cols] = (1 + A[site.layer, h]) * z[..., cols]
        torch.testing.assert_close(out[site.layer], z @ site.o_proj.weight.T, rtol=1e-5, atol=1e-5)
    l1 = 0.0
    for value in A.flatten().tolist():
        l1 += abs(value)
    assert float(edit.penalty().detach()) == pytest.approx(0.01 * l1, rel=1e-5)
    assert sum(p.numel() for p in edit.parameters()) == 2 * 4 * 8


def test_stage_bias_edits_selected_heads_only(build, batch):
    model, _ = build("qwen2")
    ids, mask = batch
    heads = [(1, 3), (0, 1), (1, 0)]
    edit = apply_edit(model, LoFiTConfig(stage="bias", heads=heads, seed=0))
    assert edit.bias_vector.shape == (3, 8)
    assert float(edit.penalty().detach()) == 0.0
    with torch.no_grad():
        edit.bias_vector.normal_(0, 0.5)
    raw, out, handles = capture_o_proj(model)
    _logits(model, ids, mask)
    for h in handles:
        h.remove()
    v = edit.bias_vector.detach()
    for site in find_head_sites(model):
        z = raw[site.layer].clone()
        for row, (layer, h) in enumerate(heads):
            if layer == site.layer:
                z[..., h * 8 : (h + 1) * 8] += v[row]
        y = z @ site.o_proj.weight.T  # Qwen2's o_proj has no bias
        assert site.o_proj.bias is None
        torch.testing.assert_close(out[site.layer], y, rtol=1e-5, atol=1e-5)
    table = edit.inspect()
    rows = table[table["selected"]]
    chosen = set(zip(rows["layer"], rows["head"], strict=True))
    assert chosen == set(heads)
    assert edit.open_gate_fraction() == pytest.approx(3 / 8)


def test_select_top_heads_against_hand_sorted_norms(build):
    model, _ = build("llama")
    edit = apply_edit(model, LoFiTConfig(stage="scale"))
    norms = [[0.5, 2.0, 0.1, 3.0], [2.0, 0.0, 1.5, 0.7]]  # a tie at 2.0: (0, 1) before (1, 0)
    with torch.no_grad():
        edit.scale_vector.zero_()
        for layer in range(2):
            for head in range(4):  # norm spread over two coordinates: (0.6 n, 0.8 n)
                edit.scale_vector[layer, head, 0] = 0.6 * norms[layer][head]
                edit.scale_vector[layer, head, 5] = -0.8 * norms[layer][head]
    by_hand = sorted(
        ((layer, head) for layer in range(2) for head in range(4)),
        key=lambda lh: (-norms[lh[0]][lh[1]], lh),
    )
    assert select_top_heads(edit, 5) == by_hand[:5] == [(0, 3), (0, 1), (1, 0), (1, 2), (1, 3)]
    assert select_top_heads(edit) == by_hand[:1]  # default K = max(1, int(0.1 * 8))
    with pytest.raises(ConfigError, match="top_k"):
        select_top_heads(edit, 9)


def test_lofit_counts(build):
    model, _ = build("llama")
    assert count_edit_params(model, LoFiTConfig(stage="scale")) == 2 * 4 * 8
    assert count_edit_params(model, LoFiTConfig(stage="bias", top_k=3)) == 3 * 8
    assert count_edit_params(model, LoFiTConfig(stage="bias")) == 1 * 8  # 10% of 8 heads, >= 1
    with pytest.raises(ConfigError, match="stage 'bias' needs"):
        apply_edit(model, LoFiTConfig(stage="bias"))
    with pytest.raises(ConfigError, match="out of range"):
        apply_edit(model, LoFiTConfig(stage="bias", heads=[(2, 0)]))
    assert not hasattr(model, "head_edit")


def test_config_errors_listed_at_once():
    with pytest.raises(ConfigError) as err:
        LoFiTConfig(stage="both", l1_lambda=-1, top_k=0)
    text = str(err.value)
    assert "stage" in text and "l1_lambda" in text and "top_k" in text
