"""Loading a hand-built experiment dir, per-seed selection and the paper tables' exact values."""

from __future__ import annotations

import io
import math
import statistics

import pandas as pd
import pytest

from analysis.load import load_experiments
from analysis.select import select_configs, summarise
from analysis.tables import paper_tables, to_csv, to_latex, to_markdown


@pytest.fixture(scope="module")
def tables(experiment):
    trials, _ = load_experiments([str(experiment)])
    selected = select_configs(trials)
    return trials, selected, paper_tables(selected, trials)


def _trial(trials, task, seed, method, cfg=None):
    rows = trials[(trials.task == task) & (trials.seed == seed) & (trials.method == method)]
    if cfg is not None:
        rows = rows[rows.config_name == cfg]
    assert len(rows) == 1
    return rows.iloc[0]


def test_trials_table_status_best_epoch_and_config(tables):
    trials, _, _ = tables
    assert len(trials) == 24
    pruned = _trial(trials, "boolq", 3, "jola", "c1")
    assert pruned.status == "pruned" and pruned.pruned_epoch == 2 and pruned.epochs_run == 2
    assert pruned.best_dev_score == 52 and pruned.best_epoch == 2
    errored = _trial(trials, "boolq", 3, "jola", "c0")
    assert errored.status == "errored"
    assert errored.error == "RuntimeError: CUDA out of memory"
    done = _trial(trials, "boolq", 1, "jola", "c1")
    assert done.status == "finished" and done.best_epoch == 2 and done.best_dev_score == 75
    assert done.dev_accuracy == 75  # dev metrics of the best epoch, not the last
    assert done.test_accuracy == 72 and done.trainable_params == 264
    # params.json nested hp/fixed flattened by leaf name; Ray's nested config copy dropped
    assert done.lr == 0.001 and done.batch_size == 8 and done.max_epochs == 3
    assert "config" not in trials.columns and "hp" not in trials.columns
    # progress.csv read when result.json is absent
    assert _trial(trials, "piqa", 3, "jola", "c0").test_score == 64
    zs = _trial(trials, "boolq", 2, "zero_shot")
    assert zs.status == "finished" and zs.test_score == 52 and zs.epochs_run == 0


def test_selection_best_dev_per_seed_and_missing_seeds(tables):
    _, selected, _ = tables

    def pick(task, method, seed):
        rows = selected[
            (selected.task == task) & (selected.method == method) & (selected.seed == seed)
        ]
        assert len(rows) == 1
        return rows.iloc[0]

    assert pick("boolq", "jola", 1).config_name == "c1"  # dev 75 > 70
    assert pick("boolq", "jola", 2).config_name == "c0"  # c1 was pruned
    s3 = pick("boolq", "jola", 3)
    assert not s3.selected and s3.n_pruned == 1 and s3.n_errored == 1
    assert s3.reason == "no finished trial (1 pruned, 1 errored)"
    assert pick("demo_sentiment", "jola", 2).config_name == "c0"  # tie on dev 70: by name
    never = pick("demo_sentiment", "jola", 3)
    assert not never.selected and never.n_trials == 0 and "no trial ran" in never.reason
    assert pick("boolq", "zero_shot", 3).selected  # zero-shot's one config, no dev score
    # xsum ran seed 1 only: no seed 2 or 3 expected there
    assert set(selected[selected.task == "xsum"].seed) == {1}


def _cell(mean, std, n, expected):
    if n == 1 and expected == 1:
        return f"{mean:.1f}"
    std_text = f" ± {std:.1f}" if n > 1 else ""
    count = f"({n}/{expected})" if n < expected else f"({n})"
    return f"{mean:.1f}{std_text} {count}"


