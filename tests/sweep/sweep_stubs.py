"""Stub runs for the sweep tests: the train contract's shape, no model, milliseconds per epoch.

Workers import this module by name (tests/sweep is put on PYTHONPATH before Ray starts), and the
sweep receives these functions as dotted paths, as it receives ``jola_ray.train.run``.

Each stub takes the flat config dict (``make_config = sweep_stubs.identity``), reports once per
epoch with a checkpoint holding ``state.json`` (the last epoch done), and once more at the end
with ``run_status="finished"`` and test metrics, at the same epoch as the last one trained.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

# Per-task metric scale: demo_b's scores are 10x demo_a's (pooled ASHA prunes demo_a).
TASK_SCALE = {"demo_a": 1.0, "demo_b": 10.0}


def stub_space(**over) -> dict:
    """The search space (a raw mapping) the sweep tests run these stubs over: two stub tasks,
    one seed, two JoLA configurations, 2 epochs, FIFO, one CPU per trial, no retries; ``over``
    replaces top-level keys. Parse it with ``check_registry=False`` (its tasks and model are
    the stubs')."""
    raw = {
        "name": "stub",
        "tasks": ["demo_a", "demo_b"],
        "seeds": [1],
        "models": ["m"],
        "methods": ["jola"],
        "configs": [{"name": "c1", "lr": 0.2}, {"name": "c2", "lr": 0.1}],
        "fixed": {"epochs": 2},
        "scheduler": {"type": "fifo"},
        "resources": {"cpu": 1, "gpu": 0},
        "max_failures": 0,
    }
    raw.update(over)
    return raw


def identity(flat: dict) -> dict:
    return dict(flat)


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def score(cfg: dict, epoch: int) -> float:
    """Dev score of a stub trial: grows with lr and epoch, scaled per task (independent of order)."""
    return TASK_SCALE.get(cfg["task"], 1.0) * cfg.get("lr", 1.0) * (1 + 0.1 * epoch)


def _start_epoch(resume_from: str | None) -> int:
    if not resume_from:
        return 1
    with open(os.path.join(resume_from, "state.json")) as f:
        return json.load(f)["epoch"] + 1


def _checkpoint(report, metrics: dict, epoch: int, extra: dict | None = None) -> None:
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "state.json"), "w") as f:
            json.dump({"epoch": epoch, **(extra or {})}, f)
        report(metrics, d)


def scaled_run(cfg: dict, report, resume_from: str | None = None) -> dict:
    """Epochs of ``score``; the final report repeats the last epoch with test metrics."""
    epochs = cfg["epochs"]
    start = _start_epoch(resume_from)
    node = _node_id()
    metrics = {}
    for epoch in range(start, epochs + 1):
        time.sleep(cfg.get("sleep", 0.0))
        dev = score(cfg, epoch)
        metrics = {
            "epoch": epoch,
            "step": epoch * 10,
            "dev_score": dev,
            "dev_loss": 1.0 / (1.0 + dev),
            "open_gate_fraction": 0.5,
            "run_status": "running",
            "node_id": node,
            "start_epoch": start,
        }
        _checkpoint(report, metrics, epoch)
    final = {**metrics, "test_score": metrics.get("dev_score", 0.0), "run_status": "finished"}
    _checkpoint(report, final, epochs)
    return final


def flaky_run(cfg: dict, report, resume_from: str | None = None) -> dict:
    """Fails once after epoch ``fail_after`` (marker file in ``marker_dir``), then resumes."""
    marker = os.path.join(cfg["marker_dir"], f"{cfg['task']}-{cfg['seed']}-{cfg['lr']}")
    start = _start_epoch(resume_from)
    for epoch in range(start, cfg["epochs"] + 1):
        metrics = {
            "epoch": epoch,
            "dev_score": score(cfg, epoch),
            "run_status": "running",
            "start_epoch": start,
        }
        _checkpoint(report, metrics, epoch)
        if epoch == cfg["fail_after"] and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("injected failure (a worker died)")
    final = {**metrics, "test_score": 1.0, "run_status": "finished"}
    _checkpoint(report, final, cfg["epochs"])
    return final


def bad_run(cfg: dict, report, resume_from: str | None = None) -> dict:
    """Fails for task ``demo_b`` (a non-finite loss), runs normally otherwise."""
    if cfg["task"] == "demo_b":
        raise FloatingPointError("non-finite training loss at step 3")
    return scaled_run(cfg, report, resume_from)


