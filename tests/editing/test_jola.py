"""JoLA: identity at zero, the edited forward against a per-head loop, gates, penalty, training."""

import math

import pytest
import torch

from jola_ray.editing import JoLAConfig, apply_edit, find_head_sites
from jola_ray.tiny import TINY_ARCHS, build_tiny

from .conftest import capture_o_proj

LN11 = math.log(11.0)


def _logits(model, ids, mask):
    return model(input_ids=ids, attention_mask=mask).logits


def _randomise(edit, seed=3, spread=3.0):
    """Large edit vectors and log alphas spread over closed, partial and open gates."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in edit.named_parameters():
            if "log_alpha" in name:
                param.copy_((torch.rand(param.shape, generator=gen) * 2 - 1) * spread)
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_identity_at_zero_edit_every_arch(build, batch, arch):
    model, _ = build(arch)
    ids, mask = batch
    model.eval()
    ref_eval = _logits(model, ids, mask)
    model.train()
    ref_train = _logits(model, ids, mask)
    edit = apply_edit(model, JoLAConfig(seed=0))
    with torch.no_grad():
        edit.add_vector.zero_()
        edit.mul_vector.zero_()
    model.train()
    torch.testing.assert_close(_logits(model, ids, mask), ref_train)
    model.eval()
    torch.testing.assert_close(_logits(model, ids, mask), ref_eval)
    # and a non-zero edit does change the output (the hook is live on this architecture)
    _randomise(edit)
    assert not torch.allclose(_logits(model, ids, mask), ref_eval, atol=1e-4)


def _hand_o_proj(z, o_proj, m, a, g_add, g_mul, heads, per_example=False):
    """The JoLA formula with explicit loops over examples and heads, then o_proj by hand.

    z: (b, t, H*d) raw o_proj input; m, a: [H_e, d] vectors of the edited heads ``heads``.
    """
    d = m.shape[-1]
    expected = z.clone()
    for b in range(z.shape[0]):
        for j, h in enumerate(heads):
            cols = slice(h * d, (h + 1) * d)
            ga = g_add[b, j] if per_example else g_add[j]
            gm = g_mul[b, j] if per_example else g_mul[j]
            expected[b, :, cols] = (1 + gm * m[j]) * z[b, :, cols] + ga * a[j]
    y = expected @ o_proj.weight.detach().T
    if o_proj.bias is not None:
        y = y + o_proj.bias.detach()
    return y


def _eval_gates_by_hand(log_alpha_row):
    return torch.tensor(
        [
            min(1.0, max(0.0, 1.2 / (1 + math.exp(-float(la))) - 0.1))
            for la in log_alpha_row.detach()
        ]
    )


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_edited_forward_matches_per_head_loop(build, batch, arch, mode):
    model, _ = build(arch)
    ids, mask = batch
    raw0, _, handles0 = capture_o_proj(model)
    _logits(model, ids, mask)  # the untouched model's o_proj inputs
    for h in handles0:
        h.remove()
    edit = apply_edit(model, JoLAConfig(seed=1))
    _randomise(edit)
    raw, out, handles = capture_o_proj(model)
    model.train(mode == "train")
    with edit.record_gates() as recorded:
        _logits(model, ids, mask)
    for h in handles:
        h.remove()
    torch.testing.assert_close(raw[0], raw0[0])  # layer 0 sees the unedited model's input
    gates = dict(recorded)
    H = edit.geometry.num_heads
    for site in find_head_sites(model):
        layer = site.layer
        if mode == "eval":
            g_add = _eval_gates_by_hand(edit.add_log_alpha[layer])
            g_mul = _eval_gates_by_hand(edit.mul_log_alpha[layer])
            torch.testing.assert_close(gates[layer]["add"], g_add)
        else:
            g_add, g_mul = gates[layer]["add"], gates[layer]["mul"]
            assert g_add.shape == (H,) and ((g_add >= 0) & (g_add <= 1)).all()
        m, a = edit.mul_vector[layer].detach(), edit.add_vector[layer].detach()
        expected = _hand_o_proj(raw[layer], site.o_proj, m, a, g_add, g_mul, range(H))
        torch.testing.assert_close(out[layer], expected, rtol=1e-5, atol=1e-5)
    if mode == "train":  # the training gates are noisy samples, not the eval gates
        sampled = torch.stack([gates[s.layer]["add"] for s in find_head_sites(model)])
        assert not torch.allclose(sampled, edit.eval_gate_values()["add"])


def test_subset_and_per_example_gates_match_loop(build, batch):
    model, _ = build("qwen2")
    ids, mask = batch
    edit = apply_edit(model, JoLAConfig(layers=[1], heads=[0, 2], per_example_gates=True, seed=2))
    _randomise(edit, spread=1.0)
    assert edit.add_vector.shape == (1, 2, 8) and edit.add_log_alpha.shape == (1, 2)
    raw, out, handles = capture_o_proj(model)
    model.train()
    with edit.record_gates() as recorded:
        _logits(model, ids, mask)
    for h in handles:
        h.remove()
    layers = [layer for layer, _ in recorded]
    assert layers == [1]  # layer 0 is not hooked
    gates = recorded[0][1]
    assert gates["add"].shape == (ids.shape[0], 2)
    assert not torch.equal(gates["add"][0], gates["add"][1])  # one sample per example
    site = find_head_sites(model)[1]
    m, a = edit.mul_vector[0].detach(), edit.add_vector[0].detach()
    expected = _hand_o_proj(raw[1], site.o_proj, m, a, gates["add"], gates["mul"], [0, 2], True)
    torch.testing.assert_close(out[1], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("parts", "present", "absent"), [("add", "add", "mul"), ("mul", "mul", "add")]
)
def test_single_part_ablation(build, batch, parts, present, absent):
    model, _ = build("llama")
    edit = apply_edit(model, JoLAConfig(parts=parts, seed=0))
    names = {n for n, _ in edit.named_parameters()}
    assert names == {f"{present}_vector", f"{present}_log_alpha"}
    assert sum(p.numel() for p in edit.parameters()) == 2 * (4 * 8 + 4)
    _randomise(edit)
    raw, out, handles = capture_o_proj(model)
    ids, mask = batch
    _logits(model, ids, mask)
    for h in handles:
        h.remove()
    site = find_head_sites(model)[0]
    g = _eval_gates_by_hand(getattr(edit, f"{present}_log_alpha")[0])
    vec = getattr(edit, f"{present}_vector")[0].detach()
    zero_g, zero_v = torch.zeros(4), torch.zeros(4, 8)
    # the absent part is a zero vector behind a closed gate in the full formula
    if present == "add":
        expected = _hand_o_proj(raw[0], site.o_proj, zero_v, vec, g, zero_g, range(4))
    else:
        expected = _hand_o_proj(raw[0], site.o_proj, vec, zero_v, zero_g, g, range(4))
    torch.testing.assert_close(out[0], expected, rtol=1e-5, atol=1e-5)
    assert absent not in edit.eval_gate_values()


def test_trainable_count_tiny_and_only_edit_trains(build):
    model, _ = build("llama")
    edit = apply_edit(model, JoLAConfig())
    L, H, d = 2, 4, 8
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith("head_edit.") for n in trainable)
    assert sum(trainable.values()) == L * (2 * H * d + 2 * H) == 144
    from jola_ray.editing import count_edit_params
    from jola_ray.tiny import tiny_config

    assert count_edit_params(model, JoLAConfig()) == 144
    assert count_edit_params(tiny_config("llama"), JoLAConfig()) == 144  # meta build from config
    assert count_edit_params(model, JoLAConfig(layers=[1], heads=[0, 3])) == 2 * 8 * 2 + 2 * 2
    assert not model.lm_head.weight.requires_grad
    assert all(p.dtype == torch.float32 for p in edit.parameters())


REAL_CONFIGS = {
    # name: (fields, expected L*(2*H*d + 2*H))
    "Llama-3.1-8B": (
        dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
             intermediate_size=14336, vocab_size=128256),
        264_192,
    ),
    "Llama-3.2-1B": (
        dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
             intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True),
        66_560,
    ),
    "Qwen2.5-7B": (
        dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
             intermediate_size=18944, vocab_size=152064),
        202_272,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(REAL_CONFIGS))
def test_trainable_count_real_configs_on_meta(name):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    from jola_ray.editing import count_edit_params

    fields, expected = REAL_CONFIGS[name]
    config = (Qwen2Config if name.startswith("Qwen") else LlamaConfig)(**fields)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert count_edit_params(model, JoLAConfig()) == expected
    edit = apply_edit(model, JoLAConfig())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == sum(p.numel() for p in edit.parameters()) == expected


def test_optimizer_step_changes_only_edit(build, batch):
    model, _ = build("llama")
    ids, mask = batch
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    edit = apply_edit(model, JoLAConfig(seed=0))
    before = {n: p.detach().clone() for n, p in edit.named_parameters()}
    opt = torch.optim.AdamW(edit.parameters(), lr=1e-2)
    model.train()
    out = model(input_ids=ids, attention_mask=mask, labels=ids)
    (out.loss + edit.penalty()).backward()
    opt.step()
    for n, p in model.named_parameters():
        if n.startswith("head_edit."):
            assert not torch.equal(p, before[n.removeprefix("head_edit.")]), n
        else:
            assert torch.equal(p, base[n]), n
            assert p.grad is None, n


def _hook_counts(model):
    return [
        (name, len(m._forward_pre_hooks), len(m._forward_hooks))
        for name, m in model.named_modules()
    ]


def test_remove_restores_model_exactly(build, batch):
    model, _ = build("mistral")
    ids, mask = batch
    model.model.embed_tokens.weight.requires_grad_(False)  # a mixed set of flags to restore
    modules = [n for n, _ in model.named_modules()]
    params = [(n, p.requires_grad) for n, p in model.named_parameters()]
    hooks = _hook_counts(model)
    ref = _logits(model, ids, mask)
    edit = apply_edit(model, JoLAConfig(seed=0))
    _randomise(edit)
    assert hasattr(model, "head_edit")
    assert not torch.allclose(_logits(model, ids, mask), ref)
    edit.remove()
    assert not hasattr(model, "head_edit")
    assert [n for n, _ in model.named_modules()] == modules
    assert [(n, p.requires_grad) for n, p in model.named_parameters()] == params
    assert _hook_counts(model) == hooks
    assert torch.equal(_logits(model, ids, mask), ref)


def test_disabled_context_gives_untouched_forward(build, batch):
    model, _ = build("olmo2")
    ids, mask = batch
    ref = _logits(model, ids, mask)
    edit = apply_edit(model, JoLAConfig(seed=0))
    _randomise(edit)
    with edit.disabled():
        with edit.disabled():
            pass
        assert torch.equal(_logits(model, ids, mask), ref)
    assert not torch.allclose(_logits(model, ids, mask), ref)


def test_gate_mode_follows_model_training_flag(build):
    model, _ = build("llama")
    edit = apply_edit(model, JoLAConfig(seed=0))
    assert not edit.training
    model.train()
    assert edit.training
    model.eval()
    assert not edit.training


def test_gates_closed_below_minus_ln11(build, batch):
    model, _ = build("phi3")
    ids, mask = batch
    ref = _logits(model, ids, mask)
    edit = apply_edit(model, JoLAConfig(seed=0))
    _randomise(edit)
    with torch.no_grad():
        edit.add_log_alpha.fill_(-LN11 - 1e-3)
        edit.mul_log_alpha.fill_(-LN11 - 1e-3)
    table = edit.inspect()
    zero_fraction = float(((table.gate_add == 0) & (table.gate_mul == 0)).mean())
    assert zero_fraction == 1.0
    assert edit.open_gate_fraction() == 0.0
    assert not table.selected.any()
    torch.testing.assert_close(_logits(model, ids, mask), ref)  # closed gates: no edit at eval
    with torch.no_grad():
        edit.add_log_alpha[0, 1] = -LN11 + 1e-2
    assert edit.open_gate_fraction() == pytest.approx(1 / 16)


def test_init_distribution_and_seed():
    from jola_ray.editing.edit import build_meta_model
    from jola_ray.tiny import tiny_config

    config = tiny_config("llama", num_attention_heads=32, num_key_value_heads=8, hidden_size=256)
    model = build_meta_model(config).to_empty(device="cpu")
    edit = apply_edit(model, JoLAConfig(seed=7))
    bound = math.sqrt(6 / 33)
    la = edit.add_log_alpha.detach()
    assert la.abs().max() <= bound and la.abs().max() > 0.8 * bound
    assert abs(float(edit.add_vector.detach().std()) - 1e-3) < 2e-4
    edit.remove()
    again = apply_edit(model, JoLAConfig(), generator=torch.Generator().manual_seed(7))
    assert torch.equal(again.add_log_alpha, la)


def test_inspect_columns(build):
    model, _ = build("llama")
    edit = apply_edit(model, JoLAConfig(seed=0))
    table = edit.inspect()
    assert len(table) == 8
    for col in ("layer", "head", "gate_add", "gate_mul", "norm_add", "norm_mul", "selected"):
        assert col in table.columns
    torch.testing.assert_close(
        torch.tensor(table.norm_mul.values, dtype=torch.float32),
        edit.mul_vector.detach().norm(dim=-1).flatten(),
    )


def test_bf16_model_trains_fp32_edit(build, batch):
    model, _ = build("llama", dtype=torch.bfloat16)
    ids, mask = batch
    edit = apply_edit(model, JoLAConfig(seed=0))
    assert all(p.dtype == torch.float32 for p in edit.parameters())
    model.train()
    out = model(input_ids=ids, attention_mask=mask, labels=ids)
    assert out.logits.dtype == torch.bfloat16
    out.loss.backward()
    assert edit.mul_vector.grad is not None and edit.mul_vector.grad.dtype == torch.float32


def test_sdpa_and_eager_agree(build, batch):
    ids, mask = batch
    results = []
    for attn in ("sdpa", "eager"):
        model, _ = build_tiny("llama", attn_implementation=attn)
        edit = apply_edit(model, JoLAConfig(seed=0))
        _randomise(edit)
        results.append(_logits(model, ids, mask))
    torch.testing.assert_close(results[0], results[1], rtol=1e-4, atol=1e-4)


def test_activation_checkpointing_recomputes_the_same_gates(build, batch):
    """Checkpointing re-runs each layer's forward (and its gate sampling) during backward;
    the gates must come out the same, so the gradients equal those of a plain run."""
    ids, mask = batch
    grads = []
    for checkpointing in (False, True):
        model, _ = build("llama")
        edit = apply_edit(model, JoLAConfig(seed=0))
        if checkpointing:
            model.activation_checkpointing_enable({"use_reentrant": False})
            assert model.model.gradient_checkpointing
        model.train()
        torch.manual_seed(5)
        model(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()
        grads.append({n: p.grad.clone() for n, p in edit.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-7)
