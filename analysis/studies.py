"""The paper's analyses, recognised from what varies across an experiment's trials.

JoLA's paper reports, besides its main table, a component study, gate ablations, a comparison of
learning-rate schedules, gate dynamics and sparsity, data-size and model-size curves, and
(after LoFiT) the number of heads edited. Each is a sweep over one setting, so the report knows
which analysis an experiment holds from the settings that take several values across its trials
(``select.extra_axes`` and ``model``), never from the experiment's name:

- a curve axis (``train_size``, ``model``, ``lofit.top_k``): methods x axis values, per task
  (``tables.axis_tables``);
- a variant axis (``jola.gates``, ``jola.parts``, ``jola.site``, or any other varying setting):
  rows per (method, variant), columns per task and their average;
- ``lr_schedule`` as an axis: the variant table plus a stability table, the standard deviation
  of the test score across seeds (selected configuration) and across seeds and configurations
  (every finished trial), since the paper chose exponential decay for its stability;
- recorded gate statistics (``open_gate_fraction_<part>`` per epoch): gate dynamics per epoch
  and a sparsity table per task (closed gates at the selected epoch).

Every value is the test score of the configuration selected on dev per seed, then mean +- std
over seeds; a cell shows ``(n/expected)`` when seeds are missing (all trials pruned or errored).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd

from analysis.select import extra_axes, seed_stats
from analysis.tables import Cell, Table, axis_sort_key, axis_tables, format_cell
from analysis.tasks import is_untuned, method_label, method_order, task_info


@dataclass(frozen=True)
class Study:
    """One analysis: the setting it sweeps, how it is shown, and its title and file stem."""

    axis: str
    kind: str  # "curve", "variants" or "schedules"
    title: str
    slug: str
    label: str  # the axis as a column header or plot axis label
    order: tuple = ()  # preferred order of the values (others follow in sort order)


STUDIES = {
    "train_size": Study("train_size", "curve", "Data-size", "data_size", "training examples"),
    "model": Study("model", "curve", "Model-size", "model_size", "model"),
    "lofit.top_k": Study(
        "lofit.top_k", "curve", "Head-count", "head_count", "heads edited (top-K)"
    ),
    "jola.gates": Study(
        "jola.gates",
        "variants",
        "Gate ablation",
        "gate_ablation",
        "gates",
        ("two", "shared", "none"),
    ),
    "jola.parts": Study(
        "jola.parts",
        "variants",
        "Additive vs multiplicative edit",
        "parts_ablation",
        "parts",
        ("both", "add", "mul"),
    ),
    "jola.site": Study(
        "jola.site",
        "variants",
        "Component study",
        "component_study",
        "edit site",
        ("heads", "ffn", "residual", "bias"),
    ),
    "lr_schedule": Study(
        "lr_schedule",
        "schedules",
        "Learning-rate schedules",
        "schedules",
        "schedule",
        ("linear", "cyclic", "adaptive", "exponential"),
    ),
}
PARTS = ("add", "mul")
PART_LABELS = {"add": "additive", "mul": "multiplicative"}
_GATE_COLUMN = re.compile(r"^open_gate_fraction_(add|mul)(?:_l(\d+))?$")


def study_of(axis: str) -> Study:
    """The study an axis sweeps; an unknown setting is an ablation over its values."""
    if axis in STUDIES:
        return STUDIES[axis]
    slug = "ablation_" + re.sub(r"[^A-Za-z0-9.-]+", "_", axis)
    return Study(axis, "variants", f"Ablation over {axis}", slug, axis)


def recognise(trials: pd.DataFrame) -> list[Study]:
    """The analyses an experiment holds: one per varying axis (model included), curves first."""
    axes = list(extra_axes(trials))
    if "model" in trials.columns and trials["model"].nunique() > 1:
        axes.append("model")
    found = [study_of(a) for a in axes]
    kinds = {"curve": 0, "variants": 1, "schedules": 2}
    return sorted(found, key=lambda s: (kinds[s.kind], s.axis))


def ordered_values(values, study: Study) -> list:
    """The axis values present, the study's preferred order first, then in sort order."""
    present = [v for v in dict.fromkeys(values) if not _missing(v)]
    known = [v for v in study.order if v in present]
    rest = sorted((v for v in present if v not in study.order), key=axis_sort_key)
    return known + rest


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _slug(value) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", str(value)).strip("_")


