"""One sweep on a tiny model with every registered method; the report has every row of the
paper's table in the paper's order (Zero-shot, LoRA, BitFit, RED, RepE, ITI, ReFT, LoFiT, JoLA)."""

from __future__ import annotations

import pytest
from expdir import read_trials, status

from jola_ray.methods import catalog, registry
from jola_ray.sweep.runner import run_sweep
from jola_ray.sweep.space import parse_space

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# one small configuration per tuned method (a tiny random model: high rates, few positions)
CONFIGS = {
    "jola": [{"name": "j", "lr": 5.0e-2}],
    "lofit": [{"name": "f", "lr": 5.0e-2, "lofit": {"top_k": 2}}],
    "lora": [{"name": "l", "lr": 1.0e-2, "lora": {"r": 2, "alpha": 4}}],
    "bitfit": [{"name": "b", "lr": 1.0e-2}],
    "red": [{"name": "e", "lr": 1.0e-2}],
    "repe": [{"name": "p", "repe": {"coefficient": 1.0}}],
    "iti": [{"name": "t", "iti": {"top_k": 2, "alpha": 5.0}}],
    "loreft": [{"name": "r", "lr": 1.0e-2, "loreft": {"rank": 2, "first_n": 2, "last_n": 2}}],
}


def test_every_method_in_one_sweep_and_the_report_in_paper_order(ray_cluster, tmp_path):
    methods = list(registry.names())
    assert set(methods) - {"zero_shot"} == set(CONFIGS)  # a new method joins this sweep
    raw = {
        "name": "all",
        "tasks": ["demo_vowel"],
        "seeds": [42],
        "models": ["tiny-llama"],
        "methods": methods,
        "configs": CONFIGS,
        "fixed": {
            "epochs": 1, "train_size": 8, "dev_size": 8, "test_size": 8, "batch_size": 8,
            "warmup_steps": 0, "decoding": "label_scoring",
        },
        "scheduler": {"type": "fifo"},
        "resources": {"cpu": 1, "gpu": 0},
    }  # fmt: skip
    space = parse_space(raw, "inline")
    outcome = run_sweep(space, storage_path=str(tmp_path), say=lambda s: None)
    trials = read_trials(tmp_path / "all")
    params = [t["params"].get("trial", t["params"]) for t in trials]  # grid_search nests it
    assert sorted(p["method"] for p in params) == sorted(methods)
    for t, p in zip(trials, params, strict=True):
        assert t["error"] is None, (p["method"], t["error"])
        assert status(t) == "finished"
        assert t["rows"][-1]["run_status"] == "finished"
    assert outcome.exit_code == 0

    from analysis import build_report

    report = build_report([str(tmp_path / "all")], out_dir=str(tmp_path / "report"), plots=False)
    (table,) = [t for t in report["tables"] if "demo_vowel" in t.header]
    rows = [row[0].text for row in table.rows]
    assert rows == [catalog.display_name(m) for m in catalog.row_order(methods)]
    assert rows == [
        "Zero-shot", "LoRA", "BitFit", "RED", "RepE", "ITI", "ReFT", "LoFiT", "JoLA",
    ]  # fmt: skip
