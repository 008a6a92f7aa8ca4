"""Answer-only logits: the SFT training loss equals the full-logits loss in value and gradient."""

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from jola_ray.editing import JoLAConfig, apply_edit
from jola_ray.evaluation.answer_loss import answer_nll, answer_nll_rows
from jola_ray.tiny import build_tiny

from .conftest import trainer_args


def _batch(vocab: int, seed: int = 0):
    """Right-padded rows with a prompt (-100) and 1-3 answer tokens each: (4, 9)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (4, 9), generator=gen)
    mask = torch.ones_like(ids)
    labels = torch.full_like(ids, -100)
    for row, (prompt, answer, pad) in enumerate([(5, 3, 1), (6, 1, 2), (4, 2, 3), (7, 2, 0)]):
        labels[row, prompt : prompt + answer] = ids[row, prompt : prompt + answer]
        if pad:
            ids[row, -pad:] = 0
            mask[row, -pad:] = 0
            labels[row, -pad:] = -100
    return ids, mask, labels


def _grads(model, edit, loss_fn):
    """(loss, gradients of the edit's parameters) for one call with fixed gate noise."""
    for p in edit.parameters():
        p.grad = None
    torch.manual_seed(123)  # the same Hard-Concrete noise in every compared forward
    loss = loss_fn()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in edit.parameters()]


