"""A trial pack's edit computes, slice by slice, what each member's edit computes alone: for
every ``jola.gates`` variant (two, shared, none) and ``jola.parts`` (both, add, mul), with gates
per forward or per example, a head subset or a layer subset, and LoFiT; members of different
variants mixed in one pack. Member-only sites (JoLA at ``ffn`` etc.) are refused."""

import pytest
import torch

from jola_ray.editing import JoLAConfig, LoFiTConfig, find_head_sites
from jola_ray.editing.pack import build_pack
from jola_ray.errors import ConfigError

B = 2  # rows per member


def _variants(gates: str) -> list[JoLAConfig]:
    """Four members of one gate variant that differ in parts, per-example gates and what they
    edit (member 3 leaves layer 0 alone: its slice there is the identity)."""
    return [
        JoLAConfig(gates=gates, parts="both", seed=1),
        JoLAConfig(gates=gates, parts="add", per_example_gates=True, seed=2),
        JoLAConfig(gates=gates, parts="mul", heads=(0, 2), seed=3),
        JoLAConfig(gates=gates, parts="both", layers=(1,), per_example_gates=True, seed=4),
    ]


def _randomise(pack, seed=5):
    """Vectors and gates away from their init, so every gate is neither 0 nor 1 everywhere."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in pack.named_parameters():
            if "log_alpha" in name:
                param.copy_((torch.rand(param.shape, generator=gen) * 2 - 1) * 2.0)
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)


def _seed_noise(pack, base=100):
    for k, member in enumerate(pack.members):
        member.noise_generator = torch.Generator().manual_seed(base + k)


def _ids(vocab: int, k: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    return [torch.randint(0, vocab, (B, 6), generator=gen) for _ in range(k)]


def _check(model, configs, training: bool):
    """Logits and parameter gradients of the packed forward vs each member attached alone."""
    pack = build_pack(model, configs)
    _randomise(pack)
    model.train(training)
    ids = _ids(model.config.vocab_size, len(configs))
    weights = [torch.randn(B, 6, model.config.vocab_size) for _ in configs]

    _seed_noise(pack)
    logits = model(input_ids=torch.cat(ids)).logits  # (K*B, t, V)
    sum((lg * w).sum() for lg, w in zip(logits.split(B), weights, strict=True)).backward()
    packed_grads = [
        {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
        for m in pack.members
    ]
    pack.zero_grad(set_to_none=True)

    _seed_noise(pack)
    for k in range(len(configs)):
        with pack.solo(k) as member:
            model.train(training)
            alone = model(input_ids=ids[k]).logits
            (alone * weights[k]).sum().backward()
            torch.testing.assert_close(logits[k * B : (k + 1) * B], alone, rtol=1e-5, atol=1e-6)
            grads = {n: p.grad for n, p in member.named_parameters() if p.grad is not None}
            assert sorted(grads) == sorted(packed_grads[k]), f"member {k}"
            assert grads, f"member {k} has trainable parameters"
            for name, grad in grads.items():
                torch.testing.assert_close(
                    packed_grads[k][name], grad, rtol=1e-5, atol=1e-6, msg=f"{k} {name}"
                )
    pack.remove()


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("gates", ["two", "shared", "none"])
def test_packed_jola_equals_each_member_alone(build, gates, training):
    model, _ = build("llama")
    _check(model, _variants(gates), training)


def test_members_of_different_gate_variants_and_lofit_stages(build):
    model, _ = build("llama")
    mixed = [
        JoLAConfig(gates="two", seed=1),
        JoLAConfig(gates="shared", per_example_gates=True, seed=2),
        JoLAConfig(gates="none", parts="mul", seed=3),
    ]
    _check(model, mixed, training=True)
    _check(model, [LoFiTConfig(stage="scale", seed=1), LoFiTConfig(stage="scale", seed=2)], True)
    heads = ((0, 1), (1, 3))
    bias = [LoFiTConfig(stage="bias", heads=heads, seed=s) for s in (1, 2)]
    _check(model, bias, training=True)


def test_the_stacked_edit_is_the_members_edit_exactly(build):
    """At one layer the stacked op is elementwise the member's own: bit-identical slices."""
    model, _ = build("llama")
    pack = build_pack(model, _variants("shared") + _variants("none")[:2])
    _randomise(pack)
    pack.train()
    site = find_head_sites(model)[0]
    z = torch.randn(len(pack) * B, 5, site.num_heads, site.head_dim)
    _seed_noise(pack)
    out = pack.edit_stacked(site.layer, z)
    _seed_noise(pack)
    for k, member in enumerate(pack.members):
        rows = slice(k * B, (k + 1) * B)
        if site.layer in member.edited_layers():
            expected = member.edit_heads(site.layer, z[rows])
        else:
            expected = z[rows]
        assert torch.equal(out[rows], expected), f"member {k}"
    pack.remove()


def test_jola_at_other_sites_than_the_heads_does_not_pack(build):
    model, _ = build("llama")
    with pytest.raises(ConfigError, match="site 'ffn' runs unpacked"):
        build_pack(model, [JoLAConfig(seed=1), JoLAConfig(site="ffn", seed=2)])