def metrics_run(cfg: dict, report, resume_from: str | None = None) -> dict:
    """Reports epoch 1, then holds (0.1 s naps) until ``release_file`` exists, at most 60 s,
    so a test can scrape the live Gauges while the trial is running."""
    metrics = {
        "epoch": 1,
        "step": 7,
        "dev_score": 42.5,
        "dev_loss": 0.25,
        "open_gate_fraction": 0.75,
        "run_status": "running",
    }
    _checkpoint(report, metrics, 1)
    deadline = time.monotonic() + 60
    while not os.path.exists(cfg["release_file"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    final = {**metrics, "test_score": 1.0, "run_status": "finished"}
    _checkpoint(report, final, 1)
    return final


def run_pack_failing_once(cfgs, report=None, resume_from=None, **kwargs):
    """The real ``run_pack``, whose worker dies after the pack's first checkpoint on the first
    attempt (a marker file beside the pack's directory remembers it); Tune retries the trial
    from that checkpoint."""
    from pathlib import Path

    from jola_ray.train.pack import run_pack

    marker = Path(kwargs["pack_dir"]).parent / "failed_once"

    def dying(rows, checkpoint_dir):
        report(rows, checkpoint_dir)
        if not marker.exists():
            marker.write_text("1")
            raise RuntimeError("simulated worker failure after the first pack checkpoint")

    return run_pack(cfgs, report=dying, resume_from=resume_from, **kwargs)


def run_pack_damaged_once(cfgs, report=None, resume_from=None, **kwargs):
    """The real ``run_pack``, whose worker, on the first attempt, truncates the newest stored
    pack checkpoint's ``pack_state.json`` after the second one and dies: the retry must fall
    back to the first checkpoint."""
    from pathlib import Path

    from jola_ray.train.pack import run_pack

    trial_dir = Path(kwargs["pack_dir"]).parent
    marker = trial_dir / "damaged_once"
    seen = []

    def dying(rows, checkpoint_dir):
        report(rows, checkpoint_dir)
        seen.append(1)
        if len(seen) == 2 and not marker.exists():
            marker.write_text("1")
            from ray.train._internal.session import get_storage

            stored = Path(get_storage().trial_fs_path)  # where Tune keeps the checkpoints
            newest = sorted(stored.glob("checkpoint_*"))[-1]
            state = newest / "pack_state.json"
            state.write_text(state.read_text()[:10])
            raise RuntimeError("simulated worker failure after a damaged pack checkpoint")

    return run_pack(cfgs, report=dying, resume_from=resume_from, **kwargs)


def permanent_run(cfg: dict, report, resume_from: str | None = None) -> dict:
    """Fails for task ``demo_b`` with a failure that repeats identically (a non-finite loss at
    the same seed); each attempt appends a line to ``attempts_file``."""
    from jola_ray.errors import TrainingError

    if cfg["task"] == "demo_b":
        with open(cfg["attempts_file"], "a") as fh:
            fh.write("attempt\n")
        raise TrainingError("non-finite training loss at step 3 (epoch 0.50)")
    return scaled_run(cfg, report, resume_from)


def _install_full_disk(flag: str) -> None:
    """While ``flag`` exists, copying a checkpoint into storage fails as on a full disk
    (ENOSPC from pyarrow's copy, where Ray persists every reported checkpoint)."""
    import errno

    from ray.train._internal import storage

    original = getattr(storage._pyarrow_fs_copy_files, "_original", storage._pyarrow_fs_copy_files)

    def copy(*args, **kwargs):
        if os.path.exists(flag):
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(*args, **kwargs)

    copy._original = original
    storage._pyarrow_fs_copy_files = copy


def full_disk_run(cfg: dict, report, resume_from: str | None = None) -> dict:
    """``scaled_run`` on a storage that is full while ``cfg['disk_full_flag']`` exists; the
    stub fills it itself after ``fill_after`` epochs of the first trial of task demo_b."""
    _install_full_disk(cfg["disk_full_flag"])
    if cfg["task"] == "demo_b" and not os.path.exists(cfg["disk_full_flag"] + ".done"):

        def filling_report(metrics, checkpoint_dir):
            if metrics.get("epoch") == cfg["fill_after"] + 1:
                open(cfg["disk_full_flag"], "w").close()
                open(cfg["disk_full_flag"] + ".done", "w").close()
            report(metrics, checkpoint_dir)

        return scaled_run(cfg, filling_report, resume_from)
    return scaled_run(cfg, report, resume_from)


def checked_run(cfg: dict, report, resume_from: str | None = None) -> dict:
    """``scaled_run`` that checks its checkpoint as the real run does (CheckpointError naming
    the file), and on its first attempt damages its newest checkpoint in storage after epoch
    ``fail_after`` (``damage``: ``truncate`` its state.json, or ``delete`` the directory), then
    dies, so the retry meets the damaged checkpoint."""
    from ray import tune

    from jola_ray.errors import CheckpointError

    if resume_from:
        path = os.path.join(resume_from, "state.json")
        try:
            with open(path) as fh:
                json.load(fh)
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{path}: unreadable ({err})", path) from None
    trial_id = tune.get_context().get_trial_id()
    marker = os.path.join(cfg["marker_dir"], trial_id)

    def damaging_report(metrics, checkpoint_dir):
        report(metrics, checkpoint_dir)
        if metrics.get("epoch") == cfg["fail_after"] and not os.path.exists(marker):
            open(marker, "w").close()
            import glob
            import shutil

            (trial_dir,) = glob.glob(os.path.join(cfg["exp_dir"], f"*-{trial_id}"))
            newest = sorted(glob.glob(os.path.join(trial_dir, "checkpoint_*")))[-1]
            if cfg["damage"] == "delete":
                shutil.rmtree(newest)
            else:
                with open(os.path.join(newest, "state.json"), "w") as fh:
                    fh.write('{"epo')
            raise RuntimeError("injected failure after damaging the checkpoint")

    return scaled_run(cfg, damaging_report, resume_from)
