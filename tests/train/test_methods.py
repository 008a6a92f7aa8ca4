"""LoFiT (two stages), zero-shot and DPO runs on tiny models."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from jola_ray.data import Example, Splits, get_task, load_splits
from jola_ray.train import run


def test_lofit_two_stages_train_biases_on_the_top_k_heads(tiny_cfg, recorder):
    cfg = tiny_cfg(
        "lofit", method="lofit", patience=0, **{"lofit.top_k": 3, "lofit.l1_lambda": 1e-3}
    )
    rec = recorder()
    metrics = run(cfg, report=rec)
    # only stage 2 reports per epoch; each report carries the stage-1 summary
    assert [c[0]["epoch"] for c in rec.calls] == [1, 2, 2]
    for m, _, _ in rec.calls:
        assert {"s1_dev_score", "s1_train_penalty", "s1_best_epoch"} <= set(m)
        assert m["s1_train_penalty"] > 0  # the L1 term was on in stage 1
    assert metrics["train_penalty"] == 0  # and off in stage 2
    assert metrics["num_selected_heads"] == 3
    assert metrics["trainable_params"] == 3 * 8  # K heads x head_dim biases
    out = Path(cfg.output_dir)
    assert any((out / "stage1").glob("checkpoint-*/edit_params.safetensors"))
    gates = (out / "gates.csv").read_text().splitlines()
    assert sum(line.endswith("True") for line in gates[1:]) == 3
    # stage 2's heads are stage 1's top-3 scaling norms: recompute from the stage-1 checkpoint
    from safetensors.torch import load_file

    s1_dir = max((out / "stage1").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    best = load_file(str(s1_dir / "best_edit.safetensors"))
    (scale,) = [v for k, v in best.items() if "scale" in k]  # [L, H, d]
    norms = scale.norm(dim=-1).flatten()
    top = sorted(torch.argsort(-norms, stable=True)[:3].tolist())
    assert sorted(layer * 4 + head for layer, head in metrics["selected_heads"]) == top


def test_zero_shot_reports_once_with_the_untouched_models_scores(tiny_cfg, recorder):
    cfg = tiny_cfg("zs", method="zero_shot", record_dev_loss=True)
    rec = recorder()
    metrics = run(cfg, report=rec)
    assert len(rec.calls) == 1
    assert metrics["epoch"] == 0 and metrics["run_status"] == "finished"
    assert metrics["trainable_params"] == 0 and metrics["num_selected_heads"] == 0
    from jola_ray.evaluation import evaluate
    from jola_ray.tiny import build_tiny

    model, tok = build_tiny("llama", seed=0)
    task = get_task("demo_vowel")
    splits = load_splits(task, seed=42, train_size=8, dev_size=4, test_size=4)
    assert (
        evaluate(model, tok, task, splits.test, max_new_tokens=3).metrics["accuracy"]
        == (metrics["test_accuracy"])
    )
    lines = (Path(cfg.output_dir) / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == [e.id for e in splits.test]
    # dev loss: token-mean cross-entropy over the answers of the dev prompts (no EOS by default)
    total, count = 0.0, 0
    with torch.no_grad():
        for e in splits.dev:
            prompt_len = len(tok(e.prompt)["input_ids"])
            ids = torch.tensor([tok(e.prompt + e.answer)["input_ids"]])
            logits = model(input_ids=ids).logits[0, prompt_len - 1 : -1]
            targets = ids[0, prompt_len:]
            total += torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()
            count += len(targets)
    assert metrics["dev_loss"] == pytest.approx(total / count, rel=1e-4)


def _preference_splits():
    """A TruthfulQA-like preference set: one true answer and one false per question."""
    facts = [
        ("sky", "blue", "green"),
        ("grass", "green", "red"),
        ("snow", "white", "black"),
        ("coal", "black", "white"),
        ("sun", "yellow", "blue"),
        ("blood", "red", "blue"),
    ]

    def ex(i, thing, good, bad):
        return Example(
            id=f"q{i}",
            prompt=f"Q: What colour is {thing}?\nA:",
            answer=f" {good}",
            chosen=f" {good}",
            rejected=f" {bad}",
            choices=(f" {good}", f" {bad}"),
            correct=(0,),
        )

    rows = [ex(i, *f) for i, f in enumerate(facts)]
    return Splits(train=rows[:4], dev=rows[4:], test=rows[4:])


@pytest.mark.parametrize("method", ["lofit"])
def test_dpo_training_for_preference_tasks(tiny_cfg, recorder, method):
    task = dataclasses.replace(get_task("truthfulqa"), name="tiny_tqa")
    assert task.training == "dpo"
    cfg = tiny_cfg("dpo", method=method, patience=0, dpo_beta=0.5, **{"lofit.top_k": 2})
    rec = recorder()
    metrics = run(cfg, report=rec, task=task, splits=_preference_splits())
    assert {"dev_mc1", "dev_mc2", "test_mc1", "test_mc2", "s1_dev_loss"} <= set(metrics)
    assert metrics["test_score"] == metrics["test_mc1"]
    # the policy starts at (almost) the reference, so the dev DPO loss sits near log 2, and
    # stage-2 training moves it
    assert abs(rec.calls[0][0]["s1_dev_loss"] - torch.log(torch.tensor(2.0)).item()) < 0.05
    assert rec.calls[0][0]["dev_loss"] != rec.calls[1][0]["dev_loss"]


def test_lofit_resumes_in_stage_two_without_rerunning_stage_one(tiny_cfg, recorder):
    opts = {"method": "lofit", "lofit.top_k": 2, "patience": 0, "select_metric": "dev_loss"}
    full = recorder()
    full_metrics = run(tiny_cfg("full", **opts), report=full)
    cut = recorder(fail_after=1)
    with pytest.raises(RuntimeError, match="simulated preemption"):
        run(tiny_cfg("cut", **opts), report=cut)
    resumed = recorder()
    out = tiny_cfg("resumed", **opts)
    metrics = run(out, report=resumed, resume_from=cut.calls[0][1])
    assert not (Path(out.output_dir) / "stage1").exists()  # stage 1 came from the checkpoint
    volatile = ("cost_wall_s", "cost_peak_mem_gb", "s1_wall_s")
    strip = lambda m: {k: v for k, v in m.items() if k not in volatile}  # noqa: E731
    assert strip(metrics) == strip(full_metrics)
    assert [strip(c[0]) for c in resumed.calls] == [strip(c[0]) for c in full.calls[1:]]
