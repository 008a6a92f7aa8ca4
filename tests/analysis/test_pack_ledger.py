"""The compute ledger says when seconds are a trial pack's, shared among its configurations."""

import math

import pandas as pd

from analysis.ledger import compute_ledger


def test_ledger_marks_pack_shared_seconds():
    trials = pd.DataFrame(
        {
            "task": ["t", "t", "t", "u"],
            "method": ["jola"] * 4,
            "status": ["finished", "pruned", "finished", "finished"],
            "epochs_run": [4.0, 2.0, 4.0, 4.0],
            "max_epochs": [4.0, 4.0, 4.0, 4.0],
            "cost_gpu_s": [0.0, math.nan, 0.0, 0.0],
            "time_total_s": [10.0, 4.0, 12.0, 30.0],
            # two configurations of one pack (their shares), one unpacked trial in each task
            "pack_size": [2.0, 2.0, math.nan, math.nan],
        }
    )
    table = compute_ledger(trials).set_index("task")
    assert table.loc["t", "pack_shared"] == 2 and table.loc["u", "pack_shared"] == 0
    assert table.loc["t", "source"] == "time_total_s (wall), pack-shared"
    assert table.loc["u", "source"] == "time_total_s (wall)"
    assert table.loc["t", "seconds"] == 26.0  # shares add up to what the pack spent
    assert table.loc["total", "pack_shared"] == 2
