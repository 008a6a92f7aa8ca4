"""The whole report: load, select, tabulate, plot, write files, and return the printed text."""

from __future__ import annotations

import math
import os

import pandas as pd

from analysis.ledger import asha_effect, ledger, status_counts
from analysis.load import load_experiments
from analysis.plots import asha_savings, gate_maps, learning_curves
from analysis.select import extra_axes, select_configs, summarise
from analysis.studies import gate_dynamics, sparsity_frame, study_tables
from analysis.study_plots import study_plots
from analysis.tables import RENDERERS, Table, paper_tables

FORMATS = tuple(RENDERERS)


def default_out_dir(exp_dir: str) -> str:
    """``EXP/report`` for a local experiment; ``./<name>-report`` for a URI (s3://, gs://)."""
    if "://" in exp_dir:
        name = exp_dir.rstrip("/").rsplit("/", 1)[-1] or "experiment"
        return os.path.abspath(f"{name}-report")
    return os.path.join(exp_dir, "report")


def frame_to_markdown(frame: pd.DataFrame, floatfmt: str = "{:.2f}") -> str:
    """A small DataFrame as a Markdown table (no tabulate dependency)."""

    def fmt(v) -> str:
        if isinstance(v, float):
            return "–" if math.isnan(v) else floatfmt.format(v)
        return str(v)

    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] * len(cols)) + "|"]
    for rec in frame.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v) for v in rec) + " |")
    return "\n".join(lines) + "\n"


def _parquet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns mixing types (config values differ across trials) become strings."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object:
            kinds = {type(v) for v in out[col] if v is not None and v == v}  # skip None/NaN
            if len(kinds) > 1:
                out[col] = out[col].map(lambda v: None if v is None or v != v else str(v))
    return out


def _write_frame(frame: pd.DataFrame, out_dir: str, stem: str, parquet: bool = False) -> None:
    frame.to_csv(os.path.join(out_dir, stem + ".csv"), index=False)
    if parquet:
        _parquet_safe(frame).to_parquet(os.path.join(out_dir, stem + ".parquet"), index=False)


def _missing_section(summary: pd.DataFrame, axes: list[str]) -> str:
    gaps = summary[(summary["n_seeds_selected"] < summary["n_seeds_expected"])]
    if gaps.empty:
        return "Every expected seed has a selected configuration.\n"
    cols = [c for c in summary.columns if c in ("method", "model", "task", *axes)]
    cols += ["n_seeds_selected", "n_seeds_expected", "missing_seeds", "n_pruned", "n_errored"]
    return frame_to_markdown(gaps[cols])


def _short_section(trials: pd.DataFrame) -> str:
    """Trials trained or tested on fewer examples than the space asked (the run's own note)."""
    if "short_splits" not in trials.columns:
        return ""
    short = trials[trials["short_splits"].fillna("").astype(str) != ""]
    if short.empty:
        return ""
    cols = [c for c in ("trial_dir", "task", "method", "seed", "short_splits") if c in short]
    return (
        f"**Trials with fewer examples than asked** ({len(short)}: their data files are "
        "smaller than the space's sizes)\n\n" + frame_to_markdown(short[cols])
    )


def build_report(exp_dirs, out_dir: str | None = None, plots: bool = True) -> dict:
    """Load the experiments, compute every table and plot, and write them under ``out_dir``.

    Returns a dict of the frames (trials, epochs, selected, summary, status, ledger, asha,
    gate_dynamics, sparsity: per selected trial, closed gates at its selected epoch), the
    tables (list of Table), the out_dir and the plot paths.
    """
    if isinstance(exp_dirs, (str, os.PathLike)):
        exp_dirs = [exp_dirs]
    exp_dirs = [os.fspath(d) for d in exp_dirs]
    everything, epochs = load_experiments(exp_dirs)
    # unreadable trials are counted in the status table only (their config may be unknown)
    trials = everything[everything["status"] != "unreadable"]
    selected = select_configs(trials)
    summary = summarise(selected, trials)
    tables: list[Table] = paper_tables(selected, trials)
    dynamics, sparsity = gate_dynamics(selected, epochs, trials), sparsity_frame(selected, epochs)
    # The paper's analyses the sweep holds (recognised from its varying settings), then sparsity
    tables += study_tables(selected, trials, epochs, sparsity)
    parts = {
        "trials": everything,
        "epochs": epochs,
        "selected": selected,
        "summary": summary,
        "status": status_counts(everything),
        "ledger": ledger(trials),
        "asha": asha_effect(trials),
        "gate_dynamics": dynamics,
        "sparsity": sparsity,
    }
    out_dir = out_dir or default_out_dir(exp_dirs[0])
    table_dir, plot_dir = os.path.join(out_dir, "tables"), os.path.join(out_dir, "plots")
    os.makedirs(table_dir, exist_ok=True)
    for name, frame in parts.items():
        _write_frame(frame, out_dir, name, parquet=name in ("trials", "epochs"))
    for table in tables:
        for fmt, render in RENDERERS.items():
            path = os.path.join(table_dir, f"{table.slug}.{fmt}")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(render(table))
    written: list[str] = []
    if plots:
        written += learning_curves(epochs, plot_dir)
        written += gate_maps(selected, trials, plot_dir)
        written += asha_savings(parts["asha"], plot_dir)
        written += study_plots(selected, trials, epochs, plot_dir, dynamics)
    return {**parts, "tables": tables, "out_dir": out_dir, "plots": written}


def render_report(exp_dirs, out_dir: str | None = None, fmt: str = "md", plots: bool = True) -> str:
    """Write the report files (tables in all formats, trials/epochs in Parquet and CSV, plots)
    into ``out_dir`` (default ``EXP/report``) and return the text to print: the tables in
    ``fmt`` (md, tex or csv), the status counts, the seeds missing, the ledger and ASHA's effect.
    ``plots=False`` skips the figures (the slowest part).
    """
    if fmt not in RENDERERS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
    rep = build_report(exp_dirs, out_dir, plots=plots)
    render = RENDERERS[fmt]
    out = []
    for table in rep["tables"]:
        if fmt != "md":
            out.append(f"% {table.title}" if fmt == "tex" else f"# {table.title}")
        out.append(render(table))
    out.append(
        "**Trial status** (finished / pruned by ASHA / errored / unfinished: still pending or running in Ray / empty: no report / not_started: in the grid, no trial directory / unreadable: params.json unreadable, skipped)\n"
    )
    out.append(frame_to_markdown(rep["status"]))
    out.append("**Seeds without a selected configuration**\n")
    out.append(_missing_section(rep["summary"], extra_axes(rep["trials"])))
    out.append("**Compute ledger** (hours: GPU seconds, or wall seconds where source says so)\n")
    out.append(frame_to_markdown(rep["ledger"], floatfmt="{:.4g}"))
    asha = rep["asha"]
    if (asha["compared"] > 0).any():
        out.append("**ASHA vs the full grid** (seeds compared, same configuration selected)\n")
        out.append(frame_to_markdown(asha, floatfmt="{:.0f}"))
    out.append(_short_section(rep["trials"]))
    errors = rep["trials"][rep["trials"]["status"] == "errored"]
    if not errors.empty:
        out.append("**Errored trials**\n")
        out.append(frame_to_markdown(errors[["trial_dir", "task", "method", "seed", "error"]]))
    out.append(f"Report written to {rep['out_dir']} ({len(rep['plots'])} plot files).\n")
    return "\n".join(out)
