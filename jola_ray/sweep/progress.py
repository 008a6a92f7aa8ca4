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


def trial_label(config: dict[str, Any]) -> str:
    """``task seed=42 model method config`` (plus extra axes), for one progress line."""
    hp = config.get("hp", {}).get("config_name", "?")
    core = ("task", "seed", "model", "method", "hp", "fixed", "group")
    extra = " ".join(f"{k}={v}" for k, v in config.items() if k not in core)
    label = (
        f"{config.get('task')} seed={config.get('seed')} {config.get('model')} "
        f"{config.get('method')} {hp}"
    )
    return f"{label} {extra}".strip()


class SweepProgress(Callback):
    """Prints a line per trial event and keeps counts for the end summary."""

    def __init__(self):
        # No stream is kept: the callback is pickled with the experiment (tuner.pkl).
        self.counts = {"started": 0, "finished": 0, "pruned": 0, "errored": 0}
        self._t0 = time.monotonic()

    def setup(self, **info):
        self._t0 = time.monotonic()  # also after a restore (this object was pickled)

    def _say(self, tag: str, trial, extra: str = "") -> None:
        elapsed = time.monotonic() - self._t0
        line = f"[{elapsed:7.1f}s] {tag:<8} {trial_label(trial.config)}"
        print(f"{line} {extra}".rstrip(), file=sys.stdout, flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.counts["started"] += 1
        self._say("start", trial)

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        epoch = last.get("epoch")
        if last.get("run_status") == "finished":
            self.counts["finished"] += 1
            score = last.get("test_score")
            extra = f"test_score={score:.2f}" if isinstance(score, (int, float)) else ""
            self._say("finished", trial, extra)
        else:
            self.counts["pruned"] += 1
            self._say("pruned", trial, f"at epoch {epoch}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.counts["errored"] += 1
        self._say("ERROR", trial, f"(see {trial.path}/error.txt)")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._say("retry", trial, "from its last checkpoint")
