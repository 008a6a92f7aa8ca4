"""The speed harness on the tiny shape: it runs end to end on a CPU and writes every key.

The harness runs as the documented command (``python -m benchmarks.run``) in a subprocess, so
the test also checks the entry point; timings are not asserted beyond being positive and
finite, because CI machines are noisy. The JoLA variants are checked against the library's
edit (same outputs and gradients), since a faster variant that computes something else would
make its timing meaningless.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `benchmarks` is a top-level folder, not an installed package
    sys.path.insert(0, str(REPO))

REQUIRED_EVAL_MODES = ("beam4_bs1", "greedy_bs64", "label_scoring_bs64")


def _harness(tmp_path: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.run", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_quick_cpu_run_writes_every_key(tmp_path):
    out = tmp_path / "tiny.json"
    proc = _harness(
        tmp_path,
        "--device",
        "cpu",
        "--shapes",
        "tiny",
        "--quick",
        "--skip",
        "trial,sweep",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    tiny = result["shapes"]["tiny"]
    assert "errors" not in tiny, tiny.get("errors")
    assert tiny["device"] == "cpu"
    for key in ("floor_ms", "jola_ms", "lofit_ms", "peak_gb", "jola_over_floor"):
        assert _positive(tiny[key]), (key, tiny[key])
    assert tiny["jola_over_floor"] == pytest.approx(tiny["jola_ms"] / tiny["floor_ms"])
    assert tiny["peak_gb"] < 24  # the machine's memory: a GiB figure, not bytes or KiB
    # tiny Llama: 2 layers x 4 heads x head_dim 8 -> L * (2*H*d + 2*H) = 2 * (64 + 8)
    assert tiny["jola_trainable_params"] == 2 * (2 * 4 * 8 + 2 * 4)
    for variant in ("plain", "batched", "fused"):
        assert _positive(tiny["jola_variants"][variant]["ms"]), tiny["jola_variants"][variant]
    for mode in REQUIRED_EVAL_MODES:
        assert _positive(tiny["eval_ms_per_example"][mode]), mode
    speedup = tiny["eval_speedup_vs_beam4_bs1"]["greedy_bs64"]
    assert speedup == pytest.approx(
        tiny["eval_ms_per_example"]["beam4_bs1"] / tiny["eval_ms_per_example"]["greedy_bs64"]
    )
    steps = tiny["trial_steps_per_s"]
    assert set(steps) == {"1", "2"} and all(_positive(v) for v in steps.values()), steps
    assert tiny["packing_gain"]["2"] == pytest.approx(steps["2"] / steps["1"])
    packed = tiny["pack_trial_steps_per_s"]  # one pack of K configurations, K trial-steps a step
    assert set(packed) == {"1", "2"} and all(_positive(v) for v in packed.values()), packed
    assert tiny["pack_vs_processes"]["2"] == pytest.approx(packed["2"] / steps["2"])
    assert "one pack of K" in out.with_suffix(".md").read_text()
    meta = result["meta"]
    assert meta["versions"]["torch"] == torch.__version__
    assert "benchmarks.run" in meta["command"] and "--quick" in meta["command"]
    markdown = out.with_suffix(".md").read_text()
    assert "| floor: frozen forward + backward to the input embeddings |" in markdown
    assert "`label_scoring_bs64`" in markdown


def test_unknown_shape_is_a_clear_error(tmp_path):
    proc = _harness(tmp_path, "--device", "cpu", "--shapes", "70b", timeout=120)
    assert proc.returncode == 2
    assert "--shapes: unknown ['70b']" in proc.stderr
    assert "Traceback" not in proc.stderr


def _edited_tiny(seed: int = 0):
    from jola_ray.editing import JoLAConfig, apply_edit
    from jola_ray.tiny import build_tiny

    model, _ = build_tiny("llama", seed=seed)
    edit = apply_edit(model, JoLAConfig(seed=seed, init_std=0.5))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # gates away from 0/1 so every parameter gets a gradient
        edit.mul_log_alpha.uniform_(-1.0, 1.0, generator=gen)
        edit.add_log_alpha.uniform_(-1.0, 1.0, generator=gen)
    return model, edit


def _loss_and_grads(model, edit, ids):
    loss = model(input_ids=ids, labels=ids).loss
    grads = torch.autograd.grad(loss, [p for _, p in sorted(edit.named_parameters())])
    return loss.detach(), grads


@pytest.mark.parametrize("variant", ["batched", "fused"])
def test_variant_computes_the_library_edit(variant):
    from benchmarks import edit_variants

    ids = torch.randint(4, 90, (2, 24), generator=torch.Generator().manual_seed(1))
    model, edit = _edited_tiny()
    model.eval()  # deterministic gates: the variants must match exactly the same function
    ref_loss, ref_grads = _loss_and_grads(model, edit, ids)
    undo = edit_variants.install(edit, model, variant)
    loss, grads = _loss_and_grads(model, edit, ids)
    assert loss == pytest.approx(ref_loss.item(), rel=1e-5)
    for got, want in zip(grads, ref_grads, strict=True):
        assert want.abs().sum() > 0
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
    undo()
    again, _ = _loss_and_grads(model, edit, ids)
    assert again == pytest.approx(ref_loss.item(), rel=1e-6)  # undo restores the library path


def test_fused_matches_batched_with_sampled_gates():
    """Training mode samples gates; batched and fused draw them identically from the RNG."""
    from benchmarks import edit_variants

    ids = torch.randint(4, 90, (2, 24), generator=torch.Generator().manual_seed(2))
    results = {}
    for variant in ("batched", "fused"):
        model, edit = _edited_tiny()
        model.train()
        edit_variants.install(edit, model, variant)
        torch.manual_seed(123)
        results[variant] = _loss_and_grads(model, edit, ids)
    assert results["fused"][0] == pytest.approx(results["batched"][0].item(), rel=1e-5)
    for got, want in zip(results["fused"][1], results["batched"][1], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)


def test_variants_refuse_an_edit_they_do_not_cover():
    from benchmarks import edit_variants
    from jola_ray.editing import JoLAConfig, apply_edit
    from jola_ray.tiny import build_tiny

    model, _ = build_tiny("llama")
    edit = apply_edit(model, JoLAConfig(parts="add", seed=0))
    with pytest.raises(ValueError, match="parts='both'"):
        edit_variants.install(edit, model, "fused")


def test_report_marks_targets_met_and_missed():
    from benchmarks.report import merge, render

    base = {"meta": {"device_name": "GPU X", "command": "python -m benchmarks.run a"}}
    first = {
        **base,
        "shapes": {
            "1b": {
                "floor_ms": 40.0,
                "jola_ms": 60.0,
                "jola_over_floor": 1.5,
                "jola_best_over_floor": 1.2,  # meets <= 1.25
                "jola_best_variant": "fused",
                "lofit_ms": 50.0,
                "lofit_over_floor": 1.25,
                "peak_gb": 7.0,
            }
        },
    }
    second = {
        "meta": {**base["meta"], "command": "python -m benchmarks.run b"},
        "shapes": {
            "1b": {
                "eval_ms_per_example": {"beam4_bs1": 270.0, "greedy_bs64": 10.0},
                "eval_speedup_vs_beam4_bs1": {"greedy_bs64": 27.0},  # misses >= 30
                "trial_steps_per_s": {"1": 16.0, "2": 24.0},
                "packing_gain": {"1": 1.0, "2": 1.5},  # meets >= 1.4
            }
        },
    }
    merged = merge([first, second])
    assert merged["shapes"]["1b"]["floor_ms"] == 40.0
    assert merged["shapes"]["1b"]["packing_gain"]["2"] == 1.5
    assert merged["meta"]["commands"] == [
        "python -m benchmarks.run a",
        "python -m benchmarks.run b",
    ]
    text = render([first, second])
    assert "| JoLA step / floor, 1b (fastest variant `fused`) | <= 1.25x | 1.20x | yes |" in text
    assert (
        "| eval speed-up over 4-beam batch 1, 1b (`greedy_bs64`) | >= 30x | 27.00x | **no** |"
        in text
    )
    assert "| packing gain, 1b (2 processes) | >= 1.4x | 1.50x | yes |" in text


@pytest.mark.slow
@pytest.mark.ray
def test_trial_and_sweep_sections_on_tiny(tmp_path):
    out = tmp_path / "tiny-trial-sweep.json"
    proc = _harness(
        tmp_path,
        "--device",
        "cpu",
        "--shapes",
        "tiny",
        "--quick",
        "--only",
        "trial,sweep",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    tiny = result["shapes"]["tiny"]
    assert "errors" not in tiny, tiny.get("errors")
    phases = tiny["trial_phases_s"]
    assert sum(phases.values()) == pytest.approx(tiny["trial_wall_s"], rel=1e-6)
    assert 0 < tiny["trial_setup_fraction"] < 1
    assert tiny["trial_epochs"] == 2 and tiny["trial_eval_calls"] == 3  # dev x 2, then test
    assert all(tiny["trial_wrapped"].values()), tiny["trial_wrapped"]
    sweep = result["sweep"]
    assert "error" not in sweep, sweep.get("error")
    for level in ("1", "2"):
        assert sweep["sweep_levels"][level]["counts"] == {"finished": 2, "pruned": 0, "errored": 0}
        assert _positive(sweep["sweep_trials_per_device_hour"][level])
    assert _positive(sweep["ray_overhead_per_trial_s"])


def test_pack_runs_do_the_same_trials_work_both_ways_and_render(tmp_path):
    """``benchmarks.packing --trainer``: K trials one at a time and one pack of K train the same
    optimizer steps (so the throughput compares equal work), and the report shows the rows."""
    out = tmp_path / "pack-runs.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.packing", "--trainer", "--quick", "--levels", "1,3",
         "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    levels = result["shapes"]["tiny"]["pack_runs"]["levels"]
    assert sorted(levels) == ["1", "3"]
    for k, row in levels.items():
        steps_alone, steps_packed = row["trial_steps"]
        assert steps_alone == steps_packed == int(k) * 2 * (16 // 8), (k, row)  # 2 epochs
        assert _positive(row["gain"]) and row["gain"] == pytest.approx(
            row["alone_s"] / row["packed_s"]
        )
    from benchmarks.report import render

    text = render([result])
    assert "### K trials through the trainer" in text and "| tiny | 3 |" in text
