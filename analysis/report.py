"""The whole report: load, select, tabulate, plot, write files, and return the printed text."""

from __future__ import annotations

import math
import os

import pandas as pd

from analysis.ledger import asha_effect, compute_ledger, status_counts
from analysis.load import load_experiments
from analysis.plots import asha_savings, gate_maps, learning_curves
from analysis.select import extra_axes, select_configs, summarise
from analysis.studies import gate_dynamics, sparsity_frame, study_tables
from analysis.study_plots import study_plots
from analysis.tables import (
    RENDERERS,
    Table,
    paper_tables,
    tex_escape,
    to_csv,
    to_latex,
    to_markdown,
)

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


def frame_to_latex(frame: pd.DataFrame, title: str, slug: str, floatfmt: str = "{:.4g}") -> str:
    """A DataFrame as a booktabs table environment (text left, numbers right)."""

    def fmt(v) -> str:
        if isinstance(v, float):
            return "--" if math.isnan(v) else tex_escape(floatfmt.format(v))
        return tex_escape(str(v))

    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    spec = "".join("r" if num else "l" for num in numeric)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\caption{{{tex_escape(title)}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(tex_escape(str(c)) for c in frame.columns) + r" \\",
        r"\midrule",
    ]
    for rec in frame.itertuples(index=False):
        lines.append(" & ".join(fmt(v) for v in rec) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\label{{tab:{slug}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _write_frame(frame: pd.DataFrame, out_dir: str, stem: str, parquet: bool = False) -> None:
    frame.to_csv(os.path.join(out_dir, stem + ".csv"), index=False)
    if parquet:
        _parquet_safe(frame).to_parquet(os.path.join(out_dir, stem + ".parquet"), index=False)


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
        "ledger": compute_ledger(trials),
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


def _missing_frame(summary: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    gaps = summary[(summary["n_seeds_selected"] < summary["n_seeds_expected"])]
    cols = [c for c in summary.columns if c in ("method", "model", "task", *axes)]
    cols += ["n_seeds_selected", "n_seeds_expected", "missing_seeds", "n_pruned", "n_errored"]
    return gaps[[c for c in cols if c in gaps.columns]]


def report_sections(rep: dict) -> list[tuple[str, str, pd.DataFrame | None, str]]:
    """The report's sections after the tables: (title, file stem, frame, text when empty).

    A frame of None (or empty) is rendered as its text only."""
    trials = rep["trials"]
    sections = [
        (
            "Trial status (finished / pruned by ASHA / errored / unfinished: still pending or "
            "running in Ray / empty: no report / not_started: in the grid, no trial directory / "
            "unreadable: params.json unreadable, skipped)",
            "status",
            rep["status"],
            "",
        ),
        (
            "Seeds without a selected configuration",
            "missing_seeds",
            _missing_frame(rep["summary"], extra_axes(trials)),
            "Every expected seed has a selected configuration.",
        ),
        (
            "Compute ledger (hours: GPU seconds, or wall seconds where source says so; "
            "savings in percent of the grid's epochs)",
            "ledger",
            rep["ledger"],
            "",
        ),
    ]
    asha = rep["asha"]
    if (asha["compared"] > 0).any():
        sections.append(
            (
                "ASHA vs the full grid (seeds compared, same configuration selected)",
                "asha",
                asha,
                "",
            )
        )
    if "short_splits" in trials.columns:  # the run's own note of splits smaller than asked
        short = trials[trials["short_splits"].fillna("").astype(str) != ""]
        if not short.empty:
            cols = [
                c for c in ("trial_dir", "task", "method", "seed", "short_splits") if c in short
            ]
            sections.append(
                (
                    f"Trials with fewer examples than asked ({len(short)}: their data files are "
                    "smaller than the space's sizes)",
                    "short_splits",
                    short[cols],
                    "",
                )
            )
    errors = trials[trials["status"] == "errored"]
    if not errors.empty:
        sections.append(
            (
                "Errored trials",
                "errored",
                errors[["trial_dir", "task", "method", "seed", "error"]],
                "",
            )
        )
    return sections


_LEDGER_FMT = {"asha": "{:.0f}"}


def _render_md(rep: dict, sections) -> str:
    out = [to_markdown(table) for table in rep["tables"]]
    for title, stem, frame, empty in sections:
        out.append(f"**{title}**\n")
        if frame is None or frame.empty:
            out.append(empty + "\n")
        else:
            out.append(frame_to_markdown(frame, floatfmt=_LEDGER_FMT.get(stem, "{:.4g}")))
    return "\n".join(out)


def _rendertex_escape(rep: dict, sections) -> str:
    """A standalone LaTeX document (booktabs): ``report --format tex > r.tex; pdflatex r.tex``."""
    out = [
        r"\documentclass{article}",
        r"\usepackage[margin=2cm,landscape]{geometry}",
        r"\usepackage{booktabs}",
        r"\usepackage[T1]{fontenc}",
        r"\begin{document}",
        "",
    ]
    out += [to_latex(table) for table in rep["tables"]]
    for title, stem, frame, empty in sections:
        if frame is None or frame.empty:
            out.append(rf"\paragraph{{{tex_escape(title)}}} {tex_escape(empty)}" + "\n")
        else:
            out.append(frame_to_latex(frame, title, stem, _LEDGER_FMT.get(stem, "{:.4g}")))
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"


def _render_csv(rep: dict, sections) -> str:
    """Each table's numeric CSV after a ``# title (file)`` line; the same CSVs are files."""
    out = []
    for table in rep["tables"]:
        out.append(f"# {table.title} (tables/{table.slug}.csv)")
        out.append(to_csv(table))
    for title, stem, frame, empty in sections:
        out.append(f"# {title} ({stem}.csv)")
        if frame is None or frame.empty:
            out.append(f"# {empty}\n" if empty else "\n")
        else:
            out.append(frame.to_csv(index=False))
    return "\n".join(out)


def render_report(exp_dirs, out_dir: str | None = None, fmt: str = "md", plots: bool = True) -> str:
    """Write the report files (tables in all formats, trials/epochs in Parquet and CSV, the
    sections' CSVs, ``report.{md,tex}``, plots) into ``out_dir`` (default ``EXP/report``) and
    return the report in ``fmt``: every section (tables, status counts, seeds missing, compute
    ledger, ASHA's effect, errored trials) in that format. ``md``: Markdown; ``tex``: a
    standalone LaTeX document with booktabs tables; ``csv``: one numeric CSV per table, each
    after a ``# title (file)`` line. ``plots=False`` skips the figures (the slowest part).
    """
    if fmt not in RENDERERS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
    rep = build_report(exp_dirs, out_dir, plots=plots)
    sections = report_sections(rep)
    for _, stem, frame, _ in sections:
        if frame is not None and stem not in rep:  # status, ledger, asha are written already
            _write_frame(frame, rep["out_dir"], stem)
    texts = {
        "md": _render_md(rep, sections),
        "tex": _rendertex_escape(rep, sections),
        "csv": _render_csv(rep, sections),
    }
    for ext in ("md", "tex"):
        with open(os.path.join(rep["out_dir"], f"report.{ext}"), "w", encoding="utf-8") as fh:
            fh.write(texts[ext])
    footer = f"Report written to {rep['out_dir']} ({len(rep['plots'])} plot files)."
    comment = {"md": "", "tex": "% ", "csv": "# "}[fmt]
    return texts[fmt] + "\n" + comment + footer + "\n"
