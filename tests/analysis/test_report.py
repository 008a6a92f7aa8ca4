"""render_report's files and text, the ledger, the CLI and the errors for bad directories."""

from __future__ import annotations

import argparse
import json
import math
import os

import pandas as pd
import pytest

from analysis import ExperimentDirError, commands
from analysis.ledger import asha_effect, ledger, status_counts
from analysis.load import load_experiments
from analysis.report import render_report
from analysis.select import select_configs
from analysis.tables import axis_tables


@pytest.fixture(scope="module")
def rendered(experiment, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return out, render_report([str(experiment)], out_dir=str(out), fmt="md")


def test_status_counts_and_ledger(experiment, fake):
    trials, _ = load_experiments([str(experiment)])
    counts = status_counts(trials).set_index("task")
    assert counts.loc["boolq", ["finished", "pruned", "errored", "trials"]].tolist() == [6, 2, 1, 9]
    assert counts.loc["total", "trials"] == 24
    led = ledger(trials).set_index("task")
    # boolq ran on CPU (cost_gpu_s 0): wall seconds of every trial, 10 s per report
    boolq_wall = 3 * 10 + (4 + 4 + 4) * 10 + 1 * 10 + 1 * 10 + 2 * 10
    assert math.isclose(led.loc["boolq", "hours"], boolq_wall / 3600)
    assert led.loc["boolq", "source"] == "time_total_s (wall)"
    # xsum: 7200 GPU seconds for jola, zero-shot's 10 wall seconds
    assert math.isclose(led.loc["xsum", "hours"], (7200 + 10) / 3600)
    assert led.loc["xsum", "source"] == "mixed"
    # six jola boolq trials x 3 epochs; ASHA stopped c1/seed 2 at 1 (2 left), c1/seed 3 at 2
    assert led.loc["boolq", "grid_epochs"] == 6 * fake.EPOCHS
    assert led.loc["boolq", "epochs_run"] == 3 + 3 + 3 + 1 + 1 + 2
    assert math.isclose(led.loc["boolq", "asha_saved"], (2 + 1) / 18)
    assert math.isclose(led.loc["boolq", "not_run"], (18 - 13) / 18)


def test_render_report_writes_tables_frames_and_plots(rendered):
    out, text = rendered
    for name in ("trials", "epochs"):
        assert os.path.exists(out / f"{name}.parquet") and os.path.exists(out / f"{name}.csv")
    assert len(pd.read_parquet(out / "trials.parquet")) == 24
    epochs = pd.read_parquet(out / "epochs.parquet")
    # one row per epoch: jola boolq 13, piqa 9, xsum 3, demo 12; one per zero-shot trial (10)
    assert len(epochs) == 13 + 9 + 3 + 12 + 10
    for fmt in ("md", "tex", "csv"):
        assert os.path.exists(out / "tables" / f"commonsense_tiny-llama.{fmt}")
    for stem in ("learning_curves_boolq", "gates_jola_tiny-llama_boolq", "asha_savings"):
        for ext in ("png", "pdf"):
            assert os.path.getsize(out / "plots" / f"{stem}.{ext}") > 1000
    # gates.csv only exists for boolq/jola: no other gate maps
    assert sorted(p for p in os.listdir(out / "plots") if p.startswith("gates")) == [
        "gates_jola_tiny-llama_boolq.pdf",
        "gates_jola_tiny-llama_boolq.png",
    ]
    assert "| JoLA | 264 | **74.5 ± 3.5 (2/3)** | **62.0 ± 2.0 (3)** | **68.2** |" in text
    assert "| boolq | 6 | 2 | 1 | 0 | 0 | 0 | 0 | 9 |" in text  # status counts printed
    assert "Compute ledger" in text and "RuntimeError: CUDA out of memory" in text
    assert "| jola | tiny-llama | demo_sentiment | 2 | 3 | 3 |" in text  # missing seed shown


def test_cli_prints_latex_and_writes_to_out(experiment, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    args = parser.parse_args(
        ["report", str(experiment), "--format", "tex", "--out", str(tmp_path), "--no-plots"]
    )
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert r"\begin{tabular}{lrrrr}" in printed and r"\textbf{68.2}" in printed
    assert os.path.exists(tmp_path / "tables" / "other_tiny-llama.tex")
    assert not os.path.exists(tmp_path / "plots")


def test_package_exposes_render_report():
    import analysis
    import analysis.report

    assert analysis.render_report is analysis.report.render_report


def test_file_uri_reads_like_a_path(experiment):
    by_path, _ = load_experiments([str(experiment)])
    by_uri, _ = load_experiments(["file://" + str(experiment)])
    cols = ["trial_dir", "status", "test_score"]
    pd.testing.assert_frame_equal(by_path[cols], by_uri[cols])


def _bad(tmp_path, kind):
    root = tmp_path / "bad"
    root.mkdir()
    if kind == "foreign":
        (root / "notes.txt").write_text("hello")
        (root / "sub").mkdir()
    elif kind == "trial":
        (root / "params.json").write_text("{}")
    elif kind == "badjson":
        (root / "t1").mkdir()
        (root / "t1" / "params.json").write_text("{not json")
    elif kind == "nokeys":
        (root / "t1").mkdir()
        (root / "t1" / "params.json").write_text(json.dumps({"lr": 0.1}))
    return str(root)


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("missing", "does not exist"),
        ("empty", "expected one subdirectory per trial holding params.json"),
        ("foreign", "found notes.txt, sub"),
        ("trial", "single trial directory"),
        ("badjson", "params.json is not valid JSON"),
        ("nokeys", "params.json has no task, seed, model, method"),
    ],
)
def test_bad_directories_give_clear_errors(tmp_path, capsys, kind, words):
    path = str(tmp_path / "nowhere") if kind == "missing" else _bad(tmp_path, kind)
    with pytest.raises(ExperimentDirError, match=words):
        load_experiments([path])
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    args = parser.parse_args(["report", path])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err