def _full_logits_loss(model, ids, mask, labels, n_items):
    """Every position's logits (the model's own forward), summed over labels / n_items."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()  # (b, t-1, V)
    targets = labels[:, 1:]
    keep = targets != -100
    nll = torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="sum")
    return nll / n_items


@pytest.mark.parametrize("arch", ["llama", "gemma2"])  # gemma2: final logit soft-capping
def test_answer_nll_matches_full_logits_in_value_and_gradient(arch):
    model, _ = build_tiny(arch, seed=0)
    edit = apply_edit(model, JoLAConfig(seed=0))
    model.train()
    ids, mask, labels = _batch(model.config.vocab_size)
    n_items = int((labels[:, 1:] != -100).sum())
    assert n_items == 8

    def answer_only():
        nll, count = answer_nll(model, ids, labels, attention_mask=mask)
        assert int(count) == n_items
        return nll / n_items

    loss_a, grads_a = _grads(model, edit, answer_only)
    loss_f, grads_f = _grads(model, edit, lambda: _full_logits_loss(model, ids, mask, labels, 8))
    assert loss_a.item() == pytest.approx(loss_f.item(), rel=1e-5)
    assert any(g.abs().sum() > 0 for g in grads_f)
    for ga, gf in zip(grads_a, grads_f, strict=True):
        torch.testing.assert_close(ga, gf, rtol=1e-4, atol=1e-7)


def test_answer_nll_matches_the_models_own_loss():
    model, _ = build_tiny("llama", seed=1)
    model.eval()
    ids, mask, labels = _batch(model.config.vocab_size, seed=3)
    with torch.no_grad():
        own = model(input_ids=ids, attention_mask=mask, labels=labels).loss  # token mean
        nll, count = answer_nll(model, ids, labels, attention_mask=mask)
    assert (nll / count).item() == pytest.approx(own.item(), rel=1e-5)


@pytest.mark.parametrize("hooked", [False, True])  # True: the full-logits fallback
def test_answer_nll_rows_split_answer_nll_by_row_in_value_and_gradient(hooked):
    """Each row's sum is that row's own answer_nll (batch of one), the rows add up to the
    batch's answer_nll, and a loss weighting the rows differently has the gradient of the same
    weighting of per-row answer_nll calls (a pack member's block of rows is its own loss)."""
    model, _ = build_tiny("llama", seed=0)
    edit = apply_edit(model, JoLAConfig(seed=0))
    if hooked:  # a hook on the model itself: supports_answer_nll is False
        model.register_forward_pre_hook(lambda module, args: None)
    model.train()
    ids, mask, labels = _batch(model.config.vocab_size, seed=5)
    labels[1] = -100  # a row without answer tokens: a zero of the graph
    weights = torch.tensor([1.0, 2.0, 0.5, 3.0])

    def rows_loss():
        nll, counts = answer_nll_rows(model, ids, labels, attention_mask=mask)
        assert nll.shape == counts.shape == (4,)
        assert counts.tolist() == [3, 0, 2, 2] and nll[1].item() == 0.0
        return (nll * weights).sum()

    def one_by_one():
        total = 0.0
        for r in range(4):
            torch.manual_seed(123)  # each row's forward draws the batched forward's gate noise
            nll, _ = answer_nll(model, ids[r : r + 1], labels[r : r + 1], mask[r : r + 1])
            total = total + weights[r] * nll
        return total

    loss_r, grads_r = _grads(model, edit, rows_loss)
    loss_o, grads_o = _grads(model, edit, one_by_one)
    assert loss_r.item() == pytest.approx(loss_o.item(), rel=1e-5)
    assert any(g.abs().sum() > 0 for g in grads_r)
    for gr, go in zip(grads_r, grads_o, strict=True):
        torch.testing.assert_close(gr, go, rtol=1e-4, atol=1e-7)
    with torch.no_grad():
        torch.manual_seed(7)
        rows, counts = answer_nll_rows(model, ids, labels, attention_mask=mask)
        torch.manual_seed(7)
        whole, count = answer_nll(model, ids, labels, attention_mask=mask)
    assert rows.sum().item() == pytest.approx(whole.item(), rel=1e-5)
    assert int(counts.sum()) == int(count)


def test_answer_nll_rows_without_any_answer_token_are_differentiable_zeros():
    model, _ = build_tiny("llama", seed=0)
    edit = apply_edit(model, JoLAConfig(seed=0))
    model.train()
    ids, mask, _ = _batch(model.config.vocab_size)
    nll, counts = answer_nll_rows(model, ids, torch.full_like(ids, -100), attention_mask=mask)
    assert nll.tolist() == [0.0] * 4 and counts.tolist() == [0] * 4
    nll.sum().backward()
    assert all(p.grad is not None for p in edit.parameters())


def test_a_batch_without_answer_tokens_is_a_differentiable_zero():
    model, _ = build_tiny("llama", seed=0)
    edit = apply_edit(model, JoLAConfig(seed=0))
    model.train()
    ids, mask, _ = _batch(model.config.vocab_size)
    nll, count = answer_nll(model, ids, torch.full_like(ids, -100), attention_mask=mask)
    assert int(count) == 0 and nll.item() == 0.0
    nll.backward()  # no error: the graph reaches the edit
    assert all(p.grad is not None for p in edit.parameters())


def test_sft_trainer_step_loss_equals_trls_fused_loss(tmp_path):
    """The trainer's own compute_loss (answer-only) against TRL's fused LM head path, on a
    batch from the trainer's collator: same loss, same edit gradients."""

    from jola_ray.data.demo import demo_pools
    from jola_ray.train.trainer import make_trainer_class
    from jola_ray.train.trl_data import sft_dataset

    model, tok = build_tiny("llama", seed=0)
    edit = apply_edit(model, JoLAConfig(seed=0))
    ds = sft_dataset(demo_pools("demo_vowel").train[:6], tok, append_eos=True)
    args = trainer_args(tmp_path)
    trainer = make_trainer_class("sft")(
        model=model, args=args, train_dataset=ds, processing_class=tok
    )
    assert trainer.answer_only
    trainer.current_gradient_accumulation_steps = 1
    trainer.state = SimpleNamespace(global_step=0, epoch=0.0)
    trainer._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    batch = trainer.data_collator([ds[i] for i in range(len(ds))])
    n_items = int((batch["labels"][:, 1:] != -100).sum())
    model.train()

    def ours():
        return trainer.compute_loss(model, dict(batch), num_items_in_batch=n_items)

    def trls():
        trainer.answer_only = False
        try:
            return trainer.compute_loss(model, dict(batch), num_items_in_batch=n_items)
        finally:
            trainer.answer_only = True

    loss_a, grads_a = _grads(model, edit, ours)
    loss_t, grads_t = _grads(model, edit, trls)
    assert loss_a.item() == pytest.approx(loss_t.item(), rel=1e-5)
    for ga, gt in zip(grads_a, grads_t, strict=True):
        torch.testing.assert_close(ga, gt, rtol=1e-4, atol=1e-7)
    assert trainer._metrics["train"]["task_loss"][0] == pytest.approx(loss_a.item())
