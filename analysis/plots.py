"""Figures of the report (matplotlib, Agg backend), each written as PNG and PDF.

Learning curves per task, gate maps of the selected trials and the epochs ASHA and early
stopping saved per task (the analyses' figures, data size and model size among them, are in
``study_plots``). Each figure has a legend entry for every line or bar kind it draws, placed
outside the axes so that it covers nothing. Every function returns the paths it wrote (none
when there is nothing to draw), so a report over results without checkpoints still works.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis.load import read_gates  # noqa: E402
from analysis.tasks import method_label, method_order, trains_epochs  # noqa: E402


def _save(fig, out_dir: str, stem: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = os.path.join(out_dir, f"{stem}.{ext}")
        fig.savefig(path, dpi=120, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def _stem(*parts) -> str:
    text = "_".join(str(p) for p in parts)
    return "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in text)


# Seeds' line styles; the level of a method without epochs (zero-shot) is a thick dotted line
# (black for the first, greys for any further one), unlike any of them.
_SEED_STYLES = ("-", "--", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (8, 2, 1, 2)))
_LEVEL_STYLE = {"ls": ":", "lw": 2.2}
_LEVEL_COLOURS = ("k", "0.45", "0.7")


def _facets(epochs: pd.DataFrame) -> list[str]:
    """Columns a learning-curve figure is split by: task, then model and train_size if they vary."""
    return ["task"] + [
        c for c in ("model", "train_size") if c in epochs and epochs[c].nunique() > 1
    ]


def learning_curves(epochs: pd.DataFrame, out_dir: str) -> list[str]:
    """dev_score per epoch: one figure per task (and model / train_size where several), one line
    per trial. Colour = configuration (of its method), line style = seed, both in the legend;
    the dev score of each method that trains no epochs (zero-shot; catalog ``trains``), mean over
    seeds, is a dotted level line under the curves; a trial ASHA pruned ends in an x, one that
    early stopping ended before the last epoch in an o."""
    if epochs.empty or "dev_score" not in epochs.columns:
        return []
    paths = []
    facets = _facets(epochs)
    for key, part in epochs.groupby(facets, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        part = part.dropna(subset=["dev_score"])
        trains = part["method"].map(trains_epochs).astype(bool)
        levels = part[~trains]
        part = part[trains & (part["epoch"] > 0)]
        if part.empty:
            continue
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        configs = sorted(
            {(m, c) for m, c in zip(part["method"], part["config_name"], strict=True)},
            key=lambda mc: (method_order(part["method"]).index(mc[0]), str(mc[1])),
        )
        several_methods = part["method"].nunique() > 1
        colours = {mc: f"C{i % 10}" for i, mc in enumerate(configs)}
        seeds = sorted(part["seed"].unique(), key=str)
        styles = {s: _SEED_STYLES[i % len(_SEED_STYLES)] for i, s in enumerate(seeds)}
        pruned_any = early_any = False
        last_epoch = part["epoch"].max()
        for (_, method, cfg, seed), trial in part.groupby(
            ["trial_dir", "method", "config_name", "seed"], sort=False
        ):
            trial = trial.sort_values("epoch")
            colour = colours[(method, cfg)]
            ax.plot(
                trial["epoch"], trial["dev_score"], color=colour, ls=styles[seed], lw=1.4, zorder=3
            )
            end = (trial["epoch"].iloc[-1], trial["dev_score"].iloc[-1])
            if trial["status"].iloc[0] == "pruned":
                pruned_any = True
                ax.plot(*end, "x", color="k", ms=7, zorder=4)
            elif trial["status"].iloc[0] == "finished" and end[0] < last_epoch:
                early_any = True
                ax.plot(*end, "o", mfc="none", color=colour, ms=6, zorder=4)
        handles = []
        for mc in configs:
            label = f"{method_label(mc[0])} {mc[1]}" if several_methods else str(mc[1])
            handles.append(Line2D([], [], color=colours[mc], lw=2, label=label))
        if len(seeds) > 1:
            for seed in seeds:
                handles.append(Line2D([], [], color="0.4", ls=styles[seed], label=f"seed {seed}"))
        for i, method in enumerate(method_order(levels["method"])):
            rows = levels[levels["method"] == method]
            style = {**_LEVEL_STYLE, "color": _LEVEL_COLOURS[i % len(_LEVEL_COLOURS)]}
            n = rows["seed"].nunique()
            ax.axhline(float(rows["dev_score"].mean()), zorder=2, **style)
            label = f"{method_label(method)} (mean of {n} seed" + ("s)" if n > 1 else ")")
            handles.append(Line2D([], [], label=label, **style))
        if pruned_any:
            handles.append(Line2D([], [], ls="", marker="x", color="k", label="pruned by ASHA"))
        if early_any:
            handles.append(
                Line2D([], [], ls="", marker="o", mfc="none", color="k", label="early stopping")
            )
        where = ", ".join(str(v) for v in key)
        ax.set(xlabel="epoch", ylabel="dev score (%)", title=f"Learning curves: {where}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(
            handles=handles,
            fontsize=8,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            title="configuration" if not several_methods else None,
        )
        paths += _save(fig, out_dir, _stem("learning_curves", *key))
    return paths


def gate_maps(selected: pd.DataFrame, trials: pd.DataFrame, out_dir: str) -> list[str]:
    """Layer x head heatmaps of the selected trials' gates (mean over seeds), add and mul.

    Gates closed in every seed (mean exactly 0: the head's edit is switched off) are drawn in
    light grey, outside the colour scale, and counted in the panel's title. Reads ``gates.csv``
    from each selected trial's last checkpoint; trials without one (zero-shot, methods without
    gates, missing checkpoints) are skipped.
    """
    paths = []
    chosen = selected[selected["selected"]]
    path_of = dict(zip(trials["trial_dir"], trials["trial_path"], strict=False))
    for (method, model, task), group in chosen.groupby(["method", "model", "task"], sort=True):
        frames = [read_gates(path_of[d]) for d in group["trial_dir"] if d in path_of]
        frames = [f for f in frames if f is not None]
        if not frames:
            continue
        gates = pd.concat(frames).groupby(["layer", "head"]).mean(numeric_only=True)
        kinds = [k for k in ("gate_add", "gate_mul") if k in gates.columns]
        if not kinds:
            continue
        fig, axes = plt.subplots(
            1, len(kinds), figsize=(5.5 * len(kinds), 4.8), squeeze=False, layout="constrained"
        )
        cmap = plt.get_cmap("viridis").with_extremes(bad="0.85")
        for ax, kind in zip(axes[0], kinds, strict=True):
            grid = gates[kind].unstack("head")  # layers x heads
            values = grid.values.astype(float)
            closed = values == 0.0
            image = ax.imshow(
                np.ma.masked_where(closed, values),
                aspect="auto",
                cmap=cmap,
                vmin=0.0,
                vmax=1.0,
                interpolation="nearest",
            )
            seeds = f"{len(frames)} seed" + ("s" if len(frames) > 1 else "")
            ax.set(
                xlabel="head",
                ylabel="layer",
                title=f"{kind} (mean over {seeds})\n{int(closed.sum())} of {closed.size} closed",
            )
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            fig.colorbar(image, ax=ax, label="gate (expected value)")
        fig.legend(
            handles=[Patch(color="0.85", label="closed (0 in every seed)")],
            loc="outside lower center",
            fontsize=8,
        )
        fig.suptitle(f"Gates kept: {method_label(method)}, {model}, {task}")
        paths += _save(fig, out_dir, _stem("gates", method, model, task))
    return paths


def asha_savings(asha: pd.DataFrame, out_dir: str) -> list[str]:
    """One stacked bar per task: the full grid's epochs split into run, saved by ASHA's pruning,
    saved by early stopping (patience), and not run for other reasons (errored, unfinished)."""
    if asha.empty or not (asha["grid_epochs"] > 0).any():
        return []
    asha = asha[asha["grid_epochs"] > 0]
    run = asha["epochs_run"].to_numpy(float)
    pruned = asha.get("asha_saved", pd.Series(0.0, index=asha.index)).to_numpy(float)
    early = asha.get("early_stop_saved", pd.Series(0.0, index=asha.index)).to_numpy(float)
    other = np.clip(asha["grid_epochs"].to_numpy(float) - run - pruned - early, 0, None)
    fig, ax = plt.subplots(figsize=(max(5.5, 0.9 * len(asha) + 3), 4.2))
    x = np.arange(len(asha))
    bottom = np.zeros(len(asha))
    parts = [
        (run, "run", "C0"),
        (pruned, "saved by ASHA (pruned trials)", "C1"),
        (early, "saved by early stopping", "C2"),
        (other, "not run (errored / unfinished)", "0.7"),
    ]
    for values, label, colour in parts:
        if values.sum() == 0 and label != "run":
            continue
        ax.bar(x, values, bottom=bottom, width=0.6, label=label, color=colour)
        bottom += values
    for i, (g, r) in enumerate(zip(asha["grid_epochs"], run, strict=True)):
        ax.text(i, g, f"{100 * (1 - r / g):.0f}% not run", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(x), asha["task"], rotation=30, ha="right")
    ax.set(ylabel="epochs", title="Epochs of the full grid: run and saved")
    ax.set_ylim(0, float(asha["grid_epochs"].max()) * 1.15)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, out_dir, "asha_savings")