def test_asha_selection_compared_with_full_grid(tmp_path, fake):
    """The same seed run with ASHA (c1 pruned) and without (all finished): did the pick change?"""
    asha, full = tmp_path / "asha", tmp_path / "full"
    asha.mkdir()
    full.mkdir()
    fake.write_trial(
        str(asha),
        "a0",
        fake.params("boolq", 1, "jola", "c0"),
        fake.finished_rows([70], {"accuracy": 60}),
    )
    fake.write_trial(str(asha), "a1", fake.params("boolq", 1, "jola", "c1"), fake.epoch_rows([50]))
    fake.write_trial(
        str(full),
        "f0",
        fake.params("boolq", 1, "jola", "c0"),
        fake.finished_rows([70], {"accuracy": 60}),
    )
    # Without pruning, c1 recovers and wins on dev: ASHA changed the selection.
    fake.write_trial(
        str(full),
        "f1",
        fake.params("boolq", 1, "jola", "c1"),
        fake.finished_rows([50, 80], {"accuracy": 65}),
    )
    trials, _ = load_experiments([str(asha), str(full)])
    row = asha_effect(trials).set_index("task").loc["boolq"]
    assert row.compared == 1 and row.same_selection == 0 and row.pruned == 1
    # Pooled over both experiments, selection takes the best finished trial: c1 (dev 80).
    assert select_configs(trials).iloc[0].config_name == "c1"


def test_data_size_axis_tables(tmp_path, fake):
    root = tmp_path / "sizes"
    root.mkdir()
    scores = {(100, 1): 60.0, (100, 2): 62.0, (200, 1): 70.0, (200, 2): 74.0}
    for (size, seed), acc in scores.items():
        p = fake.params("demo_sentiment", seed, "jola", "c0")
        p["train_size"] = size  # an extra sweep axis sits at the top of params.json
        fake.write_trial(
            str(root), f"t{size}_{seed}", p, fake.finished_rows([50], {"accuracy": acc})
        )
    trials, _ = load_experiments([str(root)])
    selected = select_configs(trials)
    [table] = axis_tables(selected, "train_size")
    assert table.header == ["Method", "train_size=100", "train_size=200"]
    assert [c.text for c in table.rows[0]] == ["JoLA", "61.0 ± 1.4 (2)", "72.0 ± 2.8 (2)"]
    out = render_report([str(root)], out_dir=str(tmp_path / "rep"))
    assert "Data-size analysis (task=demo_sentiment)" in out
    assert "Other tasks (model=tiny-llama, train_size=100)" in out  # one table per size
    assert os.path.exists(tmp_path / "rep" / "plots" / "data_size_demo_sentiment.png")


def test_ray_experiment_state_marks_unfinished_trials(tmp_path, fake):
    """A trial Ray still lists as RUNNING is not counted as pruned; a TERMINATED one is."""
    root = tmp_path / "exp"
    root.mkdir()
    p = fake.params("boolq", 1, "jola", "c0")
    fake.write_trial(str(root), "trainable_abcde_00000", p, fake.epoch_rows([50, 51]))
    fake.write_trial(str(root), "trainable_abcde_00001", p, fake.epoch_rows([50]))
    fake.write_trial(str(root), "trainable_abcde_00002", p, [])  # queued, never reported
    trial_data = [
        [json.dumps({"trial_id": "00000", "status": "RUNNING"}), "{}"],
        [json.dumps({"trial_id": "00001", "status": "TERMINATED"}), "{}"],
        [json.dumps({"trial_id": "abcde_00002", "status": "PENDING"}), "{}"],
    ]
    state = {"trial_data": trial_data, "runner_data": {}, "stats": {}}
    (root / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps(state))
    trials, _ = load_experiments([str(root)])
    status = dict(zip(trials.trial_dir, trials.status, strict=True))
    assert status == {
        "trainable_abcde_00000": "unfinished",
        "trainable_abcde_00001": "pruned",
        "trainable_abcde_00002": "unfinished",
    }
    assert math.isnan(trials.set_index("trial_dir").loc["trainable_abcde_00000", "pruned_epoch"])


def test_trials_with_fewer_examples_than_asked_are_flagged(tmp_path, fake):
    root = tmp_path / "short"
    root.mkdir()
    for seed, note in ((1, "train 18 of 200 asked, dev 17 of 200 asked"), (2, "")):
        rows = fake.finished_rows([50], {"accuracy": 60.0})
        rows[-1].update(examples_train=18 if note else 200, examples_dev=17 if note else 200)
        rows[-1]["short_splits"] = note
        fake.write_trial(str(root), f"t{seed}", fake.params("boolq", seed, "jola", "c0"), rows)
    trials, _ = load_experiments([str(root)])
    by_seed = trials.set_index("seed")
    assert by_seed.loc[1, "short_splits"].startswith("train 18 of 200")
    assert by_seed.loc[2, "short_splits"] == "" and by_seed.loc[1, "examples_train"] == 18
    out = render_report([str(root)], out_dir=str(tmp_path / "rep"), plots=False)
    section = out.split("**Trials with fewer examples than asked** (1:", 1)[1]
    assert "train 18 of 200 asked, dev 17 of 200 asked" in section.split("Report written")[0]
