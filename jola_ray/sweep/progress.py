"""Terminal progress of a sweep: counts, ETA, best dev so far, and a per-epoch heartbeat.

Ray's own table output is switched off (``verbose=0``); this callback prints instead:

* one permanent line per trial event (``start``, ``finished``, ``pruned``, ``ERROR``,
  ``retry``), naming the grid point;
* after each finish, prune or error, a ``progress`` line: trials done (finished / pruned /
  errored), running and pending out of the grid's total and an ETA; then, when it changed, the
  best dev metric so far per task and method (with the configuration that reached it);
* a heartbeat of the running trials per epoch report: on a terminal one line that is rewritten
  in place (``\\r``), elsewhere (a log file, ``ray job submit``) one plain ``epoch`` line per
  report.

Counts come from the ``trials`` list Tune passes to every hook, so a restored experiment starts
with its finished and pruned trials already counted. Status rules are the contract's:
**finished** if the last result has ``run_status == "finished"``, **errored** if it failed,
otherwise **pruned**. The ETA is the mean duration of the trials done so far times the work
left (pending trials, plus what remains of the running ones), divided by the trials running at
once; it reads ``?`` until a trial has ended.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from typing import Any

from ray.tune import Callback

from jola_ray.sweep.space import CORE_AXES, TRIAL_KEYS, run_config_dict, trial_of

# The heartbeat line is redrawn at most this often on a terminal (seconds).
REDRAW_S = 0.5


def config_name(config: dict[str, Any]) -> str:
    """The configuration's name of a trial dict or of Ray's trial config (``{"trial": {...}}``)."""
    return str(trial_of(config).get("hp", {}).get("config_name", "?"))


def extra_axes_label(config: dict[str, Any]) -> str:
    """``train_size=100`` (and any other extra axis) of a trial config; empty when none."""
    config = trial_of(config)
    return " ".join(
        f"{k}={v}" for k, v in config.items() if k not in CORE_AXES and k not in TRIAL_KEYS
    )


def trial_label(config: dict[str, Any]) -> str:
    """``task seed=42 model method config`` (plus extra axes), for one progress line."""
    config = trial_of(config)
    label = (
        f"{config.get('task')} seed={config.get('seed')} {config.get('model')} "
        f"{config.get('method')} {config_name(config)}"
    )
    return f"{label} {extra_axes_label(config)}".strip()


def format_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h07m``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def trial_state(trial) -> str:
    """pending | running | finished | pruned | errored, from Ray's status and the last result."""
    status = getattr(trial, "status", "PENDING")
    if status == "ERROR":
        return "errored"
    if status == "TERMINATED":
        last = trial.last_result or {}
        return "finished" if last.get("run_status") == "finished" else "pruned"
    if status == "RUNNING":
        return "running"
    return "pending"  # PENDING, PAUSED


def estimate_eta(
    durations: list[float], running_elapsed: list[float], pending: int, parallel: int
) -> float | None:
    """Seconds left: mean trial duration x (pending + the running trials' remainders) / the
    trials running at once. None until some trial has ended (no duration measured)."""
    if not durations:
        return None if (pending or running_elapsed) else 0.0
    mean = sum(durations) / len(durations)
    left = pending * mean + sum(max(mean - e, 0.0) for e in running_elapsed)
    return left / max(parallel, 1)


