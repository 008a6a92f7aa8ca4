"""RepE and ITI: the shifts against an independent computation from the same activations (read
here one text at a time, without padding, through the test's own hooks), the edited forward,
and the contrast pairs / labelled texts built from a training split."""

import pytest
import torch

from jola_ray.data.task import Example
from jola_ray.methods import registry
from jola_ray.methods.base import StageContext
from jola_ray.methods.iti import labelled_texts
from jola_ray.methods.repe import contrast_pairs
from jola_ray.tiny import build_tiny


def _build(name, model, tok, examples, **fields):
    method = registry.get(name)
    cfg, problems = method.build_config(fields)
    assert not problems
    (stage,) = method.stages(cfg)
    assert stage.kind == "build"
    return stage.attach(StageContext(model, cfg, 5, {}, examples, tok))


def _read(model, tok, prompt, answer, module, read):
    """``module``'s output (or input) at the last token of prompt + answer, one text alone."""
    ids = tok(prompt)["input_ids"] + tok(answer, add_special_tokens=False)["input_ids"]
    seen = []
    if read == "output":
        h = module.register_forward_hook(
            lambda m, a, o: seen.append(o[0] if isinstance(o, tuple) else o)
        )
    else:
        h = module.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    with torch.no_grad():
        model(input_ids=torch.tensor([ids]))
    h.remove()
    return seen[0][0, -1].float()


def _yes_no(n=10):
    return [
        Example(
            id=str(i), prompt=f"Is {i} even? Answer:\n", answer="true" if i % 2 == 0 else "false"
        )
        for i in range(n)
    ]


def test_repe_shift_equals_pca_of_contrast_differences():
    model, tok = build_tiny("llama")
    examples = _yes_no()
    # independent: per layer the differences correct - incorrect, the top eigenvector of their
    # covariance (eigh, not the SVD the method uses), signed along the mean difference
    expected = []
    for layer in model.model.layers:
        diffs = torch.stack(
            [
                _read(model, tok, e.prompt, e.answer, layer, "output")
                - _read(
                    model, tok, e.prompt, "false" if e.answer == "true" else "true", layer, "output"
                )
                for e in examples
            ]
        )
        mean = diffs.mean(0)
        centred = diffs - mean
        _, vecs = torch.linalg.eigh(centred.T.double() @ centred.double())
        u = vecs[:, -1].float()
        u = u if mean @ u >= 0 else -u
        expected.append(2.5 * (mean @ u) * u)
    edit = _build("repe", model, tok, examples, layers=[0, -1], coefficient=2.5)
    assert edit.layers == [0, 1]
    torch.testing.assert_close(edit.shift(), torch.stack(expected), atol=1e-5, rtol=1e-4)
    assert edit.summary() == {"repe_pairs": 10, "repe_pairs_skipped": 0}
    assert not any(p.requires_grad for p in model.parameters())
    assert list(edit.parameters()) == []  # nothing trains


def test_repe_forward_adds_shift_to_every_position():
    model, tok = build_tiny("qwen2")
    enc = tok(["Is 3 even? Answer:\n", "ok"], return_tensors="pt", padding=True)
    base = []
    h = model.model.layers[1].register_forward_pre_hook(
        lambda m, a, k: base.append(a[0] if a else k["hidden_states"]), with_kwargs=True
    )
    with torch.no_grad():
        model(**enc)
    edit = _build("repe", model, tok, _yes_no(6), layers=[0], coefficient=-3.0)
    with torch.no_grad():
        model(**enc)
    h.remove()
    torch.testing.assert_close(base[-1], base[0] + edit.shift()[0], atol=1e-6, rtol=1e-6)
    assert edit.shift().abs().max() > 0


def test_contrast_pairs_from_a_training_split():
    gem = [
        Example(id=str(i), prompt=f"p{i}", answer=f"ref {i}", aliases=(f"alt {i}",))
        for i in range(5)
    ]
    gem.append(
        Example(id="x", prompt="px", answer="ref 0", aliases=("ref 1", "ref 2", "ref 3", "ref 4"))
    )
    pairs, skipped = contrast_pairs(gem, seed=0)
    assert skipped == 1  # "x": every other answer is one of its aliases
    tqa = Example(id="t", prompt="pt", answer="best", chosen="best", rejected="wrong")
    assert contrast_pairs([tqa], seed=0) == ([("pt", "best", "wrong")], 0)
    for prompt, good, bad in pairs[:5]:
        e = next(e for e in gem if e.prompt == prompt)
        assert good == e.answer and bad != e.answer and bad not in e.aliases
        assert bad in {g.answer for g in gem}
    assert contrast_pairs(gem, seed=0) == (pairs, skipped)  # seeded


def _truthful(n=12):
    out = []
    for i in range(n):
        out.append(
            Example(
                id=str(i), prompt=f"Q: fact {i}?\nA:", answer=f"true {i}.",
                choices=(f"true {i}.", f"also {i}.", f"false {i}.", f"wrong {i}."),
                correct=(0, 1), best=0,
            )
        )  # fmt: skip
    return out