def split_by(frame: pd.DataFrame, axes: list[str]):
    """(where-text, slug suffix, part) per combination of ``axes`` (one group when empty)."""
    if not axes:
        yield "", "", frame
        return
    for key, part in frame.groupby(axes, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        where = ", ".join(f"{a}={v}" for a, v in zip(axes, key, strict=True))
        yield where, "_".join(_slug(v) for v in key), part


def other_axes(selected: pd.DataFrame, trials: pd.DataFrame, axis: str) -> list[str]:
    """The varying axes besides ``axis`` that split a study into several tables."""
    others = [a for a in ("model", *extra_axes(trials)) if a != axis]
    return [a for a in others if a in selected.columns and selected[a].nunique(dropna=True) > 1]


def untuned_seed_scores(rows: pd.DataFrame) -> pd.Series:
    """An untuned method's (zero-shot's) test score per seed: runs repeated for each axis value
    are averaged first (the untouched model does not depend on a training setting), so no seed
    counts twice."""
    return rows.groupby("seed", sort=True)["test_score"].mean()


def _score_cell(rows: pd.DataFrame) -> Cell:
    """Mean +- std over the selected seeds of ``rows`` (one row per expected seed)."""
    values = rows["test_score"] if "test_score" in rows.columns else []
    mean, std, n = seed_stats(values)
    return Cell(format_cell(mean, std, n, len(rows)), mean)


def _avg_cell(cells: list[Cell]) -> Cell:
    have = [c.mean for c in cells if not math.isnan(c.mean)]
    if not have:
        return Cell("–")
    avg = sum(have) / len(have)
    suffix = "" if len(have) == len(cells) else f" ({len(have)}/{len(cells)})"
    return Cell(f"{avg:.1f}{suffix}", avg)


def _mark(table: Table, lower_is_better: bool = False) -> None:
    for j in table.ranked:
        means = [row[j].mean for row in table.rows if not math.isnan(row[j].mean)]
        if not means:
            continue
        top = min(means) if lower_is_better else max(means)
        for row in table.rows:
            row[j].best = row[j].mean == top


def variant_rows(selected: pd.DataFrame, study: Study) -> list[tuple[str, object, pd.DataFrame]]:
    """(method, variant value, its selected rows) in row order: zero-shot first (one row, the
    variant ``None``), then per method its variants in the study's order."""
    out = []
    for method in method_order(selected["method"]):
        rows = selected[selected["method"] == method]
        if is_untuned(method):
            out.append((method, None, rows))
            continue
        for value in ordered_values(rows[study.axis], study):
            out.append((method, value, rows[rows[study.axis] == value]))
    return out


def variant_tables(selected: pd.DataFrame, trials: pd.DataFrame, study: Study) -> list[Table]:
    """Rows per (method, variant), one column per task and the average: test score of the
    configuration selected on dev, mean +- std over seeds; one table per value of the other
    varying axes (model, ...)."""
    tables = []
    for where, suffix, part in split_by(selected, other_axes(selected, trials, study.axis)):
        tasks = sorted(set(part["task"]), key=lambda t: (task_info(t).order, t))
        header = ["Method", study.label, *(task_info(t).label for t in tasks)]
        if len(tasks) > 1:
            header.append("Avg")
        title = f"{study.title}: test score by {study.label}" + (f" ({where})" if where else "")
        slug = study.slug + (f"_{suffix}" if suffix else "")
        table = Table(title, slug, header, ranked=list(range(2, len(header))))
        for method, value, rows in variant_rows(part, study):
            cells = [Cell(method_label(method)), Cell("–" if value is None else str(value))]
            for task in tasks:
                at = rows[rows["task"] == task]
                if value is None:  # zero-shot: one score per seed
                    seeds = untuned_seed_scores(at)
                    mean, std, n = seed_stats(seeds)
                    cells.append(Cell(format_cell(mean, std, n, at["seed"].nunique()), mean))
                else:
                    cells.append(_score_cell(at))
            if len(tasks) > 1:
                cells.append(_avg_cell(cells[2:]))
            table.rows.append(cells)
        _mark(table)
        tables.append(table)
    return tables


def schedule_spread(selected: pd.DataFrame, trials: pd.DataFrame, axis: str) -> pd.DataFrame:
    """Per (method, model, task, schedule[, other axes]): the test score's spread.

    ``seed_std``/``seed_n``: over the seeds' selected configurations; ``all_std``/``all_n``:
    over every finished trial (all seeds and configurations), ``all_total`` trials in all
    (pruned and errored ones have no test score and are counted, not used).
    """
    keys = ["method", "model", "task", axis, *other_axes(selected, trials, axis)]
    keys = list(dict.fromkeys(k for k in keys if k in trials.columns))
    trained = trials[~trials["method"].map(is_untuned)]
    rows = []
    for key, group in trained.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key, strict=True))
        mask = pd.Series(True, index=selected.index)
        for k, v in row.items():
            mask &= selected[k] == v
        seed_rows = selected[mask]
        _, row["seed_std"], row["seed_n"] = seed_stats(seed_rows.get("test_score", []))
        row["seed_expected"] = len(seed_rows)
        finished = group[group["status"] == "finished"]
        scores = finished["test_score"] if "test_score" in finished.columns else []
        row["all_mean"], row["all_std"], row["all_n"] = seed_stats(scores)
        row["all_total"] = len(group)
        rows.append(row)
    return pd.DataFrame(rows)


