"""Each epoch's report carries the open-gate fractions per part and per layer (gate dynamics)."""

import csv
from pathlib import Path

from jola_ray.train import run


def test_epoch_reports_open_gates_per_part_and_layer(tiny_cfg, recorder):
    cfg = tiny_cfg(patience=0)
    rec = recorder()
    run(cfg, report=rec)
    first, final = rec.calls[0][0], rec.calls[-1][0]
    best = rec.calls[int(final["best_epoch"]) - 1][0]
    for part in ("add", "mul"):
        per_layer = [first[f"open_gate_fraction_{part}_l{layer}"] for layer in (0, 1)]
        # 2 layers of 4 heads: the part's fraction is the mean of its layers' fractions
        assert abs(first[f"open_gate_fraction_{part}"] - sum(per_layer) / 2) < 1e-9
    both = (first["open_gate_fraction_add"] + first["open_gate_fraction_mul"]) / 2
    assert abs(first["open_gate_fraction"] - both) < 1e-9
    # the best epoch's figures are those of the edit kept and saved (gates.csv: one row per head)
    rows = list(csv.DictReader((Path(rec.calls[-1][1]) / "gates.csv").open()))
    for part in ("add", "mul"):
        opened = [float(r[f"gate_{part}"]) > 0 for r in rows if r["layer"] == "1"]
        assert abs(best[f"open_gate_fraction_{part}_l1"] - sum(opened) / len(opened)) < 1e-9


def test_gate_ablations_run_and_count(tiny_cfg, recorder):
    """``jola.gates`` reaches the edit: 2 layers x (2 parts x 4 heads x 8 dims + gates)."""
    for gates, n_gates in (("shared", 4), ("none", 0)):
        rec = recorder()
        metrics = run(
            tiny_cfg(name=gates, patience=0, epochs=1, **{"jola.gates": gates}), report=rec
        )
        assert metrics["trainable_params"] == 2 * (2 * 4 * 8 + n_gates)
        first = rec.calls[0][0]
        if gates == "none":
            assert first["train_penalty"] == 0 and first["open_gate_fraction_mul_l0"] == 1.0
        else:
            assert first["open_gate_fraction_add_l1"] == first["open_gate_fraction_mul_l1"]


def test_component_site_runs_end_to_end(tiny_cfg, recorder):
    """``jola.site: ffn`` trains, tests and reports: 2 layers x (2 x hidden 32 + 2 gates)."""
    rec = recorder()
    metrics = run(tiny_cfg(name="ffn", patience=0, epochs=1, **{"jola.site": "ffn"}), report=rec)
    assert metrics["trainable_params"] == 2 * (2 * 32 + 2)
    assert metrics["num_selected_heads"] == 0  # no head is edited
    assert {"open_gate_fraction_add_l0", "open_gate_fraction_mul_l1"} <= set(rec.calls[0][0])
