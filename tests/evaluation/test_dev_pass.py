"""The dev pass: the dev loss from label scores (free) equals the teacher-forced dev loss, and
both equal the answer tokens' cross-entropy computed one example at a time."""

import pytest
import torch

from jola_ray.data import get_task, load_splits
from jola_ray.evaluation.dev_pass import evaluate_with_loss
from jola_ray.tiny import build_tiny


def _reference_loss(model, tok, examples, append_eos=False):
    """Token-mean cross-entropy of each answer after its prompt, one unpadded row at a time."""
    total, count = 0.0, 0
    with torch.no_grad():
        for e in examples:
            prompt = tok(e.prompt)["input_ids"]
            answer = tok(e.answer, add_special_tokens=False)["input_ids"]
            if append_eos:
                answer = [*answer, tok.eos_token_id]
            ids = torch.tensor([prompt + answer])
            logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
            total += torch.nn.functional.cross_entropy(
                logits, torch.tensor(answer), reduction="sum"
            ).item()
            count += len(answer)
    return total / count


@pytest.fixture(scope="module")
def setup():
    model, tok = build_tiny("llama", seed=0)
    task = get_task("demo_majority")  # four labels
    splits = load_splits(task, seed=42, train_size=4, dev_size=12, test_size=4)
    return model, tok, task, splits.dev


def test_label_scoring_gives_the_dev_loss_without_another_pass(setup, monkeypatch):
    model, tok, task, dev = setup
    from jola_ray.evaluation import answer_loss

    def no_teacher_forcing(*a, **k):
        raise AssertionError("label scoring must not run a second pass")

    monkeypatch.setattr(answer_loss, "dev_loss", no_teacher_forcing)
    res, loss = evaluate_with_loss(
        model, tok, task, dev, mode="label_scoring", batch_size=8, need_loss=True
    )
    assert loss == pytest.approx(_reference_loss(model, tok, dev), rel=1e-4)
    assert "accuracy" in res.metrics


@pytest.mark.parametrize("append_eos", [False, True])
def test_generation_dev_loss_is_one_teacher_forced_pass(setup, append_eos):
    model, tok, task, dev = setup
    res, loss = evaluate_with_loss(
        model,
        tok,
        task,
        dev,
        mode="greedy",
        batch_size=5,  # ragged batches: padding must not change the loss
        max_new_tokens=2,
        need_loss=True,
        append_eos=append_eos,
    )
    assert loss == pytest.approx(_reference_loss(model, tok, dev, append_eos), rel=1e-4)
    assert not model.training


def test_no_reader_no_loss(setup):
    model, tok, task, dev = setup
    _, loss = evaluate_with_loss(model, tok, task, dev, mode="greedy", max_new_tokens=2)
    assert loss is None
