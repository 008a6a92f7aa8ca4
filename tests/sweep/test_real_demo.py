"""A small sweep through the real training run (jola_ray.train.run) on the tiny model."""

from __future__ import annotations

import pytest
from expdir import read_trials, status

from jola_ray.sweep.runner import comparison_table, run_sweep
from jola_ray.sweep.space import load_space, parse_space

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_real_runs_report_per_epoch_and_finish_with_test_metrics(ray_cluster, tmp_path):
    demo = load_space("demo")
    raw = {
        "name": "real",
        "tasks": [demo.tasks[0]],
        "seeds": [42],
        "models": ["tiny-llama"],
        "methods": ["jola", "zero_shot"],
        "configs": [dict(c) for c in demo.configs[:2]],
        "fixed": {**demo.fixed, "epochs": 2, "train_size": 8, "dev_size": 8, "test_size": 8},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
        "resources": {"cpu": 1, "gpu": 0},
    }
    space = parse_space(raw, "inline")  # validated against the real task registry and RunConfig
    outcome = run_sweep(space, storage_path=str(tmp_path), say=lambda s: None)
    trials = read_trials(tmp_path / "real")
    assert len(trials) == 3
    for t in trials:
        assert t["error"] is None, t["error"]
        assert status(t) == "finished"
        final = t["rows"][-1]
        assert final["run_status"] == "finished" and "test_score" in final
        assert 0.0 <= final["test_score"] <= 100.0
        ckpt = sorted(t["dir"].glob("checkpoint_*"))[-1]
        if t["params"]["method"] == "jola":
            assert [r["epoch"] for r in t["rows"]] == [1, 2, 2]
            assert {"metrics.json", "gates.csv", "edit.safetensors"} <= {
                p.name for p in ckpt.iterdir()
            }
        else:
            assert t["params"]["hp"] == {"config_name": "zero_shot"}
    assert outcome.exit_code == 0
    table = comparison_table(outcome)
    assert "JoLA" in table or "jola" in table
