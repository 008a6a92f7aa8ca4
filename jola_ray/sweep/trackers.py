"""Experiment trackers through Ray Tune's own logger callbacks (``--log-to``).

Ray Tune already ships the loggers: ``TBXLoggerCallback`` (TensorBoard event files in each trial
directory, through tensorboardX), ``WandbLoggerCallback`` and ``MLflowLoggerCallback``. A trial's
per-epoch reports (dev metrics, train loss, gates) and its final test metrics reach them as they
reach ``result.json``; the trial's config (task, seed, method, configuration) is logged as the
run's parameters. The trainer inside a trial keeps ``report_to="none"``: every report already
goes through Tune, and a second logger inside the worker would log each epoch twice.

None of the three packages is a dependency of jola-ray: install the one you use
(``pip install tensorboardX``, ``wandb`` or ``mlflow``); a missing one is a ``ConfigError``
naming the package, before Ray starts.
"""

from __future__ import annotations

import importlib.util
import os

from jola_ray.errors import ConfigError

# --log-to name -> (module that must be importable, pip package)
TRACKERS = {
    "tensorboard": ("tensorboardX", "tensorboardX"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
}


def parse_trackers(values) -> list[str]:
    """``["tensorboard,wandb", "mlflow"]`` -> ``["tensorboard", "wandb", "mlflow"]``, checked."""
    names: list[str] = []
    for value in values or []:
        for name in str(value).split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in TRACKERS:
                raise ConfigError(
                    f"--log-to {name!r}: expected one of {', '.join(TRACKERS)} "
                    "(comma-separated or repeated)"
                )
            if name not in names:
                names.append(name)
    missing = [
        f"{name} (pip install {TRACKERS[name][1]})"
        for name in names
        if importlib.util.find_spec(TRACKERS[name][0]) is None
    ]
    if missing:
        raise ConfigError("--log-to needs packages that are not installed: " + "; ".join(missing))
    return names


def tracker_callbacks(names: list[str], experiment: str) -> list:
    """Ray Tune logger callbacks for ``names``; W&B's project and MLflow's experiment are the
    experiment name unless ``WANDB_PROJECT`` / ``MLFLOW_EXPERIMENT_NAME`` say otherwise, MLflow's
    tracking URI comes from ``MLFLOW_TRACKING_URI`` (else MLflow's default, ./mlruns)."""
    out = []
    for name in names:
        if name == "tensorboard":
            from ray.tune.logger import TBXLoggerCallback

            out.append(TBXLoggerCallback())
        elif name == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback

            out.append(
                WandbLoggerCallback(
                    project=os.environ.get("WANDB_PROJECT", experiment), group=experiment
                )
            )
        elif name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            out.append(
                MLflowLoggerCallback(
                    tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"),
                    experiment_name=os.environ.get("MLFLOW_EXPERIMENT_NAME", experiment),
                )
            )
    return out