def test_commonsense_table_exact_cells(tables):
    _, _, all_tables = tables
    table = next(t for t in all_tables if t.slug == "commonsense_tiny-llama")
    assert table.header == ["Method", "Params", "BoolQ", "PIQA", "Avg"]
    zs, jola = table.rows
    assert [c.text for c in zs[:2]] == ["Zero-shot", "0"]
    assert [c.text for c in jola[:2]] == ["JoLA", "264"]
    boolq = [72.0, 77.0]  # seeds 1, 2; seed 3 has no finished trial
    piqa = [60.0, 62.0, 64.0]
    assert jola[2].text == _cell(statistics.mean(boolq), statistics.stdev(boolq), 2, 3)
    assert jola[3].text == _cell(statistics.mean(piqa), statistics.stdev(piqa), 3, 3)
    zs_boolq = [50.0, 52.0, 51.0]
    assert zs[2].text == _cell(statistics.mean(zs_boolq), statistics.stdev(zs_boolq), 3, 3)
    avg = (statistics.mean(boolq) + statistics.mean(piqa)) / 2
    assert jola[4].text == f"{avg:.1f}"
    assert zs[4].text == f"{(statistics.mean(zs_boolq) + 55.0) / 2:.1f}"
    assert [c.best for c in jola[2:]] == [True, True, True]
    assert not any(c.best for c in zs)
    md = to_markdown(table)
    assert f"| JoLA | 264 | **{jola[2].text}** |" in md
    tex = to_latex(table)
    assert r"\toprule" in tex and r"\bottomrule" in tex
    assert r"\textbf{74.5 $\pm$ 3.5 (2/3)}" in tex
    # CSV: numbers only, mean / std / n / expected / best in their own columns
    frame = pd.read_csv(io.StringIO(to_csv(table))).set_index("Method")
    assert frame.loc["JoLA", "BoolQ mean"] == pytest.approx(statistics.mean(boolq))
    assert frame.loc["JoLA", "BoolQ std"] == pytest.approx(statistics.stdev(boolq))
    assert frame.loc["JoLA", ["BoolQ n", "BoolQ expected", "BoolQ best"]].tolist() == [2, 3, 1]
    assert frame.loc["Zero-shot", "PIQA best"] == 0
    assert frame.loc["JoLA", ["params_min", "params_max"]].tolist() == [264, 264]
    assert frame.loc["JoLA", "Avg mean"] == pytest.approx(avg)
    assert all(pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns)


def test_gem_and_other_tables(tables):
    _, _, all_tables = tables
    gem = next(t for t in all_tables if t.slug == "gem_tiny-llama")
    assert gem.header == [
        "Method",
        "Params",
        "XSum BLEU",
        "XSum ROUGE-L",
        "Avg BLEU",
        "Avg ROUGE-L",
    ]
    assert [c.text for c in gem.rows[1]] == ["JoLA", "264", "10.5", f"{20.25:.1f}", "10.5", "20.2"]
    other = next(t for t in all_tables if t.slug == "other_tiny-llama")
    assert other.header == ["Method", "Params", "demo_sentiment"]  # no Avg in "other"
    jola = [66.0, 69.0]  # seed 1: c1 (dev 65); seed 2: c0 (tie); seed 3 never ran
    assert other.rows[1][2].text == _cell(statistics.mean(jola), statistics.stdev(jola), 2, 3)
    assert other.rows[0][2].text == _cell(45.0, statistics.stdev([40.0, 45.0, 50.0]), 3, 3)


def test_summary_counts_and_stats(tables):
    trials, selected, _ = tables
    summary = summarise(selected, trials)
    row = summary[(summary.task == "boolq") & (summary.method == "jola")].iloc[0]
    assert row.n_trials == 6 and row.n_finished == 3 and row.n_pruned == 2
    assert row.n_errored == 1 and row.n_seeds_selected == 2 and row.n_seeds_expected == 3
    assert row.missing_seeds == "3" and row.configs == "c1,c0"
    assert math.isclose(row.test_score_mean, 74.5)
    assert math.isclose(row.test_score_std, statistics.stdev([72.0, 77.0]))
    assert row.test_score_n == 2
