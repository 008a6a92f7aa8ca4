"""Compact terminal progress: one line when a trial starts, finishes, is pruned or fails.

Ray's own table output is switched off (``verbose=0``); these lines say which grid point each
trial is, so a long sweep reads as a log. Status rules are the contract's: **finished** if a
result has ``run_status == "finished"``, **errored** if it failed, otherwise **pruned**.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from ray.tune import Callback

from jola_ray.sweep.space import CORE_AXES, TRIAL_KEYS, trial_of


def trial_label(config: dict[str, Any]) -> str:
    """``task seed=42 model method config`` (plus extra axes), for one progress line."""
    config = trial_of(config)
    hp = config.get("hp", {}).get("config_name", "?")
    extra = " ".join(
        f"{k}={v}" for k, v in config.items() if k not in CORE_AXES and k not in TRIAL_KEYS
    )
    label = (
        f"{config.get('task')} seed={config.get('seed')} {config.get('model')} "
        f"{config.get('method')} {hp}"
    )
    return f"{label} {extra}".strip()


class SweepProgress(Callback):
    """Prints a line per trial event (the end summary comes from ``SweepOutcome.counts``)."""

    def __init__(self):
        # No stream is kept: the callback is pickled with the experiment (tuner.pkl).
        self._t0 = time.monotonic()

    def setup(self, **info):
        self._t0 = time.monotonic()  # also after a restore (this object was pickled)

    def _say(self, tag: str, trial, extra: str = "") -> None:
        elapsed = time.monotonic() - self._t0
        line = f"[{elapsed:7.1f}s] {tag:<8} {trial_label(trial.config)}"
        print(f"{line} {extra}".rstrip(), file=sys.stdout, flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._say("start", trial)

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        epoch = last.get("epoch")
        if last.get("run_status") == "finished":
            score = last.get("test_score")
            extra = f"test_score={score:.2f}" if isinstance(score, (int, float)) else ""
            self._say("finished", trial, extra)
        else:
            self._say("pruned", trial, f"at epoch {epoch}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._say("ERROR", trial, f"(see {trial.path}/error.txt)")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._say("retry", trial, "from its last checkpoint")
