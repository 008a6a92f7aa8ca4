"""Compute ledger, trial status counts and what ASHA saved.

GPU hours come from each trial's ``cost_gpu_s``; where that is 0 or missing (a CPU run, or a
pruned trial that never wrote its final row) Ray's ``time_total_s`` (wall seconds) stands in, and
the ``source`` column says which was used.

Epochs are counted from what each trial's method runs: a training method's trial would run its
``epochs`` setting in the full grid, a zero-shot trial none (``tasks.trains_epochs``). The
epochs the grid did not run are split by why: ``asha_saved`` (pruned trials' remaining epochs),
``early_stop_saved`` (finished trials that stopped before their last epoch: patience), and the
rest (errored or unfinished trials) that only ``not_run`` includes. All three are percentages
of the grid's epochs.
A trial trained in a pack (``pack_size``) counts its share of the pack's seconds (each
epoch's seconds split among the configurations live in it); ``pack_shared`` counts those
trials and the source says so.
"""

from __future__ import annotations

import math

import pandas as pd

from analysis.load import STATUSES
from analysis.select import analysis_axes, select_configs
from analysis.tasks import trains_epochs


def status_counts(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials per task and status (finished, pruned, errored, empty), with a total row."""
    counts = (
        trials.groupby("task")["status"]
        .value_counts()
        .unstack(fill_value=0)
        .reindex(columns=list(STATUSES), fill_value=0)
    )
    counts["trials"] = counts.sum(axis=1)
    counts.loc["total"] = counts.sum()
    return counts.reset_index().rename(columns={"index": "task"})


def _trial_seconds(trials: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    gpu = pd.to_numeric(trials.get("cost_gpu_s", pd.Series(math.nan, index=trials.index)))
    wall = pd.to_numeric(trials.get("time_total_s", pd.Series(math.nan, index=trials.index)))
    use_gpu = gpu.fillna(0) > 0
    seconds = gpu.where(use_gpu, wall).fillna(0.0)
    source = use_gpu.map({True: "gpu", False: "wall"})
    return seconds, source


def grid_epochs(trials: pd.DataFrame) -> pd.Series:
    """Epochs each trial would run in the full grid: its ``epochs`` setting (the epochs it ran
    when unknown) for a training method, 0 for a method that trains none (zero-shot)."""
    full = pd.to_numeric(trials["max_epochs"], errors="coerce")
    full = full.fillna(trials["epochs_run"]).clip(lower=trials["epochs_run"])
    return full.where(trials["method"].map(trains_epochs), 0.0)


def _pct(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole else math.nan


def compute_ledger(trials: pd.DataFrame) -> pd.DataFrame:
    """Per task and in total: hours used (and their source), epochs run vs the full grid.

    ``source`` is "cost_gpu_s" when every trial had GPU seconds, "time_total_s (wall)" when none
    had (CPU runs), "mixed" otherwise. ``asha_saved_pct``: epochs pruned trials did not run;
    ``early_stop_saved_pct``: epochs finished trials skipped by early stopping; ``not_run_pct``:
    every epoch of the grid not run (those two plus errored and unfinished trials' remainders);
    each in percent of ``grid_epochs``.
    """
    seconds, source = _trial_seconds(trials)
    grid = grid_epochs(trials)
    left = (grid - trials["epochs_run"]).clip(lower=0.0)
    frame = trials.assign(
        _seconds=seconds,
        _source=source,
        _grid=grid,
        _left=left,
        _pruned_left=left.where(trials["status"] == "pruned", 0.0),
        _early_left=left.where(trials["status"] == "finished", 0.0),
    )
    rows = []
    for task, group in [*frame.groupby("task", sort=True), ("total", frame)]:
        sources = set(group["_source"])
        label = (
            "cost_gpu_s"
            if sources == {"gpu"}
            else "time_total_s (wall)"
            if sources == {"wall"}
            else "mixed"
        )
        packed = pd.to_numeric(group.get("pack_size", pd.Series(math.nan, index=group.index)))
        n_packed = int((packed.fillna(0) > 1).sum())
        if n_packed:
            label += ", pack-shared"
        grid = float(group["_grid"].sum())
        run = float(group["epochs_run"].where(group["_grid"] > 0, 0.0).sum())
        rows.append(
            {
                "task": task,
                "trials": len(group),
                "seconds": float(group["_seconds"].sum()),
                "hours": float(group["_seconds"].sum()) / 3600.0,
                "source": label,
                "pack_shared": n_packed,
                "epochs_run": int(run),
                "grid_epochs": int(grid),
                "asha_saved_pct": _pct(float(group["_pruned_left"].sum()), grid),
                "early_stop_saved_pct": _pct(float(group["_early_left"].sum()), grid),
                "not_run_pct": _pct(float(group["_left"].sum()), grid),
            }
        )
    return pd.DataFrame(rows)


def asha_effect(trials: pd.DataFrame) -> pd.DataFrame:
    """Per task: pruned trials, epochs saved, and whether pruning changed the selection.

    The last needs the full grid: the same (method, model, task, seed) run in another experiment
    directory with every configuration finished (no pruning). ``compared`` counts such seeds and
    ``same_selection`` those where both runs selected the same configuration.
    """
    grid = grid_epochs(trials)
    cell_axes = analysis_axes(trials)
    axes = [*cell_axes, "seed"]
    full, pruned = {}, {}
    for _exp, group in trials.groupby("experiment", sort=False):
        sel = select_configs(group, cell_axes).set_index(axes)
        for key, cell in group.groupby(axes, sort=False):
            if key not in sel.index:
                continue
            chosen = sel.loc[key, "config_name"]
            if isinstance(chosen, pd.Series):
                chosen = chosen.iloc[0]
            if (cell["status"] == "pruned").any():
                pruned[key] = chosen
            elif len(cell) > 1 and (cell["status"] == "finished").all():
                full[key] = chosen
    rows = []
    for task, group in trials.groupby("task", sort=True):
        keys = [k for k in pruned if k in full and k[axes.index("task")] == task]
        g = grid[group.index]
        left = (g - group["epochs_run"]).clip(lower=0.0)
        rows.append(
            {
                "task": task,
                "trials": len(group),
                "pruned": int((group["status"] == "pruned").sum()),
                "epochs_run": float(group["epochs_run"].where(g > 0, 0.0).sum()),
                "grid_epochs": float(g.sum()),
                "asha_saved": float(left[group["status"] == "pruned"].sum()),
                "early_stop_saved": float(left[group["status"] == "finished"].sum()),
                "compared": len(keys),
                "same_selection": sum(pruned[k] == full[k] for k in keys),
            }
        )
    return pd.DataFrame(rows)
