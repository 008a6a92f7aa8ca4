"""Sweeps that need their own driver process: a two-node cluster, and a driver killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sweep_stubs
from expdir import read_trials, status

from jola_ray.sweep.runner import run_sweep
from jola_ray.sweep.space import parse_space

pytestmark = pytest.mark.ray

HERE = Path(__file__).resolve().parent


def stub_space(**over) -> dict:
    """The shared stub space at 3 epochs of 0.2 s each (a driver can be killed mid-sweep)."""
    return sweep_stubs.stub_space(**{"name": "proc", "fixed": {"epochs": 3, "sleep": 0.2}, **over})


def test_two_node_cluster_runs_trials_on_both_nodes(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "stub_sweep_main.py"),
            json.dumps(stub_space()),
            str(tmp_path),
            "sweep_stubs.scaled_run",
            "--two-nodes",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["counts"] == {"finished": 4, "pruned": 0, "errored": 0}
    assert len(summary["node_ids"]) == 2
    used = {t["rows"][0]["node_id"] for t in read_trials(tmp_path / "proc")}
    assert used == set(summary["node_ids"])  # trials ran on both nodes


def test_killed_driver_resumes_without_rerunning_finished_trials(ray_cluster, tmp_path):
    raw = stub_space(max_concurrent_trials=1, fixed={"epochs": 4, "sleep": 0.2})
    proc = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "stub_sweep_main.py"),
            json.dumps(raw),
            str(tmp_path),
            "sweep_stubs.scaled_run",
            "--address",
            ray_cluster["address"],
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    exp = tmp_path / "proc"
    deadline = time.monotonic() + 120
    try:
        # wait until one trial has finished and the next one has a checkpoint, then kill -9
        while time.monotonic() < deadline:
            trials = read_trials(exp) if exp.exists() else []
            done = [t for t in trials if status(t) == "finished"]
            started = [t for t in trials if status(t) != "finished" and t["rows"]]
            if done and started:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the first driver made no progress")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    before = {t["dir"].name: t["rows"] for t in read_trials(exp)}
    finished_before = {
        n for n, rows in before.items() if rows and rows[-1]["run_status"] == "finished"
    }
    assert finished_before

    space = parse_space(raw, "inline", check_registry=False)
    outcome = run_sweep(
        space,
        storage_path=str(tmp_path),
        run_fn="sweep_stubs.scaled_run",
        make_config="sweep_stubs.identity",
        say=lambda s: None,
    )
    assert outcome.resumed
    after = {t["dir"].name: t for t in read_trials(exp)}
    assert len(after) == 4 and all(status(t) == "finished" for t in after.values())
    for name in finished_before:  # finished trials did not run again
        assert after[name]["rows"] == before[name]
    for name, rows in before.items():
        if name in finished_before or not rows:
            continue
        # an interrupted trial resumed from its last checkpoint (an epoch it had reported)
        resumed_rows = after[name]["rows"][len(rows) :]
        assert resumed_rows[0]["start_epoch"] > 1
        assert resumed_rows[0]["start_epoch"] <= rows[-1]["epoch"] + 1


@pytest.mark.slow
def test_dashboard_api_answers_with_the_token_and_lists_the_trials(tmp_path):
    """Ray 2.60 starts a local cluster with token authentication: without the token the
    dashboard's API answers 401; with the token the sweep printed the location of, it lists
    the sweep's trial actors under their names (not ``ImplicitFunc``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env.pop("RAY_AUTH_TOKEN", None)
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    env["HOME"] = str(tmp_path / "home")  # Ray writes a fresh token to $HOME/.ray/auth_token
    proc = subprocess.run(
        [sys.executable, str(HERE / "dashboard_main.py"), str(tmp_path / "exp")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["url"].startswith("http://127.0.0.1:")
    token_file = tmp_path / "home" / ".ray" / "auth_token"
    assert token_file.read_text().strip()
    said = "\n".join(out["said"])
    assert f"Ray dashboard: {out['url']}" in said
    assert str(token_file) in said and "Authorization: Bearer" in said
    assert out["no_token"] == 401
    assert out["with_token"] == 200
    assert len(out["reprs"]) == 2
    # the project's Grafana dashboard sits beside Ray's own provisioned dashboards
    grafana = Path(out["grafana"])
    assert (
        grafana.parent.name == "dashboards"
        and (grafana.parent / "default_grafana_dashboard.json").exists()
    )
    assert json.loads(grafana.read_text())["uid"] == "jola-ray-trials"
    for config in ("c1", "c2"):
        (text,) = [r for r in out["reprs"] if f"demo_a-s1-jola-{config}-" in r]
        assert "demo_a seed=1 m jola" in text and "lr=" in text
