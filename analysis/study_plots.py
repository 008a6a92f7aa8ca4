"""Figures of the paper's analyses (``studies``), PNG and PDF, each readable on its own.

Curves per method over data size, model size and head count (mean over seeds with a band of
one std, zero-shot as a dashed reference), bars per variant for the ablations and schedules
(error bars: std over seeds; zero-shot as a dashed line per task), the schedules' spread, and
gate dynamics per epoch (open-gate fraction per part with a band, and per layer as a heatmap).
One colour per method across a report; in the ablation bars one colour per variant.
"""

from __future__ import annotations

import math
import numbers

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis.plots import _save, _stem  # noqa: E402
from analysis.select import seed_stats  # noqa: E402
from analysis.studies import (  # noqa: E402
    PART_LABELS,
    Study,
    gate_dynamics,
    ordered_values,
    other_axes,
    recognise,
    schedule_spread,
    split_by,
    untuned_seed_scores,
    variant_rows,
)
from analysis.tables import axis_sort_key  # noqa: E402
from analysis.tasks import is_untuned, method_label, method_order, task_info  # noqa: E402

ZERO_SHOT_COLOUR = "0.35"


def method_colours(methods) -> dict:
    """One colour per method, the same in every figure of a report (zero-shot grey)."""
    trained = [m for m in method_order(methods) if not is_untuned(m)]
    colours = {m: f"C{i % 10}" for i, m in enumerate(trained)}
    colours.update({m: ZERO_SHOT_COLOUR for m in methods if is_untuned(m)})
    return colours


