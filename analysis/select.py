"""Model selection as the paper does it, and the mean over seeds.

For each (method, model, task[, extra axes such as train_size], seed) the finished trial with the best dev metric
(``best_dev_score``: the final row's, or the best ``dev_score`` seen) is selected; zero-shot's one
trial per seed is selected as it is. Test metrics of the selected trials are then averaged over
seeds (mean, sample standard deviation, n). A seed counts as expected for a cell when any trial
of the same (model, task[, extra axes]) ran with it, so a seed whose trials all failed or were
pruned, or that a method never ran, shows up as missing instead of disappearing.
"""

from __future__ import annotations

import math

import pandas as pd

from analysis.load import STATUSES

# Settings the paper's analyses sweep (analysis.studies): one that is fixed within each experiment
# but differs between experiments loaded together (say three runs of jola.gates) is an axis too.
ANALYSIS_SETTINGS = ("jola.gates", "jola.parts", "jola.site", "lr_schedule", "lofit.top_k")


def extra_axes(trials: pd.DataFrame) -> list[str]:
    """Sweep axes besides method/model/task/seed that take several values (e.g. train_size).

    Candidates are the extra axes the loader found at the top of params.json, plus train_size
    (a fixed setting that differs between experiments loaded together is an axis too), plus an
    analysis setting (``ANALYSIS_SETTINGS``) constant within each experiment and varying across
    them (within one experiment it is a configuration's setting, chosen on dev, not an axis).
    """
    names = {"train_size"}
    if "extra_axes" in trials.columns:
        for value in trials["extra_axes"].dropna():
            names.update(n for n in str(value).split(",") if n)
    if "experiment" in trials.columns:
        for name in ANALYSIS_SETTINGS:
            if name in trials.columns and name not in names:
                per_exp = trials.groupby("experiment")[name].nunique(dropna=True)
                if (per_exp <= 1).all():
                    names.add(name)
    return [n for n in sorted(names) if n in trials.columns and trials[n].nunique(dropna=True) > 1]


def analysis_axes(trials: pd.DataFrame) -> list[str]:
    """Grouping columns besides seed: method, model, task, then the varying extra axes."""
    return ["method", "model", "task", *extra_axes(trials)]


def _sort_key(value):
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


def tested_metrics(frame: pd.DataFrame) -> list[str]:
    """The ``test_*`` columns present, test_score first."""
    cols = [c for c in frame.columns if c.startswith("test_") and c != "test_loss"]
    return sorted(cols, key=lambda c: (c != "test_score", c))


def select_configs(trials: pd.DataFrame, axes: list[str] | None = None) -> pd.DataFrame:
    """One row per (axes, expected seed): the selected trial, or why there is none.

    Columns: the axes, ``seed``, ``selected`` (bool), ``config_name``, ``trial_dir``,
    ``best_dev_score``, the test metrics, ``trainable_params``, ``num_selected_heads``,
    ``best_epoch``, ``trial_path`` (where the per-epoch rows and checkpoints are), and the
    seed's trial counts ``n_trials`` and ``n_<status>``; ``reason`` says why nothing was selected.
    """
    axes = axes or analysis_axes(trials)
    cell_axes = [a for a in axes if a != "method"]
    tests = tested_metrics(trials)
    carry = ("trainable_params", "base_params", "num_selected_heads", "best_epoch", "trial_path")
    carry = [c for c in carry if c in trials.columns]
    expected = {
        key: sorted(set(group["seed"]), key=_sort_key)
        for key, group in trials.groupby(cell_axes, sort=False, dropna=False)
    }
    rows = []
    for key, group in trials.groupby(axes, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        base = dict(zip(axes, key, strict=True))
        cell_key = tuple(base[a] for a in cell_axes)
        by_seed = {seed: g for seed, g in group.groupby("seed", sort=False)}
        for seed in expected[cell_key]:
            row = {**base, "seed": seed, "selected": False, "config_name": None}
            row.update(trial_dir=None, best_dev_score=math.nan, reason=None)
            seed_trials = by_seed.get(seed, trials.iloc[0:0])
            row["n_trials"] = len(seed_trials)
            for status in STATUSES:
                row["n_" + status] = int((seed_trials["status"] == status).sum())
            finished = seed_trials[seed_trials["status"] == "finished"]
            if finished.empty:
                counts = ", ".join(f"{row['n_' + st]} {st}" for st in STATUSES if row["n_" + st])
                row["reason"] = (
                    "no trial ran with this seed"
                    if seed_trials.empty
                    else f"no finished trial ({counts})"
                )
                rows.append(row)
                continue
            # Best dev score first (missing scores last), then config name for a stable choice.
            ranked = finished.assign(
                _has=finished["best_dev_score"].notna(),
                _score=finished["best_dev_score"].fillna(-math.inf),
                _name=finished["config_name"].astype(str),
            ).sort_values(["_has", "_score", "_name"], ascending=[False, False, True])
            best = ranked.iloc[0]
            row.update(selected=True, config_name=best["config_name"], reason=None)
            row["trial_dir"] = best["trial_dir"]
            row["best_dev_score"] = best["best_dev_score"]
            for col in tests + carry:
                row[col] = best[col]
            rows.append(row)
    columns = [*axes, "seed", "selected", "config_name", "trial_dir", "best_dev_score"]
    frame = pd.DataFrame(rows)
    return frame[columns + [c for c in frame.columns if c not in columns]]


def seed_stats(values) -> tuple[float, float, int]:
    """Mean, sample standard deviation (NaN for fewer than 2) and n of the non-missing values."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(vals)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(vals) / n
    if n < 2:
        return mean, math.nan, n
    var = sum((v - mean) ** 2 for v in vals) / (n - 1)
    return mean, math.sqrt(var), n


def summarise(selected: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """One row per (axes) cell: test metric mean/std/n over seeds, expected seeds, trial counts."""
    axes = [a for a in analysis_axes(trials) if a in selected.columns]
    tests = tested_metrics(selected)
    rows = []
    for key, group in selected.groupby(axes, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(axes, key, strict=True))
        row["n_seeds_expected"] = len(group)
        row["n_seeds_selected"] = int(group["selected"].sum())
        row["missing_seeds"] = ",".join(str(s) for s in group.loc[~group["selected"], "seed"])
        for col in ("n_trials", *("n_" + s for s in STATUSES)):
            row[col] = int(group[col].sum())
        chosen = group[group["selected"]]
        row["configs"] = ",".join(str(c) for c in chosen["config_name"])
        for col in tests:
            mean, std, n = seed_stats(chosen[col])
            row[col + "_mean"], row[col + "_std"], row[col + "_n"] = mean, std, n
        if "trainable_params" in chosen.columns:
            row["trainable_params"] = chosen["trainable_params"].median()
        rows.append(row)
    return pd.DataFrame(rows)