class SweepProgress(Callback):
    """Prints the sweep's progress (see the module docstring).

    ``total`` is the grid size; ``metric``/``mode`` say which reported value is the dev metric
    and which direction is better. ``stream``/``tty`` are for tests (default: the current
    ``sys.stdout`` and whether it is a terminal). No stream is stored: the callback is pickled
    with the experiment (tuner.pkl).
    """

    # Class-level defaults: an experiment saved by an older version unpickles without them.
    total = 0
    metric = "dev_score"
    mode = "max"
    _stream = None
    _tty: bool | None = None

    def __init__(self, total: int = 0, metric: str = "dev_score", mode: str = "max"):
        self.total = total
        self.metric = metric
        self.mode = mode
        self._t0 = time.monotonic()
        self._reset()
        self._stream = None
        self._tty: bool | None = None

    def _reset(self) -> None:
        self._started: dict[str, float] = {}  # trial_id -> monotonic start (this driver)
        self._durations: dict[str, float] = {}  # trial_id -> seconds, trials that ended
        self._best: dict[tuple[str, str], tuple[float, str]] = {}  # (task, method) -> (v, cfg)
        self._seen_done: set[str] = set()
        self._epoch: dict[str, tuple[Any, Any]] = {}  # trial_id -> (epoch, metric value)
        self._final: dict[str, str] = {}  # trial_id -> state, set before Ray updates its status
        self._starting: str | None = None  # the trial on_trial_start is about (still PENDING)
        self._max_parallel = 1
        self._best_shown = ""
        self._last_draw = 0.0
        self._status_shown = False

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_stream"] = None
        return state

    def setup(self, **info):
        self._t0 = time.monotonic()  # also after a restore (this object was pickled)
        self._reset()

    # Output ----------------------------------------------------------------------------------

    def _out(self):
        return self._stream if self._stream is not None else sys.stdout

    def _is_tty(self) -> bool:
        if self._tty is not None:
            return self._tty
        out = self._out()
        return bool(getattr(out, "isatty", lambda: False)())

    def _clear_status(self) -> None:
        if self._status_shown:
            self._out().write("\r\033[K")
            self._status_shown = False

    def _line(self, text: str) -> None:
        """A permanent line (clears the heartbeat line first on a terminal)."""
        if self._is_tty():
            self._clear_status()
        print(text, file=self._out(), flush=True)

    def _stamp(self) -> str:
        return f"[{time.monotonic() - self._t0:7.1f}s]"

    def _say(self, tag: str, trial, extra: str = "") -> None:
        self._line(f"{self._stamp()} {tag:<8} {trial_label(trial.config)} {extra}".rstrip())

    # State -----------------------------------------------------------------------------------

    def _state(self, trial) -> str:
        """The trial's state, also inside the hooks that run before Ray updates its status
        (on_trial_start: still PENDING; on_trial_complete: still RUNNING)."""
        if trial.trial_id in self._final:
            return self._final[trial.trial_id]
        state = trial_state(trial)
        if state == "pending" and trial.trial_id == self._starting:
            return "running"
        return state

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b

    def _note_score(self, trial, value) -> bool:
        """Record a dev value for the trial's (task, method); True when it is a new best."""
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        point = trial_of(trial.config)
        key = (str(point.get("task")), str(point.get("method")))
        held = self._best.get(key)
        if held is None or self._better(float(value), held[0]):
            self._best[key] = (float(value), config_name(trial.config))
            return True
        return False

    def _absorb(self, trials) -> None:
        """Count trials that ended before this driver saw them (a restored experiment)."""
        for t in trials:
            if t.trial_id in self._seen_done or self._state(t) not in (
                "finished",
                "pruned",
                "errored",
            ):
                continue
            self._seen_done.add(t.trial_id)
            last = t.last_result or {}
            if isinstance(last.get("time_total_s"), (int, float)):
                self._durations.setdefault(t.trial_id, float(last["time_total_s"]))
            self._note_score(t, last.get("best_" + self.metric, last.get(self.metric)))

    def counts(self, trials) -> dict[str, int]:
        """finished, pruned, errored, running, pending (pending = total minus the others)."""
        out = dict.fromkeys(("finished", "pruned", "errored", "running", "pending"), 0)
        for t in trials:
            out[self._state(t)] += 1
        total = max(self.total, len(trials))
        out["pending"] = total - sum(v for k, v in out.items() if k != "pending")
        return out

    def eta(self, trials) -> float | None:
        now = time.monotonic()
        running = [t for t in trials if self._state(t) == "running"]
        elapsed = [now - self._started.get(t.trial_id, now) for t in running]
        self._max_parallel = max(self._max_parallel, len(running))
        return estimate_eta(
            list(self._durations.values()),
            elapsed,
            self.counts(trials)["pending"],
            self._max_parallel,
        )

    def best_text(self) -> str:
        if not self._best:
            return "best dev: none yet"
        parts = [
            f"{task}/{method} {v:.2f} ({cfg})"
            for (task, method), (v, cfg) in sorted(self._best.items())
        ]
        return f"best {self.metric}: " + ", ".join(parts)

    def progress_text(self, trials) -> str:
        c = self.counts(trials)
        total = max(self.total, len(trials))
        done = c["finished"] + c["pruned"] + c["errored"]
        return (
            f"progress {done}/{total} done ({c['finished']} finished, {c['pruned']} pruned, "
            f"{c['errored']} errored), {c['running']} running, {c['pending']} pending, "
            f"ETA {format_duration(self.eta(trials))}"
        )

    def heartbeat_text(self, trials) -> str:
        """One line: counts, ETA and each running trial's last epoch and dev value."""
        c = self.counts(trials)
        total = max(self.total, len(trials))
        done = c["finished"] + c["pruned"] + c["errored"]
        running = []
        for t in trials:
            if self._state(t) != "running":
                continue
            epoch, value = self._epoch.get(t.trial_id, (None, None))
            cfg = trial_of(t.config)
            where = f"{cfg.get('task')}/s{cfg.get('seed')}/{config_name(cfg)}"
            if epoch is not None:
                where += f" ep{epoch}"
                if isinstance(value, (int, float)):
                    where += f"={value:.1f}"
            running.append(where)
        return (
            f"{self._stamp()} {done}/{total} done, {c['running']} running, {c['pending']} "
            f"pending, ETA {format_duration(self.eta(trials))} | " + "; ".join(running)
        )

    def _draw(self, trials, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < REDRAW_S:
            return
        self._last_draw = now
        width = shutil.get_terminal_size((120, 20)).columns
        text = self.heartbeat_text(trials)[: max(width - 1, 20)]
        out = self._out()
        out.write("\r\033[K" + text)
        out.flush()
        self._status_shown = True

    def _after_end(self, trials, trial, state: str) -> None:
        self._final[trial.trial_id] = state
        self._seen_done.add(trial.trial_id)
        start = self._started.pop(trial.trial_id, None)
        last = trial.last_result or {}
        if start is not None:
            self._durations[trial.trial_id] = time.monotonic() - start
        elif isinstance(last.get("time_total_s"), (int, float)):
            self._durations[trial.trial_id] = float(last["time_total_s"])
        self._epoch.pop(trial.trial_id, None)
        self._line(f"{self._stamp()} {self.progress_text(trials)}")
        best = self.best_text()
        if best != self._best_shown:  # printed when it changed, not after every trial
            self._best_shown = best
            self._line(f"{self._stamp()} {best}")

    # Tune hooks ------------------------------------------------------------------------------

    def on_trial_start(self, iteration, trials, trial, **info):
        self._absorb(trials)
        self._final.pop(trial.trial_id, None)
        self._started.setdefault(trial.trial_id, time.monotonic())
        self._starting = trial.trial_id
        running = sum(self._state(t) == "running" for t in trials)
        self._max_parallel = max(self._max_parallel, running)
        try:
            self._say("start", trial)
            if self._is_tty():
                self._draw(trials, force=True)
        finally:
            self._starting = None

    def on_trial_result(self, iteration, trials, trial, result, **info):
        epoch = result.get("epoch")
        value = result.get(self.metric)
        self._note_score(trial, value)
        if result.get("run_status") == "finished":
            return  # the final row: the completion line follows
        self._epoch[trial.trial_id] = (epoch, value)
        if self._is_tty():
            self._draw(trials, force=True)
        else:
            shown = f"{self.metric}={value:.2f}" if isinstance(value, (int, float)) else ""
            max_epochs = run_config_dict(trial.config).get("epochs")
            of = f"/{max_epochs}" if max_epochs else ""
            self._say("epoch", trial, f"epoch {epoch}{of} {shown}")

    def on_step(self, iteration, trials, **info):
        if self._is_tty() and any(self._state(t) == "running" for t in trials):
            self._draw(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        if last.get("run_status") == "finished":
            score = last.get("test_score")
            extra = f"test_score={score:.2f}" if isinstance(score, (int, float)) else ""
            self._say("finished", trial, extra)
            self._after_end(trials, trial, "finished")
        else:
            self._say("pruned", trial, f"at epoch {last.get('epoch')}")
            self._after_end(trials, trial, "pruned")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._say("ERROR", trial, f"(see {trial.path}/error.txt)")
        self._after_end(trials, trial, "errored")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._say("retry", trial, "from its last checkpoint")

    def on_experiment_end(self, trials, **info):
        if self._is_tty():
            self._clear_status()
