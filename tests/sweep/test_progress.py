"""The sweep's terminal progress, driven by Tune's hooks with stand-in trials (no Ray cluster)."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from jola_ray.sweep import progress as prog
from jola_ray.sweep.progress import SweepProgress, estimate_eta, format_duration


def trial(tid, task="t1", seed=1, method="jola", config="c1", status="PENDING", **axes):
    """A stand-in Ray trial; its config is laid out as Ray gives it: the grid's trial dict under
    the ``trial`` key (``tune.grid_search``), settings by their dotted names."""
    cfg = {"task": task, "seed": seed, "model": "m", "method": method, **axes}
    cfg["hp"] = {"config_name": config, f"{method}.temperature": 0.5}
    cfg["fixed"] = {"epochs": 3}
    return SimpleNamespace(
        trial_id=tid, config={"trial": cfg}, status=status, last_result={}, path=f"/exp/{tid}"
    )


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(prog.time, "monotonic", c)
    return c


def make(total, tty, **kw):
    p = SweepProgress(total, **kw)
    p.setup()
    p._stream = io.StringIO()
    p._tty = tty
    return p


def run_two_trials(p, clock):
    """Trial a finishes after 10 s with dev 60 then 70; b (started at 0) is pruned at 20 s
    with dev 65; c and d never start. Tune calls on_trial_start while a trial is still
    PENDING and on_trial_complete while it is still RUNNING (as in TuneController)."""
    a, b, c, d = trial("a"), trial("b", config="c2"), trial("c", config="c3"), trial("d")
    trials = [a, b, c, d]
    for t in (a, b):
        p.on_trial_start(0, trials, t)
        t.status = "RUNNING"
    p.on_trial_result(0, trials, a, {"epoch": 1, "dev_score": 60.0, "run_status": "running"})
    p.on_trial_result(0, trials, b, {"epoch": 1, "dev_score": 65.0, "run_status": "running"})
    p.on_trial_result(0, trials, a, {"epoch": 2, "dev_score": 70.0, "run_status": "running"})
    clock.now += 10
    final = {"epoch": 2, "dev_score": 70.0, "test_score": 68.0, "run_status": "finished"}
    p.on_trial_result(0, trials, a, final)
    a.last_result = final
    p.on_trial_complete(0, trials, a)
    a.status = "TERMINATED"
    return trials


def test_counts_eta_and_best_so_far_in_plain_lines(clock):
    p = make(total=4, tty=False)
    a, b, c, d = run_two_trials(p, clock)
    out = p._stream.getvalue()
    lines = out.splitlines()
    assert any("start" in line and "t1 seed=1 m jola c1" in line for line in lines)
    # a plain line per epoch report (not a terminal), with the epoch out of the trial's epochs
    epoch_lines = [line for line in lines if " epoch " in line and "dev_score=" in line]
    assert len(epoch_lines) == 3 and "epoch 2/3 dev_score=70.00" in epoch_lines[-1]
    assert "\r" not in out
    # after a's end: 1 done of 4, b running, 2 pending. a took 10 s (the mean), b has run
    # 10 s (nothing left of the mean), 2 trials ran at once: (2 x 10 s + 0) / 2
    progress = [line for line in lines if "progress" in line][-1]
    assert "1/4 done (1 finished, 0 pruned, 0 errored), 1 running, 2 pending" in progress
    assert progress.endswith("ETA " + format_duration((2 * 10 + 0) / 2))
    best = [line for line in lines if "best dev_score" in line][-1]
    assert "t1/jola 70.00 (c1)" in best

    clock.now += 10
    b.last_result = {"epoch": 1, "dev_score": 65.0, "run_status": "running"}
    p.on_trial_complete(0, [a, b, c, d], b)
    progress = [line for line in p._stream.getvalue().splitlines() if "progress" in line][-1]
    assert "2/4 done (1 finished, 1 pruned, 0 errored), 0 running, 2 pending" in progress
    assert "pruned   t1 seed=1 m jola c2" in p._stream.getvalue()
    # b's 65 does not beat a's 70: the best line is not printed again
    assert sum("best dev_score" in line for line in p._stream.getvalue().splitlines()) == 1
    # mean of 10 s and 20 s, times 2 pending, over the 2 trials seen running at once
    assert progress.endswith("ETA " + format_duration(2 * 15 / 2))


def test_best_is_per_task_and_method_and_follows_mode(clock):
    p = make(total=3, tty=False, metric="dev_loss", mode="min")
    x, y, z = trial("x", task="t1"), trial("y", task="t2"), trial("z", task="t1", method="lofit")
    trials = [x, y, z]
    for t, losses in ((x, [0.9, 0.4, 0.6]), (y, [0.8]), (z, [0.7])):
        p.on_trial_start(0, trials, t)
        t.status = "RUNNING"
        for i, v in enumerate(losses):
            p.on_trial_result(0, trials, t, {"epoch": i + 1, "dev_loss": v})
    assert p.best_text() == (
        "best dev_loss: t1/jola 0.40 (c1), t1/lofit 0.70 (c1), t2/jola 0.80 (c1)"
    )


def test_errored_trial_is_counted(clock):
    p = make(total=2, tty=False)
    a, b = trial("a"), trial("b")
    p.on_trial_start(0, [a, b], a)
    a.status = "ERROR"  # Tune sets ERROR before calling on_trial_error
    p.on_trial_error(0, [a, b], a)
    out = p._stream.getvalue()
    assert "ERROR    t1 seed=1 m jola c1 (see /exp/a/error.txt)" in out
    assert "1/2 done (0 finished, 0 pruned, 1 errored), 0 running, 1 pending" in out


def test_terminal_gets_one_refreshing_heartbeat_line(clock):
    p = make(total=4, tty=True)
    run_two_trials(p, clock)
    out = p._stream.getvalue()
    # heartbeats are redrawn in place (\r + clear line), never as separate epoch lines
    assert "\r\033[K" in out
    assert " epoch " not in out.replace("\r\033[K", "\n").split("progress")[0].split("\n")[-1]
    heartbeats = [seg for seg in out.split("\r\033[K") if "running" in seg and "|" in seg]
    assert any("t1/s1/c1 ep2=70.0" in h and "t1/s1/c2 ep1=65.0" in h for h in heartbeats)
    # permanent lines (start, finished, progress) each end in a newline after clearing
    assert "finished t1 seed=1 m jola c1 test_score=68.00\n" in out


def test_restored_experiment_counts_trials_that_ended_before(clock):
    p = make(total=3, tty=False)
    done, pruned, new = trial("a"), trial("b", config="c2"), trial("c", config="c3")
    done.status = pruned.status = "TERMINATED"
    done.last_result = {"run_status": "finished", "best_dev_score": 55.0, "time_total_s": 30.0}
    pruned.last_result = {"run_status": "running", "dev_score": 40.0, "time_total_s": 10.0}
    p.on_trial_start(0, [done, pruned, new], new)
    new.status = "RUNNING"
    assert p.counts([done, pruned, new]) == {
        "finished": 1,
        "pruned": 1,
        "errored": 0,
        "running": 1,
        "pending": 0,
    }
    assert "t1/jola 55.00 (c1)" in p.best_text()
    assert sorted(p._durations.values()) == [10.0, 30.0]


def test_eta_estimate():
    assert estimate_eta([], [], 0, 1) == 0.0
    assert estimate_eta([], [5.0], 3, 1) is None  # nothing measured yet
    # mean 20 s: 3 pending (60 s) + a running trial 5 s in (15 s left), 2 at once
    assert estimate_eta([10.0, 30.0], [5.0], 3, 2) == pytest.approx(37.5)
    assert format_duration(None) == "?" and format_duration(125) == "2m05s"
    assert format_duration(7300) == "2h01m"


def test_a_progress_object_pickled_by_an_older_version_still_works(clock):
    """Tuner.restore unpickles the callback saved with the experiment (tuner.pkl)."""
    old = SweepProgress.__new__(SweepProgress)
    old.__dict__.update({"_t0": 0.0})  # what the previous version pickled
    old.setup()
    old._stream = io.StringIO()
    a = trial("a")
    old.on_trial_start(0, [a], a)
    assert "start    t1 seed=1 m jola c1" in old._stream.getvalue()
