"""A real small sweep of an ablation space (jola.gates) on the tiny model, reported end to end."""

from __future__ import annotations

import statistics

import pytest
from expdir import read_trials, status

from jola_ray.sweep.runner import run_sweep
from jola_ray.sweep.space import load_space, parse_space

pytestmark = [pytest.mark.ray, pytest.mark.slow]
VARIANTS = ("two", "shared", "none")


def test_gate_ablation_sweep_reported_end_to_end(ray_cluster, tmp_path):
    shipped = load_space("gate_ablation")
    demo = load_space("demo")
    raw = {
        "name": "ablation",
        "tasks": ["demo_parity"],
        "seeds": [42, 43],
        "models": ["tiny-llama"],
        "methods": ["jola"],
        "axes": {"jola.gates": list(shipped.axes["jola.gates"])},
        "configs": [dict(demo.configs["jola"][3])],
        "fixed": {**demo.fixed, "epochs": 2, "train_size": 8, "dev_size": 8, "test_size": 8},
        "scheduler": {"type": "fifo"},
        "resources": {"cpu": 1, "gpu": 0},
    }
    space = parse_space(raw, "inline")
    outcome = run_sweep(space, storage_path=str(tmp_path), say=lambda s: None)
    assert outcome.exit_code == 0
    trials = read_trials(tmp_path / "ablation")
    assert len(trials) == 2 * 3 and all(status(t) == "finished" for t in trials)
    scores = {v: [] for v in VARIANTS}
    for t in trials:
        final = t["rows"][-1]
        variant = t["params"]["jola.gates"]
        scores[variant].append(final["test_score"])
        # 2 layers x (2 parts x 4 heads x 8 dims + gates: 8 two, 4 shared, 0 none)
        gates = {"two": 8, "shared": 4, "none": 0}[variant]
        assert final["trainable_params"] == 2 * (64 + gates)
        assert {"open_gate_fraction_add_l0", "open_gate_fraction_mul_l1"} <= set(t["rows"][0])

    from analysis import build_report

    report = build_report([str(tmp_path / "ablation")], out_dir=str(tmp_path / "report"))
    [table] = [t for t in report["tables"] if t.slug == "gate_ablation"]
    assert [row[1].text for row in table.rows] == list(VARIANTS)
    for row, variant in zip(table.rows, VARIANTS, strict=True):
        values = scores[variant]  # one configuration: the selection is the only trial
        mean, std = statistics.mean(values), statistics.stdev(values)
        assert row[2].text == f"{mean:.1f} ± {std:.1f} (2)"
    dynamics = report["gate_dynamics"]
    assert set(dynamics["jola.gates"]) == set(VARIANTS)
    assert sorted(set(dynamics["epoch"])) == [1, 2]
    none = report["sparsity"][report["sparsity"]["jola.gates"] == "none"]
    assert none["closed_add"].tolist() == [0.0, 0.0]  # no gates: nothing is ever closed
    assert any(p.endswith("gate_ablation.png") for p in report["plots"])
    assert any("gate_dynamics" in p for p in report["plots"])
