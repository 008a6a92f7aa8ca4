"""LoReFT's edited forward against the formula written out per position (pyreft does not
install beside transformers 5: pyreft 0.1.0 pins transformers 4.x), the positions (first and
last prompt tokens only, never generated tokens) and R's orthonormal rows while training."""

import pytest
import torch

from jola_ray.methods import registry
from jola_ray.methods.base import StageContext
from jola_ray.tiny import build_tiny, tiny_tokenizer


def _attach(model, **fields):
    method = registry.get("loreft")
    cfg, problems = method.build_config(fields)
    assert not problems
    return method.stages(cfg)[0].attach(StageContext(model, cfg, 3, {}))


def _layer_outputs(model, layer, **inputs):
    """The output of decoder layer ``layer`` (read as the next module's input)."""
    layers = model.model.layers
    nxt = layers[layer + 1] if layer + 1 < len(layers) else model.model.norm
    seen = []

    def grab(module, args, kwargs):
        seen.append((args[0] if args else kwargs["hidden_states"]).detach().clone())

    handle = nxt.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        handle.remove()
    return seen[0]


def _formula(h, r_t, w, b):
    """h + R^T (W h + b - R h) for one position h (hidden,); r_t is R^T (hidden, rank)."""
    r = r_t.T  # (rank, hidden), orthonormal rows
    return h + r.T @ (w @ h + b - r @ h)


def _left_padded(texts):
    tok = tiny_tokenizer()
    rows = [tok(t)["input_ids"] for t in texts]
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r)
        mask[i, width - len(r) :] = 1
    return ids, mask, [len(r) for r in rows]


@pytest.mark.parametrize("layer", [0, 1])
def test_forward_equals_formula_at_first_and_last_prompt_positions(layer):
    model, _ = build_tiny("llama")
    ids, mask, lengths = _left_padded(["Is the sky blue today?", "ok go"])
    base = _layer_outputs(model, layer, input_ids=ids, attention_mask=mask)
    edit = _attach(model, layers=[layer], rank=4, first_n=2, last_n=3)
    edited = _layer_outputs(model, layer, input_ids=ids, attention_mask=mask)
    iv = edit.interventions[f"{layer}_shared"]
    r_t, w, b = iv.rotate.weight.detach(), iv.source.weight.detach(), iv.source.bias.detach()
    width = ids.shape[1]
    for row, n in enumerate(lengths):
        start = width - n  # left padding: the prompt is the last n positions
        chosen = set(range(start, start + 2)) | set(range(width - 3, width))
        for t in range(width):
            want = _formula(base[row, t], r_t, w, b) if t in chosen else base[row, t]
            torch.testing.assert_close(edited[row, t], want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(edited, base)


def test_training_rows_edit_prompt_positions_only_and_separate_weights():
    model, _ = build_tiny("qwen2")
    tok = tiny_tokenizer()
    prompts, answers = ["Question: abc?\n", "Q?\n"], ["yes", "no!"]
    rows = [tok(p)["input_ids"] + tok(a, add_special_tokens=False)["input_ids"]
            for p, a in zip(prompts, answers, strict=True)]  # fmt: skip
    plens = [len(tok(p)["input_ids"]) for p in prompts]
    width = max(map(len, rows))
    ids = torch.zeros(2, width, dtype=torch.long)
    mask = torch.zeros(2, width, dtype=torch.long)
    labels = torch.full((2, width), -100)
    for i, r in enumerate(rows):  # right-padded SFT rows, prompt masked out of the labels
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
        labels[i, plens[i] : len(r)] = torch.tensor(r[plens[i] :])
    inputs = dict(input_ids=ids, attention_mask=mask, labels=labels)
    base = _layer_outputs(model, 0, **inputs)
    edit = _attach(model, layers=[0], rank=2, first_n=3, last_n=2, share_weights=False)
    assert sorted(edit.interventions) == ["0_prefix", "0_suffix"]
    edited = _layer_outputs(model, 0, **inputs)
    parts = {
        k: (iv.rotate.weight.detach(), iv.source.weight.detach(), iv.source.bias.detach())
        for k, iv in (("prefix", edit.interventions["0_prefix"]),
                      ("suffix", edit.interventions["0_suffix"]))
    }  # fmt: skip
    for row, n in enumerate(plens):
        for t in range(width):
            want = base[row, t]
            if t < min(3, n):
                want = _formula(want, *parts["prefix"])
            if n - 2 <= t < n:
                want = _formula(want, *parts["suffix"])  # after the prefix edit on overlaps
            torch.testing.assert_close(edited[row, t], want, atol=1e-5, rtol=1e-5)
    assert plens[1] < 3 + 2  # the short prompt really has overlapping prefix and suffix


def test_generated_tokens_are_not_intervened_on():
    model, tok = build_tiny("llama")
    ids, mask, _ = _left_padded(["Is it?", "Yes or no?"])
    edit = _attach(model, layers=[0, 1], rank=2)
    calls = []
    for key, iv in edit.interventions.items():
        iv.register_forward_hook(lambda m, a, o, key=key: calls.append((key, a[0].shape[1])))
    out = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=4, min_new_tokens=4, do_sample=False,
        pad_token_id=0, use_cache=True,
    )  # fmt: skip
    assert out.shape[1] == ids.shape[1] + 4
    # one call per layer, on the prompt pass (the whole prompt width), none on the 3 decode steps
    assert sorted(calls) == [("0_shared", ids.shape[1]), ("1_shared", ids.shape[1])]


def test_rotation_keeps_orthonormal_rows_after_training_steps():
    model, _ = build_tiny("llama")
    edit = _attach(model, layers=[1], rank=4)
    # AdamW's default weight decay (0.01) zeroed R under torch's Householder parametrization
    opt = torch.optim.AdamW(edit.parameters(), lr=0.1, weight_decay=0.01)
    ids, mask, _ = _left_padded(["Is the sky blue?", "ok"])
    model.train()
    for _ in range(3):
        opt.zero_grad()
        model(
            input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)
        ).loss.backward()
        opt.step()
    r = edit.interventions["1_shared"].rotate.weight.detach().T  # (rank, hidden)
    torch.testing.assert_close(r @ r.T, torch.eye(4), atol=1e-5, rtol=0)


def test_no_positions_is_a_config_error():
    from jola_ray.errors import ConfigError

    model, _ = build_tiny("llama")
    with pytest.raises(ConfigError, match="first_n.*last_n"):
        _attach(model, first_n=0, last_n=0)
    assert not any(p.requires_grad is False for p in model.parameters())  # model untouched


def test_intervention_matches_pyreft_where_it_is_importable():
    """pyreft 0.1.0 pins transformers==4.45.1, so it is not in the project's environment; with
    it on the path (``pip install --no-deps --target DIR pyreft pyvene``) its LoreftIntervention
    is the reference for the module's forward (measured: max difference 4e-7)."""
    interventions = pytest.importorskip("pyreft.interventions")
    from jola_ray.editing.loreft import LowRankIntervention

    mine = LowRankIntervention(32, 4, 0.0, torch.Generator().manual_seed(0))
    ref = interventions.LoreftIntervention(embed_dim=32, low_rank_dimension=4, dtype=torch.float32)
    with torch.no_grad():
        ref.rotate_layer.weight = mine.rotate.weight.detach().clone()  # via right_inverse
        ref.learned_source.weight.copy_(mine.source.weight)
        ref.learned_source.bias.copy_(mine.source.bias)
    h = torch.randn(3, 5, 32, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(mine(h), ref(h), atol=1e-5, rtol=1e-5)
