"""Each plot explains itself: legend entries per configuration and seed, zero-shot's level,
pruned vs early-stopped trials, closed gates marked, ASHA's and early stopping's savings apart."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import plots
from analysis.ledger import asha_effect
from analysis.load import load_experiments
from analysis.select import select_configs


@pytest.fixture
def figures(monkeypatch):
    """Capture each figure as it is saved: stem -> (legend texts, axes)."""
    seen = {}

    def save(fig, out_dir, stem):
        texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
        for ax in fig.axes:
            if ax.get_legend() is not None:
                texts += [t.get_text() for t in ax.get_legend().get_texts()]
        seen[stem] = (texts, fig.axes)
        plots.plt.close(fig)
        return [stem]

    monkeypatch.setattr(plots, "_save", save)
    return seen


def test_learning_curves_name_every_configuration_seed_and_zero_shot(tmp_path, fake, figures):
    root = tmp_path / "exp"
    root.mkdir()
    for seed, dev in ((1, 30.0), (2, 34.0)):
        zs = fake.params("boolq", seed, "zero_shot", None, epochs=3)
        row = {"epoch": 0, "dev_score": dev, "test_score": dev, "run_status": "finished"}
        fake.write_trial(str(root), f"z{seed}_0000{seed}", zs, [row])
        for cfg, scores in (("c0", [50, 55, 60]), ("c1", [40])):
            rows = (
                fake.finished_rows(scores, {"accuracy": 50})
                if len(scores) == 3
                else fake.epoch_rows(scores)
            )
            fake.write_trial(
                str(root), f"{cfg}{seed}_1000{seed}", fake.params("boolq", seed, "jola", cfg), rows
            )
    _, epochs = load_experiments([str(root)])
    plots.learning_curves(epochs, "unused")
    texts, (ax,) = figures["learning_curves_boolq"]
    assert texts == [
        "c0",
        "c1",
        "seed 1",
        "seed 2",
        "Zero-shot (mean of 2 seeds)",
        "pruned by ASHA",
    ]
    curves = [
        line for line in ax.get_lines() if len(line.get_xdata()) > 1 and line.get_zorder() == 3
    ]
    assert len(curves) == 2  # c1 pruned after one epoch: a point and an x, no curve
    assert len({line.get_color() for line in curves}) == 1  # c0's two seeds share a colour
    assert len({line.get_linestyle() for line in curves}) == 2  # and differ in style
    (level,) = [line for line in ax.get_lines() if line.get_zorder() == 2]
    assert level.get_ydata()[0] == pytest.approx((30.0 + 34.0) / 2)  # zero-shot's dev mean


def test_gate_map_marks_fully_closed_gates(experiment, figures):
    trials, _ = load_experiments([str(experiment)])
    plots.gate_maps(select_configs(trials), trials, "unused")
    texts, axes = figures["gates_jola_tiny-llama_boolq"]
    assert "closed (0 in every seed)" in texts
    # the fixture's gates.csv: gate_add has 2 of 4 at 0, gate_mul 2 of 4
    titles = [ax.get_title() for ax in axes if ax.get_title()]
    assert any("gate_add" in t and "2 of 4 closed" in t for t in titles)
    image = axes[0].get_images()[0].get_array()
    assert np.ma.count_masked(image) == 2  # the closed cells are drawn apart (masked)


def test_asha_plot_separates_pruning_from_early_stopping(tmp_path, fake, figures):
    root = tmp_path / "exp"
    root.mkdir()
    p = fake.params
    fake.write_trial(
        str(root),
        "a_00001",
        p("boolq", 1, "jola", "c1", epochs=6),
        fake.finished_rows([50] * 4, {"accuracy": 6}),
    )
    fake.write_trial(
        str(root), "b_00002", p("boolq", 1, "jola", "c2", epochs=6), fake.epoch_rows([40, 41])
    )
    trials, _ = load_experiments([str(root)])
    asha = asha_effect(trials)
    assert asha.loc[0, "asha_saved"] == 4 and asha.loc[0, "early_stop_saved"] == 2
    plots.asha_savings(asha, "unused")
    texts, (ax,) = figures["asha_savings"]
    assert texts == ["run", "saved by ASHA (pruned trials)", "saved by early stopping"]
    heights = [patch.get_height() for patch in ax.patches]
    assert heights == [6 + 4 - 4, 4, 2]  # run 6 (4 + 2), ASHA 4, early stopping 2