def curve_plots(selected: pd.DataFrame, study: Study, out_dir: str, colours: dict) -> list[str]:
    """Test score against the study's axis, per task: one line per method (mean over seeds,
    band and error bars of one std). Zero-shot is a dashed reference: a horizontal line where
    the axis is a training setting (data size, head count), a dashed curve over model size."""
    axis = study.axis
    if axis not in selected.columns or selected[axis].nunique() < 2:
        return []
    values = sorted(selected[axis].dropna().unique(), key=axis_sort_key)
    numeric = all(isinstance(v, numbers.Number) and not isinstance(v, bool) for v in values)
    paths = []
    for task, part in selected.groupby("task", sort=True):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for method in method_order(part["method"]):
            rows = part[part["method"] == method]
            if is_untuned(method) and axis != "model":
                mean, std, n = seed_stats(untuned_seed_scores(rows))
                if n:
                    ax.axhline(
                        mean,
                        ls="--",
                        color=colours[method],
                        label=f"{method_label(method)} ({mean:.1f})",
                    )
                continue
            xs, ys, es = [], [], []
            for i, v in enumerate(values):
                mean, std, n = seed_stats(rows.loc[rows[axis] == v, "test_score"])
                if n:
                    xs.append(v if numeric else i)
                    ys.append(mean)
                    es.append(0.0 if math.isnan(std) else std)
            if not xs:
                continue
            style = "--" if is_untuned(method) else "-"
            ax.errorbar(
                xs,
                ys,
                yerr=es,
                marker="o",
                ls=style,
                capsize=3,
                color=colours[method],
                label=method_label(method),
            )
            lo = [y - e for y, e in zip(ys, es, strict=True)]
            hi = [y + e for y, e in zip(ys, es, strict=True)]
            ax.fill_between(xs, lo, hi, color=colours[method], alpha=0.15, lw=0)
        if numeric and min(values) > 0 and max(values) / min(values) >= 20:
            ax.set_xscale("log")
        if numeric:
            ax.set_xticks(
                values, [str(int(v)) if float(v).is_integer() else str(v) for v in values]
            )
            ax.minorticks_off()
        else:
            ax.set_xticks(range(len(values)), [str(v) for v in values], rotation=15, ha="right")
        ax.set(xlabel=study.label, ylabel="test score (%)", title=f"{study.title} analysis: {task}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="mean ± std over seeds", title_fontsize=8)
        paths += _save(fig, out_dir, _stem(study.slug, task))
    return paths


def variant_plots(
    selected: pd.DataFrame, trials: pd.DataFrame, study: Study, out_dir: str
) -> list[str]:
    """Grouped bars per task: one bar per (method, variant), error bars of one std over seeds;
    zero-shot a dashed line over each task's bars."""
    paths = []
    for where, suffix, part in split_by(selected, other_axes(selected, trials, study.axis)):
        tasks = sorted(set(part["task"]), key=lambda t: (task_info(t).order, t))
        series = [(m, v, r) for m, v, r in variant_rows(part, study) if v is not None]
        if not series:
            continue
        width = 0.8 / len(series)
        fig, ax = plt.subplots(figsize=(max(5.5, 1.3 * len(tasks) * max(1, len(series) / 3)), 4.2))
        several_methods = len({m for m, _, _ in series}) > 1
        for i, (method, value, rows) in enumerate(series):
            xs, ys, es = [], [], []
            for j, task in enumerate(tasks):
                mean, std, n = seed_stats(rows.loc[rows["task"] == task, "test_score"])
                if n:
                    xs.append(j - 0.4 + width * (i + 0.5))
                    ys.append(mean)
                    es.append(0.0 if math.isnan(std) else std)
            label = (
                f"{method_label(method)}: {value}"
                if several_methods
                else f"{study.label} = {value}"
            )
            ax.bar(xs, ys, width=width * 0.95, yerr=es, capsize=3, color=f"C{i % 10}", label=label)
        zs = part[part["method"].map(is_untuned)]
        first = True
        for j, task in enumerate(tasks):
            mean, _, n = (
                seed_stats(untuned_seed_scores(zs[zs["task"] == task]))
                if not zs.empty
                else (0, 0, 0)
            )
            if n:
                ax.hlines(
                    mean,
                    j - 0.45,
                    j + 0.45,
                    colors=ZERO_SHOT_COLOUR,
                    linestyles="--",
                    label=method_label(zs["method"].iloc[0]) if first else None,
                )
                first = False
        ax.set_xticks(range(len(tasks)), [task_info(t).label for t in tasks])
        title = study.title + (f" ({where})" if where else "")
        ax.set(xlabel="task", ylabel="test score (%)", title=title)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(
            fontsize=8,
            title="error bars: std over seeds",
            title_fontsize=8,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
        )
        paths += _save(fig, out_dir, _stem(study.slug, suffix) if suffix else study.slug)
    return paths


def stability_plot(
    selected: pd.DataFrame, trials: pd.DataFrame, study: Study, out_dir: str
) -> list[str]:
    """Per task and schedule: the std of the test score across seeds and configurations (bars)
    and across seeds of the selected configuration (markers); lower is more stable."""
    spread = schedule_spread(selected, trials, study.axis)
    if spread.empty:
        return []
    paths = []
    others = other_axes(selected, trials, study.axis)
    for where, suffix, part in split_by(spread, others):
        tasks = sorted(set(part["task"]), key=lambda t: (task_info(t).order, t))
        series = [
            (m, v)
            for m in method_order(part["method"])
            for v in ordered_values(part.loc[part["method"] == m, study.axis], study)
        ]
        width = 0.8 / max(1, len(series))
        fig, ax = plt.subplots(figsize=(max(5.5, 1.3 * len(tasks)), 4.2))
        for i, (method, value) in enumerate(series):
            rows = part[(part["method"] == method) & (part[study.axis] == value)].set_index("task")
            xs = [j - 0.4 + width * (i + 0.5) for j, t in enumerate(tasks) if t in rows.index]
            present = [t for t in tasks if t in rows.index]
            label = (
                f"{method_label(method)}: {value}" if part["method"].nunique() > 1 else str(value)
            )
            ax.bar(
                xs,
                [rows.loc[t, "all_std"] for t in present],
                width=width * 0.95,
                color=f"C{i % 10}",
                label=f"{label} (seeds x configs)",
            )
            ax.plot(
                xs,
                [rows.loc[t, "seed_std"] for t in present],
                "kd",
                ms=5,
                label="std over seeds (selected config)" if i == 0 else None,
            )
        ax.set_xticks(range(len(tasks)), [task_info(t).label for t in tasks])
        ax.set(
            xlabel="task",
            ylabel="std of test score (points)",
            title="Schedule stability" + (f" ({where})" if where else ""),
        )
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        paths += _save(
            fig, out_dir, _stem("schedule_stability", suffix) if suffix else "schedule_stability"
        )
    return paths


def gate_dynamics_plots(dynamics: pd.DataFrame, out_dir: str) -> list[str]:
    """Per (method, model, task[, axes]): the open-gate fraction per epoch for each part (mean
    over seeds, band of one std), and a layer x epoch heatmap per part."""
    if dynamics.empty:
        return []
    fixed = {"part", "layer", "epoch", "open_mean", "open_std", "n_seeds"}
    keys = [c for c in dynamics.columns if c not in fixed]
    paths = []
    for key, group in dynamics.groupby(keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        info = dict(zip(keys, key, strict=True))
        parts = [p for p in PART_LABELS if p in set(group["part"])]
        per_layer = group[group["layer"] >= 0]
        n_maps = len(parts) if not per_layer.empty else 0
        fig, axes = plt.subplots(1, 1 + n_maps, figsize=(5.2 * (1 + n_maps), 4), squeeze=False)
        ax = axes[0][0]
        for i, part in enumerate(parts):
            line = group[(group["part"] == part) & (group["layer"] < 0)].sort_values("epoch")
            if line.empty:
                continue
            mean, std = 100 * line["open_mean"], 100 * line["open_std"].fillna(0.0)
            seeds = int(line["n_seeds"].max())
            ax.plot(
                line["epoch"],
                mean,
                marker="o",
                color=f"C{i}",
                label=f"{PART_LABELS[part]} gates ({seeds} seed{'s' * (seeds > 1)})",
            )
            lo, hi = (mean - std).clip(lower=0), (mean + std).clip(upper=100)  # a share
            ax.fill_between(line["epoch"], lo, hi, color=f"C{i}", alpha=0.2, lw=0)
        ax.set(
            xlabel="epoch",
            ylabel="open gates (%)",
            ylim=(-2, 102),
            title="Open gates per epoch (all layers)",
        )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="mean ± std over seeds", title_fontsize=8)
        for ax, part in zip(axes[0][1:], parts, strict=False):
            grid = per_layer[per_layer["part"] == part].pivot_table(
                index="layer", columns="epoch", values="open_mean"
            )
            image = ax.imshow(
                100 * grid.values,
                aspect="auto",
                origin="lower",
                cmap="viridis",
                vmin=0,
                vmax=100,
                extent=(
                    grid.columns.min() - 0.5,
                    grid.columns.max() + 0.5,
                    grid.index.min() - 0.5,
                    grid.index.max() + 0.5,
                ),
            )
            ax.set(
                xlabel="epoch",
                ylabel="layer",
                title=f"Open {PART_LABELS[part]} gates per layer (%)",
            )
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            fig.colorbar(image, ax=ax, label="open gates (%)")
        where = ", ".join(f"{k}={v}" for k, v in info.items() if k not in ("method", "task"))
        fig.suptitle(f"Gate dynamics: {method_label(info['method'])}, {info['task']} ({where})")
        paths += _save(fig, out_dir, _stem("gate_dynamics", *key))
    return paths


def study_plots(
    selected: pd.DataFrame,
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    out_dir: str,
    dynamics: pd.DataFrame | None = None,
) -> list[str]:
    """Every analysis figure the experiment holds (see ``studies.recognise``); ``dynamics``:
    the ``gate_dynamics`` frame when the caller has it already."""
    colours = method_colours(set(selected["method"]))
    paths: list[str] = []
    scored = "test_score" in selected.columns  # no finished trial at all: no score figures
    for study in recognise(trials) if scored else []:
        if study.kind == "curve":
            paths += curve_plots(selected, study, out_dir, colours)
        else:
            paths += variant_plots(selected, trials, study, out_dir)
            if study.kind == "schedules":
                paths += stability_plot(selected, trials, study, out_dir)
    if dynamics is None:
        dynamics = gate_dynamics(selected, epochs, trials)
    paths += gate_dynamics_plots(dynamics, out_dir)
    return paths