def schedule_tables(selected: pd.DataFrame, trials: pd.DataFrame, study: Study) -> list[Table]:
    """The schedules' scores (``variant_tables``) and their stability: per task the std of the
    test score across seeds (selected configuration) and across seeds and configurations."""
    tables = variant_tables(selected, trials, study)
    spread = schedule_spread(selected, trials, study.axis)
    if spread.empty:
        return tables
    others = other_axes(selected, trials, study.axis)
    for where, suffix, part in split_by(spread, others):
        tasks = sorted(set(part["task"]), key=lambda t: (task_info(t).order, t))
        header = ["Method", study.label]
        for t in tasks:
            label = task_info(t).label
            header += [f"{label} std seeds", f"{label} std seeds x configs"]
        if len(tasks) > 1:
            header += ["Mean std seeds", "Mean std seeds x configs"]
        title = "Schedule stability: std of the test score (lower is more stable)" + (
            f" ({where})" if where else ""
        )
        table = Table(title, f"schedule_stability{'_' + suffix if suffix else ''}", header)
        table.ranked = list(range(2, len(header)))
        for method in method_order(part["method"]):
            rows = part[part["method"] == method]
            for value in ordered_values(rows[study.axis], study):
                at = rows[rows[study.axis] == value].set_index("task")
                cells = [Cell(method_label(method)), Cell(str(value))]
                seeds, alls = [], []
                for t in tasks:
                    if t not in at.index:
                        cells += [Cell("–"), Cell("–")]
                        seeds.append(Cell("–"))
                        alls.append(Cell("–"))
                        continue
                    r = at.loc[t]
                    s = _std_cell(r["seed_std"], r["seed_n"], r["seed_expected"])
                    a = _std_cell(r["all_std"], r["all_n"], r["all_total"])
                    cells += [s, a]
                    seeds.append(s)
                    alls.append(a)
                if len(tasks) > 1:
                    cells += [_avg_cell(seeds), _avg_cell(alls)]
                table.rows.append(cells)
        _mark(table, lower_is_better=True)
        tables.append(table)
    return tables


def _std_cell(std: float, n: int, total: int) -> Cell:
    text = "–" if math.isnan(std) else f"{std:.1f}"
    return Cell(f"{text} ({int(n)}/{int(total)})", std)


# Gate statistics -----------------------------------------------------------------------------


def gate_columns(epochs: pd.DataFrame) -> dict[str, tuple[str, int | None]]:
    """Recorded gate-statistic columns of the epochs table: name -> (part, layer or None)."""
    out = {}
    for col in epochs.columns:
        m = _GATE_COLUMN.match(str(col))
        if m:
            out[col] = (m.group(1), None if m.group(2) is None else int(m.group(2)))
    return out


