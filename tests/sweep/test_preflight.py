"""Checks before Ray starts: models, metric, duplicate YAML keys, a directory as the space, an
experiment directory others can write, and the experiment lock (no Ray started here)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import yaml

from jola_ray.cli import main
from jola_ray.errors import ConfigError, ExperimentRefusedError
from jola_ray.sweep.lock import LOCK_FILE, ExperimentLock
from jola_ray.sweep.space import load_space


def small_space(**over) -> dict:
    raw = {
        "name": "t",
        "tasks": ["demo_vowel", "demo_parity"],
        "seeds": [1],
        "models": ["tiny-llama"],
        "methods": ["jola"],
        "configs": [{"name": "a", "lr": 0.01}],
        "fixed": {"epochs": 2, "train_size": 8},
        "resources": {"cpu": 1, "gpu": 0},
    }
    raw.update(over)
    return raw


def dry_run(tmp_path, capsys, raw=None, text=None) -> tuple[int, str]:
    path = tmp_path / "space.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(raw))
    rc = main(["sweep", str(path), "--dry-run"])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("tiny-nosucharch", "unknown tiny model 'tiny-nosucharch'"),
        ("./no/such/model", "no such local model directory"),
        ("bad id with spaces", "neither a local directory, a tiny-<arch> nor a hub id"),
    ],
)
def test_a_model_that_cannot_load_fails_the_dry_run(tmp_path, capsys, model, words):
    rc, err = dry_run(tmp_path, capsys, small_space(models=["tiny-llama", model]))
    assert rc == 2 and words in err
    assert "tiny-llama" not in err.split(words)[0].split("models:")[-1]  # the good one passes


def test_a_local_model_directory_needs_a_config(tmp_path, capsys):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    rc, err = dry_run(tmp_path, capsys, small_space(models=[str(model_dir)]))
    assert rc == 2 and "holds no config.json" in err
    (model_dir / "config.json").write_text("{}")
    rc, _ = dry_run(tmp_path, capsys, small_space(models=[str(model_dir)]))
    assert rc == 0


def test_a_well_formed_hub_id_passes_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing to ask: the trial will say
    rc, _ = dry_run(tmp_path, capsys, small_space(models=["meta-llama/Llama-3.1-8B-Instruct"]))
    assert rc == 0


def test_a_misspelled_metric_fails_the_dry_run(tmp_path, capsys):
    rc, err = dry_run(tmp_path, capsys, small_space(metric="dev_scor"))
    assert (
        rc == 2 and "metric: 'dev_scor' is not reported" in err and "did you mean dev_score" in err
    )
    rc, err = dry_run(tmp_path, capsys, small_space(metric="test_score"))
    assert rc == 2 and "arrive only at the end" in err
    rc, _ = dry_run(tmp_path, capsys, small_space(metric="dev_accuracy", mode="max"))
    assert rc == 0  # the tasks' own dev metric is reported every epoch


def test_duplicate_keys_are_refused_naming_both_lines(tmp_path, capsys):
    text = yaml.safe_dump(small_space(), sort_keys=False) + "metric: dev_loss\nmetric: dev_score\n"
    lines = text.splitlines()
    first = lines.index("metric: dev_loss") + 1
    rc, err = dry_run(tmp_path, capsys, text=text)
    assert rc == 2
    assert f"key 'metric' at line {first + 1} repeats line {first}" in err
    nested = "configs:\n- name: a\n  lr: 0.1\n  lr: 0.2\n"
    with pytest.raises(ConfigError, match="key 'lr' at line 4 repeats line 3"):
        (tmp_path / "n.yaml").write_text(nested)
        load_space(tmp_path / "n.yaml")


def test_a_directory_as_the_space_says_it_is_a_directory(tmp_path, capsys):
    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "mine.yaml").write_text("x: 1\n")
    rc = main(["sweep", str(tmp_path / "spaces"), "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 2 and "is a directory, not a YAML file; it holds mine.yaml" in err
    assert "no such file" not in err


def _fake_experiment(tmp_path):
    exp = tmp_path / "store" / "exp"
    exp.mkdir(parents=True)
    (exp / "tuner.pkl").write_bytes(b"\x80\x04N.")  # a pickle (of None)
    (exp / "experiment_state-2026.json").write_text("{}")
    return exp


def test_resuming_from_a_directory_others_can_write_is_refused(tmp_path):
    from jola_ray.sweep.runner import run_sweep
    from jola_ray.sweep.space import parse_space

    exp = _fake_experiment(tmp_path)
    os.chmod(exp / "tuner.pkl", 0o666)
    space = parse_space(small_space(name="exp"), "inline", check_registry=False)
    with pytest.raises(ExperimentRefusedError, match="--trust-experiment-dir") as info:
        run_sweep(space, storage_path=str(tmp_path / "store"), say=lambda s: None)
    assert "tuner.pkl" in str(info.value) and "group or others can write" in str(info.value)
    assert info.value.exit_code == 4
    assert not (exp / LOCK_FILE).exists()  # the lock is released on the way out


def test_the_lock_of_a_dead_sweep_on_this_host_is_taken_over(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    owner = {"host": socket.gethostname(), "pid": dead.pid, "started": "then"}
    (exp / LOCK_FILE).write_text(json.dumps(owner))
    said = []
    with ExperimentLock(str(exp), said.append):
        assert json.loads((exp / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert said and f"pid {dead.pid}" in said[0] and "taking over" in said[0]
    assert not (exp / LOCK_FILE).exists()


@pytest.mark.parametrize("where", ["other host", "live pid"])
def test_a_live_or_foreign_lock_is_refused_with_its_owner(tmp_path, where):
    exp = tmp_path / "exp"
    exp.mkdir()
    host = "gpu-node-7" if where == "other host" else socket.gethostname()
    owner = {"host": host, "pid": os.getppid(), "started": "2026-12-01T10:00:00Z"}
    (exp / LOCK_FILE).write_text(json.dumps(owner))
    with pytest.raises(ExperimentRefusedError, match=f"host '{host}', pid {os.getppid()}"):
        ExperimentLock(str(exp)).acquire()
    assert json.loads((exp / LOCK_FILE).read_text()) == owner  # left alone
