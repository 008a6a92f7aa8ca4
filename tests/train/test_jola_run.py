"""End-to-end JoLA runs on tiny-llama: files, reports, best-epoch edit, resume, determinism."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from jola_ray.train import run

EPOCH_KEYS = {
    "epoch",
    "step",
    "train_loss",
    "train_penalty",
    "dev_loss",
    "dev_accuracy",
    "dev_score",
    "open_gate_fraction",
    "train_lr",
    "run_status",
}
FINAL_KEYS = EPOCH_KEYS | {
    "test_accuracy",
    "test_score",
    "best_epoch",
    "best_dev_score",
    "num_selected_heads",
    "trainable_params",
    "cost_steps",
    "cost_tokens",
    "cost_wall_s",
    "cost_gpu_s",
    "cost_peak_mem_gb",
}
VOLATILE = ("cost_wall_s", "cost_peak_mem_gb")


def _edit_tensors(path):
    """Edit tensors by their name inside the edit module (checkpoints prefix ``head_edit.``)."""
    return {k.removeprefix("head_edit."): v for k, v in load_file(str(path)).items()}


def test_jola_run_reports_each_epoch_and_writes_the_final_files(tiny_cfg, recorder):
    cfg = tiny_cfg(patience=0, record_dev_loss=True)
    rec = recorder()
    metrics = run(cfg, report=rec)

    assert [c[0]["run_status"] for c in rec.calls] == ["running", "running", "finished"]
    assert [c[0]["epoch"] for c in rec.calls] == [1, 2, 2]
    assert set(rec.calls[0][0]) >= EPOCH_KEYS
    assert set(metrics) >= FINAL_KEYS
    # 2 layers x (2 * 4 heads * head_dim 8 + 2 * 4 gates)
    assert metrics["trainable_params"] == 2 * (2 * 4 * 8 + 2 * 4)
    assert metrics["cost_steps"] == 4 and metrics["cost_tokens"] > 0 and metrics["cost_gpu_s"] == 0
    assert all(torch.isfinite(torch.tensor(c[0]["train_loss"])) for c in rec.calls)
    assert rec.calls[0][0]["train_penalty"] > 0  # the gate penalty is on and logged apart

    # epoch checkpoints hold the edit, not the model: kilobytes
    epoch_dir = Path(rec.calls[0][1])
    assert {
        "edit_params.safetensors",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
        "trainer_state.json",
        "run_state.json",
    } <= set(rec.calls[0][2])
    assert not any("model" in name for name in rec.calls[0][2])
    assert sum(f.stat().st_size for f in epoch_dir.iterdir()) < 200_000

    out = Path(cfg.output_dir)
    final = Path(rec.calls[-1][1])
    for name in ("metrics.json", "predictions.jsonl", "gates.csv", "edit.safetensors"):
        assert (final / name).is_file() and (out / name).is_file()
    assert (out / "config.yaml").is_file()
    assert json.loads((out / "metrics.json").read_text()) == metrics
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and {"id", "prediction", "gold", "correct"} <= set(lines[0])
    assert len((out / "gates.csv").read_text().splitlines()) == 1 + 2 * 4

    # the saved edit loads through the editing package onto a fresh model and scores the same
    from jola_ray.data import get_task, load_splits
    from jola_ray.editing import load_edit
    from jola_ray.evaluation import evaluate
    from jola_ray.tiny import build_tiny

    model, tok = build_tiny("llama", seed=0)
    load_edit(model, out / "edit.safetensors")
    task = get_task("demo_vowel")
    test = load_splits(task, seed=42, train_size=8, dev_size=4, test_size=4).test
    again = evaluate(model, tok, task, test, max_new_tokens=3)
    assert again.metrics["accuracy"] == metrics["test_accuracy"]
    assert [p["prediction"] for p in again.predictions] == [p["prediction"] for p in lines]


def test_early_stopping_keeps_the_best_epochs_edit(tiny_cfg, recorder):
    cfg = tiny_cfg(
        "es", epochs=4, patience=1, **{"jola.penalty": "reference", "jola.gate_schedule": "expon"}
    )
    rec = recorder()
    metrics = run(cfg, report=rec)
    epochs = [c[0] for c in rec.calls[:-1]]
    # the reference penalty is a weighted mean of open probabilities (~0.6-0.8 at init) over
    # L*H, so it lies in (0.1, 1/H]; the paper form with "auto" would be ~0.03 here
    assert 0.1 < epochs[0]["train_penalty"] <= 1 / 4
    scores = [m["dev_score"] for m in epochs]
    # independent replay of patience-1 early stopping on the reported dev scores
    best, stop = 0, len(scores)
    for i in range(1, len(scores)):
        if scores[i] > scores[best]:
            best = i
        else:
            stop = i + 1
            break
    assert stop < 4  # the untrained tiny model's dev score stalls: the run stops early
    assert len(epochs) == stop
    assert metrics["best_epoch"] == best + 1
    assert metrics["best_dev_score"] == epochs[best]["dev_score"]
    final = _edit_tensors(Path(rec.calls[-1][1]) / "edit.safetensors")
    best_ckpt = _edit_tensors(Path(rec.calls[best][1]) / "edit_params.safetensors")
    assert all(torch.equal(final[k], best_ckpt[k]) for k in best_ckpt)
    if best + 1 < len(epochs):  # stopped after a worse epoch: the edit is not the last one
        last_ckpt = _edit_tensors(Path(rec.calls[len(epochs) - 1][1]) / "edit_params.safetensors")
        assert not all(torch.equal(final[k], last_ckpt[k]) for k in last_ckpt)


def test_interrupted_run_resumes_to_the_uninterrupted_result(tiny_cfg, recorder):
    opts = dict(epochs=2, patience=0, select_metric="dev_loss", lr_schedule="adaptive")
    full = recorder()
    full_metrics = run(tiny_cfg("full", **opts), report=full)

    cut = recorder(fail_after=1)
    with pytest.raises(RuntimeError, match="simulated preemption"):
        run(tiny_cfg("cut", **opts), report=cut)
    # same seed, same losses: the first epoch of both runs is identical
    assert cut.calls[0][0] == full.calls[0][0]

    resumed = recorder()
    res_metrics = run(tiny_cfg("resumed", **opts), report=resumed, resume_from=cut.calls[0][1])
    assert [c[0]["epoch"] for c in resumed.calls] == [2, 2]
    assert [c[0] for c in resumed.calls[:-1]] == [c[0] for c in full.calls[1:-1]]
    strip = lambda m: {k: v for k, v in m.items() if k not in VOLATILE}  # noqa: E731
    assert strip(res_metrics) == strip(full_metrics)
    a = _edit_tensors(Path(full.calls[-1][1]) / "edit.safetensors")
    b = _edit_tensors(Path(resumed.calls[-1][1]) / "edit.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_non_finite_loss_stops_with_the_step(tiny_cfg, monkeypatch):
    from jola_ray.editing.jola import JoLAEdit
    from jola_ray.errors import TrainingError

    monkeypatch.setattr(JoLAEdit, "penalty", lambda self, lambda_t=None: torch.tensor(float("nan")))
    with pytest.raises(TrainingError, match="non-finite training loss at step 1"):
        run(tiny_cfg("nan", epochs=1))
