"""Sweeps (stub runs, the shared local Ray) that meet a bad checkpoint, a full disk, a second
sweep on the same experiment, and a failure that would repeat identically."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sweep_stubs
from expdir import by_task_config, read_trials, status
from sweep_stubs import score

from jola_ray.errors import ExperimentRefusedError, StorageError
from jola_ray.sweep.lock import LOCK_FILE
from jola_ray.sweep.runner import run_sweep
from jola_ray.sweep.space import parse_space

pytestmark = pytest.mark.ray

HERE = Path(__file__).resolve().parent


# the shared stub space with one configuration, 3 epochs and one retry
OWN = {"name": "rec", "configs": [{"name": "c1", "lr": 0.2}], "fixed": {"epochs": 3}}


def stub_space(**over) -> dict:
    return sweep_stubs.stub_space(**{**OWN, "max_failures": 1, **over})


def sweep(tmp_path, raw, run_fn, said=None):
    space = parse_space(raw, "inline", check_registry=False)
    said = said if said is not None else []
    outcome = run_sweep(
        space,
        storage_path=str(tmp_path),
        run_fn=run_fn,
        make_config="sweep_stubs.identity",
        say=said.append,
    )
    return outcome


def assert_undisturbed(trials, epochs=3):
    """Every trial finished with the scores an undisturbed stub run computes."""
    assert trials and all(status(t) == "finished" for t in trials)
    for t in trials:
        cfg = {"task": t["params"]["task"], "lr": t["params"]["hp"]["lr"]}
        final = t["rows"][-1]
        assert final["test_score"] == pytest.approx(score(cfg, epochs))
        firsts = {}
        rows = [r for r in t["rows"] if r["run_status"] in ("running", "finished")]
        for r in rows[:-1]:  # each epoch's first report: its score is the epoch's
            firsts.setdefault(r["epoch"], r["dev_score"])
        assert firsts == {e: pytest.approx(score(cfg, e)) for e in range(1, epochs + 1)}


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_damaged_checkpoint_falls_back_to_the_one_before(ray_cluster, tmp_path, damage, capfd):
    exp = tmp_path / "rec"
    fixed = {"epochs": 3, "fail_after": 2, "damage": damage, "exp_dir": str(exp)}
    fixed["marker_dir"] = str(tmp_path)
    outcome = sweep(tmp_path, stub_space(fixed=fixed), "sweep_stubs.checked_run")
    assert outcome.exit_code == 0, outcome.statuses
    trials = read_trials(exp)
    assert len(trials) == 2
    assert_undisturbed(trials)
    for t in trials:
        resumed = [r for r in t["rows"] if r.get("start_epoch", 1) > 1]
        assert resumed and resumed[0]["start_epoch"] == 2  # from epoch 1's checkpoint, not 0
        if damage == "truncate":
            # the warning names the bad file, in the results and on the terminal
            assert "state.json" in resumed[0]["warning"] and "older" in resumed[0]["warning"]
    out = capfd.readouterr()
    if damage == "delete":  # repaired on the driver before Ray restores the trial
        assert "is gone; resuming from" in out.err
    else:
        assert "warning: trial" in out.out and "state.json" in out.out


def test_a_failure_that_repeats_is_not_retried(ray_cluster, tmp_path):
    attempts = tmp_path / "attempts"
    raw = stub_space(max_failures=3, fixed={"epochs": 2, "attempts_file": str(attempts)})
    outcome = sweep(tmp_path, raw, "sweep_stubs.permanent_run")
    assert attempts.read_text().count("attempt") == 1  # once, not 1 + max_failures times
    trials = by_task_config(read_trials(tmp_path / "rec"))
    assert status(trials[("demo_b", "c1")]) == "errored"
    assert "non-finite training loss at step 3" in trials[("demo_b", "c1")]["error"]
    assert status(trials[("demo_a", "c1")]) == "finished"
    assert outcome.counts()["errored"] == 1 and outcome.exit_code == 1


def test_a_full_disk_stops_the_sweep_resumably(ray_cluster, tmp_path):
    flag = tmp_path / "disk_full"
    fixed = {"epochs": 3, "disk_full_flag": str(flag), "fill_after": 1}
    raw = stub_space(fixed=fixed, max_concurrent_trials=1, tasks=["demo_b", "demo_a"])
    with pytest.raises(StorageError, match="No space left on device") as info:
        sweep(tmp_path, raw, "sweep_stubs.full_disk_run")
    assert info.value.exit_code == 3 and "run the same command again" in str(info.value)
    assert str(tmp_path / "rec") in str(info.value)
    before = read_trials(tmp_path / "rec")
    assert not any(status(t) == "finished" for t in before if t["params"]["task"] == "demo_b")

    flag.unlink()  # space freed
    outcome = sweep(tmp_path, raw, "sweep_stubs.full_disk_run")
    assert outcome.resumed and outcome.exit_code == 0, outcome.statuses
    trials = read_trials(tmp_path / "rec")
    assert len(trials) == 2
    assert_undisturbed(trials)
    demo_b = by_task_config(trials)[("demo_b", "c1")]
    assert [r for r in demo_b["rows"] if r.get("start_epoch", 1) > 1]  # resumed, not restarted


def test_a_second_sweep_on_the_same_experiment_is_refused(ray_cluster, tmp_path):
    raw = stub_space(fixed={"epochs": 4, "sleep": 0.5}, max_concurrent_trials=1)
    first = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "stub_sweep_main.py"),
            json.dumps(raw),
            str(tmp_path),
            "sweep_stubs.scaled_run",
            "--address",
            ray_cluster["address"],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )
    lock = tmp_path / "rec" / LOCK_FILE
    deadline = time.monotonic() + 60
    while not lock.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lock.exists(), "the first sweep never took the lock"
    with pytest.raises(ExperimentRefusedError, match=f"pid {first.pid}") as info:
        sweep(tmp_path, raw, "sweep_stubs.scaled_run")
    assert info.value.exit_code == 4 and "in use by another sweep" in str(info.value)
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out[-3000:]
    trials = read_trials(tmp_path / "rec")
    assert len(trials) == 2  # one grid's trials, not two
    assert all(status(t) == "finished" for t in trials)
    assert not lock.exists()  # released at the end
