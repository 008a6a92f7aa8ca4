"""The paper's baselines through the one run recipe on tiny-llama: BitFit, RED and LoReFT train
like JoLA (per-epoch reports, edit-only checkpoints, bit-identical resume); RepE and ITI are
built from the training split, report once and save their edit."""

from pathlib import Path

import pytest
import torch

from jola_ray.train import run


def _edit_tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def _test_accuracy_with_saved_edit(cfg, metrics):
    """Re-apply the run's saved edit to a fresh model and score the test split again."""
    from jola_ray.data import get_task, load_splits
    from jola_ray.evaluation import evaluate
    from jola_ray.methods import registry
    from jola_ray.tiny import build_tiny

    model, tok = build_tiny("llama", seed=0)
    handle = registry.get(cfg.method).load(model, Path(cfg.output_dir) / "edit.safetensors")
    task = get_task("demo_vowel")
    splits = load_splits(task, seed=cfg.seed, train_size=8, dev_size=4, test_size=4)
    res = evaluate(model, tok, task, splits.test, max_new_tokens=3)
    handle.remove()
    return res.metrics["accuracy"]


@pytest.mark.parametrize(
    "method,fields",
    [("bitfit", {}), ("red", {}), ("loreft", {"loreft.rank": 2, "loreft.first_n": 2})],
)
def test_trained_baseline_runs_reports_and_saves_its_edit(tiny_cfg, recorder, method, fields):
    from jola_ray.methods import registry

    cfg = tiny_cfg(method, method=method, patience=0, **fields)
    rec = recorder()
    metrics = run(cfg, report=rec)
    assert [c[0]["epoch"] for c in rec.calls] == [1, 2, 2]
    assert all("edit_params.safetensors" in c[2] for c in rec.calls[:-1])
    from jola_ray.tiny import build_tiny

    model, _ = build_tiny("llama")
    assert metrics["trainable_params"] == registry.get(method).count(model, cfg.method_config)
    assert _test_accuracy_with_saved_edit(cfg, metrics) == metrics["test_accuracy"]


@pytest.mark.parametrize("method", ["bitfit", "red", "loreft"])
def test_trained_baseline_resumes_bit_identically(tiny_cfg, recorder, method):
    opts = {"method": method, "patience": 0, "epochs": 3, "select_metric": "dev_loss"}
    full = recorder()
    full_metrics = run(tiny_cfg("full", **opts), report=full)
    cut = recorder(fail_after=1)
    with pytest.raises(RuntimeError, match="simulated preemption"):
        run(tiny_cfg("cut", **opts), report=cut)
    resumed = recorder()
    res_metrics = run(tiny_cfg("resumed", **opts), report=resumed, resume_from=cut.calls[0][1])
    volatile = ("cost_wall_s", "cost_peak_mem_gb")
    strip = lambda m: {k: v for k, v in m.items() if k not in volatile}  # noqa: E731
    assert strip(res_metrics) == strip(full_metrics)
    a = _edit_tensors(Path(full.calls[-1][1]) / "edit.safetensors")
    b = _edit_tensors(Path(resumed.calls[-1][1]) / "edit.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "method,fields", [("repe", {"repe.coefficient": 2.0}), ("iti", {"iti.top_k": 3})]
)
def test_inference_time_baseline_builds_once_and_saves(tiny_cfg, recorder, method, fields):
    cfg = tiny_cfg(method, method=method, **fields)
    rec = recorder()
    metrics = run(cfg, report=rec)
    assert len(rec.calls) == 1 and metrics["epoch"] == 0
    assert metrics["trainable_params"] == 0 and metrics["cost_steps"] == 0
    assert (Path(cfg.output_dir) / "edit.safetensors").is_file()
    if method == "iti":
        assert metrics["num_selected_heads"] == 3
    else:
        assert metrics["repe_pairs"] == 8 and metrics["repe_pairs_skipped"] == 0
    assert _test_accuracy_with_saved_edit(cfg, metrics) == metrics["test_accuracy"]


def _preference_splits():
    """A TruthfulQA-like preference set (as tests/train/test_methods.py builds it)."""
    from jola_ray.data import Example, Splits

    facts = [("sky", "blue", "green"), ("grass", "green", "red"), ("snow", "white", "black"),
             ("coal", "black", "white"), ("sun", "yellow", "blue"), ("blood", "red", "blue")]  # fmt: skip
    rows = [
        Example(id=f"q{i}", prompt=f"Q: What colour is {t}?\nA:", answer=f" {g}", chosen=f" {g}",
                rejected=f" {b}", choices=(f" {g}", f" {b}"), correct=(0,))
        for i, (t, g, b) in enumerate(facts)
    ]  # fmt: skip
    return Splits(train=rows[:4], dev=rows[4:], test=rows[4:])


@pytest.mark.parametrize(
    "method,fields",
    [("bitfit", {}), ("red", {}), ("loreft", {"loreft.rank": 2}), ("iti", {"iti.top_k": 2}),
     ("repe", {})],
)  # fmt: skip
def test_baselines_on_a_preference_task(tiny_cfg, recorder, method, fields):
    """LoFiT's TruthfulQA trains with DPO (the reference forward under ``disabled()``) and is
    scored by MC1/MC2; ITI probes every choice, RepE contrasts chosen with rejected."""
    import dataclasses

    from jola_ray.data import get_task

    task = dataclasses.replace(get_task("truthfulqa"), name="tiny_tqa")
    cfg = tiny_cfg(method, method=method, patience=0, dpo_beta=0.5, **fields)
    rec = recorder()
    metrics = run(cfg, report=rec, task=task, splits=_preference_splits())
    assert {"dev_mc1", "dev_mc2", "test_mc1", "test_mc2"} <= set(metrics)
    if method in ("iti", "repe"):
        assert len(rec.calls) == 1
    else:  # the policy starts at the reference (identity or near it) and DPO moves it
        assert len(rec.calls) == 3 and rec.calls[0][0]["dev_loss"] != rec.calls[1][0]["dev_loss"]
