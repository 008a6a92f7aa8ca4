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
        "tasks": list(demo.tasks[:2]),
        "seeds": [42],
        "models": ["tiny-llama"],
        "methods": ["jola", "zero_shot"],
        "configs": [dict(c) for c in demo.configs["jola"][:2]],
        "fixed": {**demo.fixed, "epochs": 2, "train_size": 8, "dev_size": 8, "test_size": 8},
        "scheduler": {"type": "fifo"},  # every trial finishes: the report must have them all
        "resources": {"cpu": 1, "gpu": 0},
    }
    space = parse_space(raw, "inline")  # validated against the real task registry and RunConfig
    outcome = run_sweep(space, storage_path=str(tmp_path), say=lambda s: None)
    trials = read_trials(tmp_path / "real")
    assert len(trials) == 6  # 2 tasks x (2 configs + zero-shot)
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

    # The analysis report of this experiment: one row per method, one column per task.
    from analysis import build_report

    report = build_report([str(tmp_path / "real")], out_dir=str(tmp_path / "report"), plots=False)
    (demo_table,) = [t for t in report["tables"] if set(demo.tasks[:2]) <= set(t.header)]
    methods = [row[0].text for row in demo_table.rows]
    assert methods == ["Zero-shot", "JoLA"]
    assert [h for h in demo_table.header if h.startswith("demo_")] == sorted(demo.tasks[:2])


def test_per_method_space_runs_and_reports_one_row_per_method_in_paper_order(ray_cluster, tmp_path):
    """JoLA, LoFiT and LoRA each with their own configuration, zero-shot beside them."""
    demo = load_space("demo")
    raw = {
        "name": "methods",
        "tasks": [demo.tasks[0]],
        "seeds": [42],
        "models": ["tiny-llama"],
        "methods": ["jola", "lofit", "lora", "zero_shot"],
        "configs": {
            "jola": [{"name": "j1", "lr": 0.05}],
            "lofit": [{"name": "f1", "lr": 0.05, "lofit": {"top_k": 2}}],
            "lora": [{"name": "l1", "lr": 0.05, "lora.r": 2}],
        },
        "fixed": {**demo.fixed, "epochs": 2, "train_size": 8, "dev_size": 8, "test_size": 8},
        "scheduler": {"type": "fifo"},
        "resources": {"cpu": 1, "gpu": 0},
    }
    space = parse_space(raw, "inline")
    outcome = run_sweep(space, storage_path=str(tmp_path), say=lambda s: None)
    assert outcome.exit_code == 0
    trials = {t["params"]["method"]: t for t in read_trials(tmp_path / "methods")}
    assert set(trials) == {"jola", "lofit", "lora", "zero_shot"}
    assert all(status(t) == "finished" for t in trials.values())
    assert trials["lora"]["params"]["hp"] == {"config_name": "l1", "lr": 0.05, "lora.r": 2}
    final = trials["lora"]["rows"][-1]
    assert final["resolved"]["lora.r"] == 2 and "train_lr" in final

    from analysis import build_report, load_experiment

    table, _ = load_experiment(str(tmp_path / "methods"))
    lora_row = table[table["method"] == "lora"].iloc[0]
    assert lora_row["lora.r"] == 2 and lora_row["lora.alpha"] == 64.0  # resolved default
    report = build_report([str(tmp_path / "methods")], out_dir=str(tmp_path / "r"), plots=False)
    (t,) = [t for t in report["tables"] if demo.tasks[0] in t.header]
    assert [row[0].text for row in t.rows] == ["Zero-shot", "LoRA", "LoFiT", "JoLA"]
    assert t.header[1] == "Params" and all("%" in row[1].text for row in t.rows)
