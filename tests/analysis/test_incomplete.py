"""An experiment a full disk or an interrupted sweep left incomplete: the report counts the
whole grid (trials never started included) and skips, counting, trials it cannot read."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import finished_rows, params, write_trial  # noqa: E402  (the fake trials' writer)

from analysis import render_report  # noqa: E402
from analysis.ledger import status_counts  # noqa: E402
from analysis.load import load_experiment  # noqa: E402


def _grid_point(p):
    return {k: p[k] for k in ("task", "seed", "model", "method")} | {
        "config_name": p["hp"]["config_name"]
    }


def _experiment(tmp_path, empty_params: bool):
    """A 6-point grid (1 task x 3 seeds x 2 configs): 3 trials finished, 1 with an empty
    params.json (a full disk), 2 never started."""
    exp = tmp_path / "exp"
    exp.mkdir()
    grid = [params("boolq", seed, "jola", c) for seed in (1, 2, 3) for c in ("c1", "c2")]
    for i, p in enumerate(grid[:4]):
        trial = write_trial(
            exp, f"boolq-s{p['seed']}-jola-{p['hp']['config_name']}-t000{i}",
            p, finished_rows([50.0 + i, 60.0 + i], {"accuracy": 55.0 + i}),
        )  # fmt: skip
        if empty_params and i == 3:
            open(os.path.join(trial, "params.json"), "w").close()
    marker = {"trials": len(grid), "grid": [_grid_point(p) for p in grid]}
    (exp / "jola_sweep.json").write_text(json.dumps(marker))
    return exp, grid


def test_the_status_counts_the_whole_grid(tmp_path):
    exp, grid = _experiment(tmp_path, empty_params=False)
    trials, _ = load_experiment(str(exp))
    assert len(trials) == len(grid)
    not_started = trials[trials["status"] == "not_started"]
    assert sorted(zip(not_started["seed"], not_started["config_name"], strict=False)) == [
        (3, "c1"),
        (3, "c2"),
    ]
    total = status_counts(trials).set_index("task").loc["total"]
    assert total["trials"] == 6 and total["finished"] == 4 and total["not_started"] == 2


def test_an_unreadable_trial_is_skipped_and_counted(tmp_path):
    exp, grid = _experiment(tmp_path, empty_params=True)
    trials, _ = load_experiment(str(exp))  # one empty params.json no longer refuses it all
    assert (trials["status"] == "unreadable").sum() == 1
    bad = trials[trials["status"] == "unreadable"].iloc[0]
    assert "params.json is not valid JSON" in bad["error"] and bad["trial_dir"].endswith("t0003")
    # its grid point is unknown without Ray's state: it is not counted again as never started
    assert (trials["status"] == "not_started").sum() == 2 and len(trials) == 6
    text = render_report([str(exp)], out_dir=str(tmp_path / "report"), plots=False)
    assert "unreadable" in text and "not_started" in text
