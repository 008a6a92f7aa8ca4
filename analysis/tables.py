"""The paper's comparison tables, built from the per-seed selection and rendered as
Markdown, LaTeX (booktabs) and CSV.

A table is one benchmark for one model (and one value of each varying extra axis, e.g. train_size): rows are methods
(zero-shot first), columns are tasks (GEM: task x metric), then the average, with the
trainable-parameter count as the second column. A cell is the test metric's mean over seeds,
with "± std (n)" when n > 1 and "(n/expected)" when seeds are missing. The best mean per column
is marked (bold in Markdown and LaTeX, a trailing * in CSV).
"""

from __future__ import annotations

import csv
import io
import math
import numbers
import re
from dataclasses import dataclass, field

import pandas as pd

from analysis.select import extra_axes, seed_stats
from analysis.tasks import (
    BENCHMARK_TITLES,
    GEM_METRIC_ORDER,
    is_untuned,
    method_label,
    method_order,
    metric_label,
    task_info,
)


@dataclass
class Cell:
    """One table cell: display text, the mean it ranks by, and whether it is its column's best."""

    text: str
    mean: float = math.nan
    best: bool = False


@dataclass
class Table:
    """A rendered-ready table; ``slug`` names its files."""

    title: str
    slug: str
    header: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    ranked: list[int] = field(default_factory=list)  # column indexes that get a best mark


def format_cell(mean: float, std: float, n: int, expected: int, pm: str = "±") -> str:
    """``71.2``, ``71.2 ± 1.3 (3)``, ``71.2 ± 1.3 (2/3)``, ``71.2 (1/3)`` or ``– (0/3)``."""
    if n == 0:
        return f"– (0/{expected})" if expected else "–"
    text = f"{mean:.1f}"
    if n > 1:
        text += f" {pm} {std:.1f}"
    if n < expected:
        text += f" ({n}/{expected})"
    elif n > 1:
        text += f" ({n})"
    return text


def format_params(values, base=()) -> str:
    """Trainable parameters of the selected trials: one number, or min-max when they differ;
    with the base model's size known (``base_params``), also the percent of it."""
    vals = sorted({int(v) for v in values if v is not None and not math.isnan(float(v))})
    bases = sorted({int(v) for v in base if v is not None and not math.isnan(float(v))})
    if not vals:
        return "–"
    text = f"{vals[0]:,}" if len(vals) == 1 else f"{vals[0]:,}–{vals[-1]:,}"
    if bases and bases[0] > 0:
        share = [100.0 * v / bases[0] for v in (vals[0], vals[-1])] if len(bases) == 1 else None
        if share is not None:
            pct = f"{share[0]:.3g}%" if len(vals) == 1 else f"{share[0]:.3g}–{share[1]:.3g}%"
            text += f" ({pct})"
    return text


def _stat_cell(selected: pd.DataFrame, tasks: list[str], col: str) -> Cell:
    """Pool the selected per-seed values of ``col`` over ``tasks`` (TruthfulQA folds share one)."""
    rows = selected[selected["task"].isin(tasks)]
    values = rows[col] if col in rows.columns else []
    mean, std, n = seed_stats(values)
    return Cell(format_cell(mean, std, n, len(rows)), mean)


def _columns(benchmark: str, tasks: list[str], metrics: set[str]) -> list[tuple[str, list, str]]:
    """(label, tasks pooled into the column, result column) per table column, in paper order."""
    by_label: dict[str, list[str]] = {}
    order: dict[str, int] = {}
    for task in tasks:
        info = task_info(task)
        by_label.setdefault(info.label, []).append(task)
        order[info.label] = info.order
    labels = sorted(by_label, key=lambda lab: (order[lab], lab))
    cols = []
    for label in labels:
        group = by_label[label]
        if benchmark == "gem":
            present = [m for m in GEM_METRIC_ORDER if m in metrics]
            present += sorted(m for m in metrics if m not in GEM_METRIC_ORDER and m != "score")
            for m in present or ["score"]:
                cols.append((f"{label} {metric_label(m)}", group, "test_" + m))
        elif label == "TruthfulQA" and {"mc1", "mc2"} & metrics:
            for m in ("mc1", "mc2"):
                if m in metrics:
                    cols.append((f"{label} {metric_label(m)}", group, "test_" + m))
        else:
            cols.append((label, group, "test_score"))
    return cols


