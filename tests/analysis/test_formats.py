"""Every report format covers every section; the ledger counts what each method runs."""

from __future__ import annotations

import io
import math
import shutil
import subprocess

import pandas as pd
import pytest

from analysis.ledger import compute_ledger
from analysis.load import load_experiments
from analysis.report import render_report


def test_tex_report_is_one_document_with_every_section(experiment, tmp_path):
    text = render_report([str(experiment)], out_dir=str(tmp_path), fmt="tex", plots=False)
    assert text.startswith(r"\documentclass{article}") and r"\usepackage{booktabs}" in text
    assert r"\end{document}" in text.rstrip().splitlines()[-3:]  # then a % footer line
    for caption in ("Trial status", "Compute ledger", "Seeds without", "Errored trials"):
        assert rf"\caption{{{caption}" in text
    assert "| ---" not in text and "**" not in text  # no Markdown left in it
    assert r"CUDA out of memory" in text
    assert (tmp_path / "report.tex").read_text() in text
    if shutil.which("pdflatex") is None:
        pytest.skip("no pdflatex: structure checked only")
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "report.pdf").stat().st_size > 1000


def _csv_blocks(text: str) -> dict[str, pd.DataFrame]:
    """``# title (file)`` + CSV blocks -> {file: frame}."""
    blocks, name, lines = {}, None, []
    for line in text.splitlines() + ["# end (end)"]:
        if line.startswith("# "):
            if name and any(x.strip() for x in lines):
                blocks[name] = pd.read_csv(io.StringIO("\n".join(lines)))
            name = line.rsplit("(", 1)[-1].rstrip(")")
            lines = []
        else:
            lines.append(line)
    return blocks


def test_csv_report_is_one_numeric_csv_per_table(experiment, tmp_path):
    text = render_report([str(experiment)], out_dir=str(tmp_path), fmt="csv", plots=False)
    blocks = _csv_blocks(text)
    for name in (
        "tables/commonsense_tiny-llama.csv",
        "status.csv",
        "missing_seeds.csv",
        "ledger.csv",
        "errored.csv",
    ):
        assert name in blocks, sorted(blocks)
        on_disk = pd.read_csv(tmp_path / name)
        pd.testing.assert_frame_equal(blocks[name], on_disk)
    table = blocks["tables/commonsense_tiny-llama.csv"].set_index("Method")
    assert table.loc["JoLA", "BoolQ mean"] == pytest.approx(74.5)
    assert table.loc["JoLA", "BoolQ n"] == 2 and table.loc["JoLA", "BoolQ expected"] == 3
    numeric = [c for c in table.columns]
    assert all(pd.api.types.is_numeric_dtype(table[c]) for c in numeric)
    status = blocks["status.csv"].set_index("task")
    assert status.loc["boolq", "pruned"] == 2
    led = blocks["ledger.csv"].set_index("task")
    assert pd.api.types.is_numeric_dtype(led["asha_saved_pct"])


def _trial(fake, root, name, method, cfg, rows, epochs=6):
    p = fake.params("demo_parity", 1, method, cfg, epochs=epochs)
    fake.write_trial(str(root), name, p, rows)


def zero_shot_row():
    return [{"epoch": 0, "test_score": 40.0, "run_status": "finished"}]


def test_ledger_counts_no_epochs_for_zero_shot_and_splits_the_savings(tmp_path, fake):
    """The demo's shape: zero-shot trials carry the space's ``epochs: 6`` in ``fixed`` but run
    none. Three JoLA trials: one ran all 6, one early-stopped after 4, one ASHA pruned at 2."""
    root = tmp_path / "exp"
    root.mkdir()
    _trial(fake, root, "z_00000", "zero_shot", None, zero_shot_row())
    _trial(fake, root, "a_00001", "jola", "c1", fake.finished_rows([50] * 6, {"accuracy": 60}))
    _trial(fake, root, "b_00002", "jola", "c2", fake.finished_rows([50] * 4, {"accuracy": 60}))
    _trial(fake, root, "c_00003", "jola", "c3", fake.epoch_rows([40, 41]))
    trials, _ = load_experiments([str(root)])
    assert trials.set_index("trial_dir").loc["z_00000", "max_epochs"] == 6  # the trap
    row = compute_ledger(trials).set_index("task").loc["total"]
    grid = 3 * 6  # zero-shot adds nothing
    assert row.grid_epochs == grid and row.epochs_run == 6 + 4 + 2
    assert math.isclose(row.asha_saved_pct, 100 * 4 / grid)
    assert math.isclose(row.early_stop_saved_pct, 100 * 2 / grid)
    assert math.isclose(row.not_run_pct, 100 * (4 + 2) / grid)


def test_fifo_sweep_that_skipped_nothing_shows_nothing_not_run(tmp_path, fake):
    root = tmp_path / "exp"
    root.mkdir()
    _trial(fake, root, "z_00000", "zero_shot", None, zero_shot_row(), epochs=2)
    _trial(fake, root, "a_00001", "jola", "c1", fake.finished_rows([50, 51], {"accuracy": 6}), 2)
    trials, _ = load_experiments([str(root)])
    row = compute_ledger(trials).set_index("task").loc["total"]
    assert row.grid_epochs == 2 and row.not_run_pct == 0 and row.asha_saved_pct == 0


def test_params_percent_of_the_base_model_in_every_format(tmp_path, fake):
    """The Params column carries the count and its percent of ``base_params``: as text in
    Markdown and LaTeX, as separate numeric columns in the CSV."""
    root = tmp_path / "exp"
    root.mkdir()
    base, count = 25_000, 144
    for seed in (1, 2):
        zs = fake.zero_shot_rows({"accuracy": 40.0 + seed})
        zs[-1]["base_params"] = base
        p = fake.params("boolq", seed, "zero_shot", None, epochs=None)
        fake.write_trial(str(root), f"z{seed}_0000{seed}", p, zs)
        rows = fake.finished_rows([50, 60], {"accuracy": 70.0 + seed}, params_count=count)
        rows[-1]["base_params"] = base
        p = fake.params("boolq", seed, "jola", "c0")
        fake.write_trial(str(root), f"j{seed}_1000{seed}", p, rows)
    pct = 100.0 * count / base  # 0.576
    out = str(tmp_path / "out")
    md = render_report([str(root)], out_dir=out, fmt="md", plots=False)
    assert f"| JoLA | {count} ({pct:.3g}%) |" in md and "| Zero-shot | 0 (0%) |" in md
    tex = render_report([str(root)], out_dir=out, fmt="tex", plots=False)
    assert rf"JoLA & {count} ({pct:.3g}\%) &" in tex
    blocks = _csv_blocks(render_report([str(root)], out_dir=out, fmt="csv", plots=False))
    (name,) = [n for n in blocks if n.startswith("tables/commonsense")]
    table = blocks[name].set_index("Method")
    assert table.loc["JoLA", ["params_min", "params_max", "base_params"]].tolist() == [
        count,
        count,
        base,
    ]
    assert table.loc["JoLA", "params_pct_min"] == pytest.approx(pct)
    assert table.loc["JoLA", "params_pct_max"] == pytest.approx(pct)
    assert (
        table.loc["Zero-shot", "params_min"] == 0 and table.loc["Zero-shot", "params_pct_min"] == 0
    )
    assert all(pd.api.types.is_numeric_dtype(table[c]) for c in table.columns)