def test_labelled_texts_use_every_choice_or_a_contrast_pair():
    texts, _ = labelled_texts([*_truthful(1), *_yes_no(2)], seed=0)
    assert texts[:4] == [
        ("Q: fact 0?\nA:", "true 0.", True), ("Q: fact 0?\nA:", "also 0.", True),
        ("Q: fact 0?\nA:", "false 0.", False), ("Q: fact 0?\nA:", "wrong 0.", False),
    ]  # fmt: skip
    assert texts[4:6] == [
        ("Is 0 even? Answer:\n", "true", True),
        ("Is 0 even? Answer:\n", "false", False),
    ]


def test_iti_shift_equals_mass_mean_of_head_activations():
    model, tok = build_tiny("mistral")
    examples = _truthful()
    texts, _ = labelled_texts(examples, seed=0)
    H, d = 4, 8
    acts = torch.stack(
        [
            torch.stack([_read(model, tok, p, a, layer.self_attn.o_proj, "input").view(H, d)
                         for layer in model.model.layers])
            for p, a, _ in texts
        ]
    )  # (texts, layers, heads, d)  # fmt: skip
    y = torch.tensor([t for _, _, t in texts])
    edit = _build("iti", model, tok, examples, top_k=3, alpha=7.0)
    assert int(edit.selected.sum()) == 3 and edit.summary()["num_selected_heads"] == 3
    pairs = edit.summary()["selected_heads"]
    assert [la * 4 + h for la, h in pairs] == edit.selected.flatten().nonzero().flatten().tolist()
    # the kept heads are the best by (validation) probe accuracy, ties to the lower index
    acc = edit.accuracy.flatten()
    top = sorted(range(len(acc)), key=lambda i: (-float(acc[i]), i))[:3]
    assert sorted(top) == edit.selected.flatten().nonzero().flatten().tolist()
    assert ((acc >= 0) & (acc <= 1)).all()
    direction = acts[y].mean(0) - acts[~y].mean(0)  # (layers, heads, d)
    u = direction / direction.norm(dim=-1, keepdim=True)
    sigma = torch.einsum("nlhd,lhd->nlh", acts, u).std(dim=0, unbiased=False)
    expected = 7.0 * sigma[..., None] * u * edit.selected[..., None]
    torch.testing.assert_close(edit.shift(), expected, atol=1e-5, rtol=1e-4)
    assert list(edit.parameters()) == []


def test_iti_forward_equals_a_baked_o_proj_bias():
    model, tok = build_tiny("llama")
    edit = _build("iti", model, tok, _truthful(6), top_k=5, alpha=20.0)
    enc = tok(["Q: fact 2?\nA:", "ok"], return_tensors="pt", padding=True)
    with torch.no_grad():
        edited = model(**enc).logits
    # independent: the same model with W_O @ shift as o_proj's bias, no hooks
    baked, _ = build_tiny("llama")
    shift = edit.shift()
    for layer, block in enumerate(baked.model.layers):
        old = block.self_attn.o_proj
        new = torch.nn.Linear(old.in_features, old.out_features, bias=True)
        with torch.no_grad():
            new.weight.copy_(old.weight)
            new.bias.copy_(old.weight @ shift[layer].flatten())
        block.self_attn.o_proj = new
    with torch.no_grad():
        want = baked(**enc).logits
    torch.testing.assert_close(edited, want, atol=1e-5, rtol=1e-5)
    edit.remove()
    with torch.no_grad():
        assert not torch.allclose(model(**enc).logits, want)


def test_fit_probes_separates_a_planted_signal():
    from jola_ray.editing.iti import fit_probes, probe_accuracy

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 60, 3, generator=gen)
    y = (x[0, :, 1] > 0).long()  # probe 0's feature 1 decides the label; probe 1 sees noise
    x[0, :, 1] += 2 * y - 1  # a margin of 1 on either side
    x[1] = torch.randn(60, 3, generator=gen)
    w, b = fit_probes(x[:, :40], y[:40])
    acc = probe_accuracy(x[:, 40:], y[40:], w, b)
    assert acc[0] == 1.0 and acc[1] < 0.9


@pytest.mark.parametrize("name", ["repe", "iti"])
def test_save_load_round_trip(name, tmp_path):
    model, tok = build_tiny("llama")
    examples = _truthful(6) if name == "iti" else _yes_no(6)
    edit = _build(name, model, tok, examples, **({"top_k": 4} if name == "iti" else {}))
    enc = tok(["Q: fact 2?\nA:"], return_tensors="pt")
    with torch.no_grad():
        edited = model(**enc).logits
    buffers = {k: v.clone() for k, v in edit.state_dict().items()}
    path = edit.save(tmp_path / "e.safetensors")
    edit.remove()
    loaded = registry.load_saved(model, path)  # as `jola-ray evaluate --edit` does
    assert loaded.method == name
    assert all(torch.equal(buffers[k], v) for k, v in loaded.state_dict().items())
    with torch.no_grad():
        assert torch.equal(model(**enc).logits, edited)