def _present_metrics(selected: pd.DataFrame, tasks: list[str]) -> set[str]:
    rows = selected[selected["task"].isin(tasks)]
    return {
        c[len("test_") :]
        for c in rows.columns
        if c.startswith("test_") and c != "test_loss" and rows[c].notna().any()
    }


def _mark_best(table: Table) -> None:
    for j in table.ranked:
        means = [row[j].mean for row in table.rows if not math.isnan(row[j].mean)]
        if not means:
            continue
        top = max(means)
        for row in table.rows:
            if row[j].mean == top:
                row[j].best = True


def build_table(selected: pd.DataFrame, benchmark: str, title: str, slug: str) -> Table:
    """One benchmark table over the selected rows of one model (and extra-axis value)."""
    tasks = sorted(set(selected["task"]))
    metrics = _present_metrics(selected, tasks)
    cols = _columns(benchmark, tasks, metrics)
    # The paper averages its commonsense, MMLU-Pro and GEM tables; LoFiT's tasks mix MC1/MC2
    # with accuracies, and "other" tasks have nothing in common, so those get no average.
    with_avg = benchmark in ("commonsense", "mmlu_pro", "gem") and len(cols) > 1
    header = ["Method", "Params"] + [c[0] for c in cols]
    avg_metrics: list[str] = []
    if with_avg:
        if benchmark == "gem":
            avg_metrics = list(dict.fromkeys(c[2] for c in cols))
            header += [f"Avg {metric_label(m[len('test_') :])}" for m in avg_metrics]
        else:
            avg_metrics = ["test_score"]
            header.append("Avg")
    table = Table(title, slug, header, ranked=list(range(2, len(header))))
    for method in method_order(selected["method"]):
        rows = selected[selected["method"] == method]
        chosen = rows[rows["selected"]]
        params = format_params(
            chosen.get("trainable_params", pd.Series(dtype=float)),
            chosen.get("base_params", pd.Series(dtype=float)),
        )
        if params == "–" and is_untuned(method):
            params = "0"  # the untouched model trains nothing
        cells = [Cell(method_label(method)), Cell(params)]
        cells += [_stat_cell(rows, group, col) for _, group, col in cols]
        for metric in avg_metrics:
            means = [
                c.mean for c, (_, _, col) in zip(cells[2:], cols, strict=False) if col == metric
            ]
            have = [m for m in means if not math.isnan(m)]
            if not have:
                cells.append(Cell("–"))
                continue
            avg = sum(have) / len(have)
            text = f"{avg:.1f}" + (
                "" if len(have) == len(means) else f" ({len(have)}/{len(means)})"
            )
            cells.append(Cell(text, avg))
        table.rows.append(cells)
    _mark_best(table)
    return table


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in str(text)).strip("_")