def _selected_epochs(selected: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """The epochs rows of the selected trials, with the selection's axes and best epoch."""
    if epochs.empty or "trial_path" not in selected.columns:
        return epochs.iloc[0:0]
    chosen = selected[selected["selected"]]
    keep = [c for c in chosen.columns if c not in epochs.columns or c == "trial_path"]
    left = epochs.assign(
        trial_path=epochs["experiment"].str.rstrip("/") + "/" + epochs["trial_dir"]
    )
    return left.merge(chosen[keep], on="trial_path", how="inner")


def gate_dynamics(
    selected: pd.DataFrame, epochs: pd.DataFrame, trials: pd.DataFrame
) -> pd.DataFrame:
    """Open-gate fraction per epoch of the selected trials, mean +- std over seeds.

    One row per (method, model, task, other axes, part, layer, epoch); ``layer`` is -1 for the
    fraction over all layers. Empty when no trial recorded ``open_gate_fraction_<part>``.
    """
    columns = gate_columns(epochs)
    if not columns:
        return pd.DataFrame()
    rows = _selected_epochs(selected, epochs)
    rows = rows[rows["epoch"] > 0]
    keys = ["method", "model", "task", *[a for a in extra_axes(trials) if a in rows.columns]]
    out = []
    for key, group in rows.groupby(keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        base = dict(zip(keys, key, strict=True))
        for col, (part, layer) in columns.items():
            if group[col].isna().all():
                continue
            for epoch, at in group.groupby("epoch", sort=True):
                mean, std, n = seed_stats(at[col])
                if n:
                    out.append(
                        {
                            **base,
                            "part": part,
                            "layer": -1 if layer is None else layer,
                            "epoch": epoch,
                            "open_mean": mean,
                            "open_std": std,
                            "n_seeds": n,
                        }
                    )
    return pd.DataFrame(out)


def sparsity_frame(selected: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """Per selected trial: the share of closed gates per part at its selected (best) epoch.

    Columns: the selection's axes, seed, ``closed_add``, ``closed_mul`` (percent, NaN where the
    part was not recorded), ``num_selected_heads``. A trial whose best epoch has no row (e.g. a
    report cut short) uses its last recorded epoch.
    """
    columns = {c: p for c, (p, layer) in gate_columns(epochs).items() if layer is None}
    if not columns:
        return pd.DataFrame()
    rows = _selected_epochs(selected, epochs)
    rows = rows[rows["epoch"] > 0]
    out = []
    for _path, trial in rows.groupby("trial_path", sort=False):
        trial = trial.sort_values("epoch")
        best = trial[trial["epoch"] == trial["best_epoch"]]
        at = (best if not best.empty else trial).iloc[-1]
        rec = {k: at[k] for k in selected.columns if k in at.index and k != "trial_path"}
        for col, part in columns.items():
            value = at[col]
            rec["closed_" + part] = math.nan if _missing(value) else 100.0 * (1.0 - float(value))
        out.append(rec)
    return pd.DataFrame(out)


def sparsity_tables(
    per_trial: pd.DataFrame, selected: pd.DataFrame, trials: pd.DataFrame
) -> list[Table]:
    """Per (method, model, other axes): rows per task, the closed additive and multiplicative
    gates (percent) and the heads kept, mean +- std over the seeds' selected trials
    (``per_trial``: ``sparsity_frame``)."""
    if per_trial.empty:
        return []
    split = ["method", "model", *[a for a in extra_axes(trials) if a in per_trial.columns]]
    parts = [p for p in PARTS if "closed_" + p in per_trial.columns]
    tables = []
    for key, part in per_trial.groupby(split, sort=True, dropna=False):
        if not part[["closed_" + p for p in parts]].notna().any().any():
            continue  # a method without gates (LoRA, BitFit, ...): nothing to tabulate
        key = key if isinstance(key, tuple) else (key,)
        where = dict(zip(split, key, strict=True))
        mask = pd.Series(True, index=selected.index)
        for k, v in where.items():
            mask &= selected[k] == v
        expected_rows = selected[mask]
        text = ", ".join(f"{k}={v}" for k, v in where.items() if k != "method")
        header = ["Task", *(f"Closed {PART_LABELS[p]} gates (%)" for p in parts)]
        if "num_selected_heads" in part.columns:
            header.append("Heads kept")
        title = f"Gate sparsity at the selected epoch: {method_label(where['method'])} ({text})"
        slug = "sparsity_" + "_".join(_slug(v) for v in key)
        table = Table(title, slug, header)
        for task in sorted(set(part["task"]), key=lambda t: (task_info(t).order, t)):
            at = part[part["task"] == task]
            expected = int((expected_rows["task"] == task).sum())
            cells = [Cell(task_info(task).label)]
            for p in parts:
                mean, std, n = seed_stats(at["closed_" + p])
                cells.append(Cell(format_cell(mean, std, n, expected), mean))
            if "num_selected_heads" in part.columns:
                mean, std, n = seed_stats(at["num_selected_heads"])
                cells.append(Cell(format_cell(mean, std, n, expected), mean))
            table.rows.append(cells)
        tables.append(table)
    return tables


def study_tables(
    selected: pd.DataFrame,
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    sparsity: pd.DataFrame | None = None,
) -> list[Table]:
    """Every analysis table the experiment holds, in the order of ``recognise``, then sparsity
    (``sparsity``: the ``sparsity_frame`` when the caller has it already)."""
    extra = extra_axes(trials)
    tables: list[Table] = []
    for study in recognise(trials):
        if study.kind == "curve":
            tables += axis_tables(selected, study.axis, extra, title=study.title, slug=study.slug)
        elif study.kind == "schedules":
            tables += schedule_tables(selected, trials, study)
        else:
            tables += variant_tables(selected, trials, study)
    per_trial = sparsity_frame(selected, epochs) if sparsity is None else sparsity
    tables += sparsity_tables(per_trial, selected, trials)
    return tables
