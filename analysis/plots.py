"""Figures of the report (matplotlib, Agg backend), each written as PNG and PDF.

Learning curves per task, gate maps of the selected trials and epochs ASHA saved per task (the
analyses' figures, data size and model size among them, are in ``study_plots``). Every function returns the paths it wrote (none when there is
nothing to draw), so a report over results without checkpoints or without an axis still works.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis.load import read_gates  # noqa: E402
from analysis.tasks import method_label, method_order  # noqa: E402


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


def learning_curves(epochs: pd.DataFrame, out_dir: str) -> list[str]:
    """dev_score per epoch, one line per trial; pruned trials end in an x at their last epoch."""
    if epochs.empty or "dev_score" not in epochs.columns:
        return []
    paths = []
    for task, part in epochs.groupby("task", sort=True):
        part = part[part["epoch"] > 0].dropna(subset=["dev_score"])
        if part.empty:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        colours = {m: f"C{i}" for i, m in enumerate(method_order(part["method"]))}
        for (_, method), trial in part.groupby(["trial_dir", "method"], sort=False):
            trial = trial.sort_values("epoch")
            ax.plot(trial["epoch"], trial["dev_score"], color=colours[method], alpha=0.6, lw=1)
            if trial["status"].iloc[0] == "pruned":
                ax.plot(trial["epoch"].iloc[-1], trial["dev_score"].iloc[-1], "x", color="k")
        for method, colour in colours.items():
            ax.plot([], [], color=colour, label=method_label(method))
        ax.plot([], [], "x", color="k", label="pruned (ASHA)")
        ax.set(xlabel="epoch", ylabel="dev score (%)", title=f"Learning curves: {task}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
        paths += _save(fig, out_dir, _stem("learning_curves", task))
    return paths


def gate_maps(selected: pd.DataFrame, trials: pd.DataFrame, out_dir: str) -> list[str]:
    """Layer x head heatmaps of the selected trials' gates (mean over seeds), add and mul.

    Reads ``gates.csv`` from each selected trial's last checkpoint; trials without one (zero-shot,
    methods without gates, missing checkpoints) are skipped.
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
        fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 4), squeeze=False)
        for ax, kind in zip(axes[0], kinds, strict=True):
            grid = gates[kind].unstack("head")  # layers x heads
            image = ax.imshow(grid.values, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
            seeds = f"{len(frames)} seed" + ("s" if len(frames) > 1 else "")
            ax.set(xlabel="head", ylabel="layer", title=f"{kind} (mean over {seeds})")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            fig.colorbar(image, ax=ax)
        fig.suptitle(f"Gates kept: {method_label(method)}, {model}, {task}")
        paths += _save(fig, out_dir, _stem("gates", method, model, task))
    return paths


def asha_savings(asha: pd.DataFrame, out_dir: str) -> list[str]:
    """Bars per task: epochs run vs the full grid's epochs."""
    if asha.empty or not (asha["grid_epochs"] > 0).any():
        return []
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(asha)), 4))
    x = range(len(asha))
    ax.bar([i - 0.2 for i in x], asha["grid_epochs"], width=0.4, label="full grid")
    ax.bar([i + 0.2 for i in x], asha["epochs_run"], width=0.4, label="run (ASHA)")
    ax.set_xticks(list(x), asha["task"], rotation=45, ha="right")
    ax.set(ylabel="epochs", title="Epochs run vs the full grid")
    ax.legend()
    return _save(fig, out_dir, "asha_savings")