def paper_tables(selected: pd.DataFrame, trials: pd.DataFrame) -> list[Table]:
    """All benchmark tables: per benchmark present, per model and per value of each extra axis."""
    split = ["model", *extra_axes(trials)]
    bench = selected["task"].map(lambda t: task_info(t).benchmark)
    tables = []
    for benchmark, title in BENCHMARK_TITLES.items():
        part = selected[bench == benchmark]
        if part.empty:
            continue
        for key, group in part.groupby(split, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            where = ", ".join(f"{a}={v}" for a, v in zip(split, key, strict=True))
            slug = "_".join([benchmark, *(_slug(v) for v in key)])
            tables.append(build_table(group, benchmark, f"{title} ({where})", slug))
    return tables


AXIS_TITLES = {"train_size": ("Data-size", "data_size"), "model": ("Model-size", "model_size")}


def axis_tables(
    selected: pd.DataFrame,
    axis: str,
    extra: list[str] | None = None,
    title: str | None = None,
    slug: str | None = None,
) -> list[Table]:
    """A curve analysis (data size ``train_size``, model size ``model``, head count
    ``lofit.top_k``): per task (and value of the other varying axes), methods x axis values.

    Empty unless the axis takes more than one value. Cells are test_score over seeds;
    ``title``/``slug`` name the analysis (default: from ``AXIS_TITLES``, else the axis).
    """
    if axis not in selected.columns or selected[axis].nunique() < 2:
        return []
    default_title, default_slug = AXIS_TITLES.get(axis, (axis, _slug(axis)))
    title, slug = title or default_title, slug or default_slug
    extra = extra_axes(selected) if extra is None else extra  # the sweep's varying extra axes
    others = [a for a in ("model", *extra) if a != axis]
    others = [a for a in others if a in selected.columns and selected[a].nunique() > 1]
    values = sorted(selected[axis].dropna().unique(), key=axis_sort_key)
    tables = []
    for key, part in selected.groupby(["task", *others], sort=True):
        key = key if isinstance(key, tuple) else (key,)
        where = ", ".join(f"{a}={v}" for a, v in zip(["task", *others], key, strict=True))
        header = ["Method"] + [f"{axis}={_value_text(v)}" for v in values]
        table = Table(
            f"{title} analysis ({where})",
            f"{slug}_" + "_".join(_slug(v) for v in key),
            header,
            ranked=list(range(1, len(header))),
        )
        for method in method_order(part["method"]):
            rows = part[part["method"] == method]
            cells = [Cell(method_label(method))]
            for v in values:
                at = rows[rows[axis] == v]
                mean, std, n = seed_stats(at.get("test_score", []))
                cells.append(Cell(format_cell(mean, std, n, len(at)), mean))
            table.rows.append(cells)
        _mark_best(table)
        tables.append(table)
    return tables


def _value_text(value) -> str:
    """An axis value as a header: whole floats without ``.0`` (a NaN-holding column is float)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def axis_sort_key(value):
    """Numbers in order (numpy's too: a column's values are numpy scalars); model names by the
    size in them (``135M`` < ``1B`` < ``8b``), then name."""
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return (0, float(value), "")
    text = str(value)
    m = re.search(r"(\d+(?:\.\d+)?)\s*([mMbB])\b", text.replace("-", " ").replace("_", " "))
    if m:
        scale = 1e6 if m.group(2).lower() == "m" else 1e9
        return (0, float(m.group(1)) * scale, text)
    return (1, 0.0, text)


# Renderers --------------------------------------------------------------------------------


def to_markdown(table: Table) -> str:
    """GitHub Markdown, best cells in bold."""
    lines = [f"**{table.title}**", ""]
    lines.append("| " + " | ".join(table.header) + " |")
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(table.header) - 1)) + "|")
    for row in table.rows:
        texts = [f"**{c.text}**" if c.best else c.text for c in row]
        lines.append("| " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"


_TEX_ESCAPES = {"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "~": r"\~{}"}


def _tex(text: str) -> str:
    out = "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)
    return out.replace("±", r"$\pm$").replace("–", "--")


def to_latex(table: Table) -> str:
    """A booktabs table environment, best cells in \\textbf."""
    spec = "l" + "r" * (len(table.header) - 1)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\caption{{{_tex(table.title)}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(_tex(h) for h in table.header) + r" \\",
        r"\midrule",
    ]
    for row in table.rows:
        texts = [rf"\textbf{{{_tex(c.text)}}}" if c.best else _tex(c.text) for c in row]
        lines.append(" & ".join(texts) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\label{{tab:{table.slug}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """Plain CSV of the cell texts; the best cell of a column ends in '*'."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.header)
    for row in table.rows:
        writer.writerow([c.text + ("*" if c.best else "") for c in row])
    return buf.getvalue()


RENDERERS = {"md": to_markdown, "tex": to_latex, "csv": to_csv}
