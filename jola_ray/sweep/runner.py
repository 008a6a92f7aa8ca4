"""Build (or restore) the Ray Tune experiment of a search space, run it, summarise it.

The experiment lands in ``STORAGE/NAME/`` (Ray's layout, docs/contracts.md). Next to Ray's
files it keeps ``jola_sweep.json`` (the space's fingerprint, file and grid size) and a copy of
the space (``search_space.yaml``). Running the same command again restores the experiment:
finished and pruned trials stay as they are, unfinished and errored ones resume from their last
checkpoint. A space whose fingerprint differs from the stored one is refused.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.load import RAY_OPEN, ray_statuses, resolve
from jola_ray.errors import ConfigError
from jola_ray.sweep import DEFAULT_MAKE_CONFIG, DEFAULT_RUN, DEFAULT_RUN_PACK
from jola_ray.sweep.space import TRIAL_KEY, SearchSpace, resolved_max_t, trial_of

MARKER = "jola_sweep.json"
SPACE_COPY = "search_space.yaml"
DEFAULT_STORAGE = "./ray_results"


@dataclass
class SweepOutcome:
    """What a sweep did: where it is, each trial's status, and Ray's results."""

    experiment_path: str
    statuses: dict[str, str]  # trial_id -> finished | pruned | errored | unfinished
    wall_s: float
    resumed: bool
    results: Any = None  # ray.tune.ResultGrid
    notes: list[str] = field(default_factory=list)
    grid_size: int = 0  # trials in the space; more than len(statuses) if interrupted early

    def counts(self) -> dict[str, int]:
        out = {"finished": 0, "pruned": 0, "errored": 0}
        for status in self.statuses.values():
            out[status] = out.get(status, 0) + 1
        not_started = self.grid_size - len(self.statuses)
        if not_started > 0:
            out["unfinished"] = out.get("unfinished", 0) + not_started
        return out

    @property
    def exit_code(self) -> int:
        """1 if a trial errored, 130 if interrupted with trials unfinished, else 0."""
        counts = self.counts()
        if counts["errored"]:
            return 1
        return 130 if counts.get("unfinished") else 0


def is_uri(path: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path))


def experiment_location(space: SearchSpace, storage_path: str | None, name: str | None):
    """(storage, name, experiment path): flag, else the space's, else ./ray_results; abs paths."""
    storage = storage_path or space.storage_path or DEFAULT_STORAGE
    if not is_uri(storage):
        storage = str(Path(storage).expanduser().resolve())
    name = name or space.name
    return storage, name, f"{storage.rstrip('/')}/{name}"


def _read_text(path: str) -> str | None:
    fs, inner = resolve(path)
    try:
        with fs.open_input_stream(inner) as f:
            return f.read().decode()
    except (FileNotFoundError, OSError):
        return None


def _write_text(path: str, text: str) -> None:
    fs, inner = resolve(path)
    fs.create_dir(inner.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(inner) as f:
        f.write(text.encode())


def trial_dirname(trial) -> str:
    """Short trial directory names: task-s<seed>-<method>-<config>-<trial id>."""
    c = trial_of(trial.config)
    hp = c.get("hp", {}).get("config_name", "x")
    prefix = f"{c.get('task')}-s{c.get('seed')}-{c.get('method')}-{hp}"
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", prefix)[:100] + f"-{trial.trial_id}"


def trial_name(trial) -> str:
    """Ray's name of a trial (its logs, experiment state, the actor's repr):
    task-s<seed>-<method>-<config>[-<axis>=<value>...]-<trial id>."""
    from jola_ray.sweep.progress import extra_axes_label

    c = trial_of(trial.config)
    hp = c.get("hp", {}).get("config_name", "x")
    parts = [str(c.get("task")), f"s{c.get('seed')}", str(c.get("method")), str(hp)]
    parts += extra_axes_label(c).split()
    return "-".join(parts) + f"-{trial.trial_id}"


def grid_point(trial: dict) -> dict:
    """A trial dict's identity in the report: its axes and configuration name."""
    point = {k: v for k, v in trial.items() if k not in ("hp", "fixed", "group")}
    point["config_name"] = trial["hp"]["config_name"]
    return point


def _status(result, ray_status: str | None) -> str:
    """The contract's status of one trial; ``unfinished`` while Ray's saved experiment state
    lists it as pending, running or paused (the sweep was interrupted)."""
    if (result.metrics or {}).get("run_status") == "finished":
        return "finished"
    if (result.metrics or {}).get("run_status") in ("errored", "storage_error"):
        return "errored" if ray_status not in RAY_OPEN else "unfinished"
    if result.error is not None or ray_status == "ERROR":
        return "errored"
    if ray_status in RAY_OPEN:
        return "unfinished"
    return "pruned"


def _statuses(results, exp_path: str) -> dict[str, str]:
    """trial_id -> status for every trial Ray created; a pack counts each configuration
    (``<trial_id>_<k>``, from its member directory) as the trials table does."""
    ray_status = ray_statuses(exp_path)
    out = {}
    for result in results:
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name.rsplit("-", 1)[
            -1
        ]
        status = _status(result, ray_status.get(trial_id))
        trial = trial_of(result.config or {})
        if "pack" not in trial:
            out[trial_id] = status
            continue
        for k, member_status in enumerate(_member_statuses(result, trial, status)):
            out[f"{trial_id}_{k}"] = member_status
    return out


def _member_statuses(result, trial: dict, pack_status: str) -> list[str]:
    """Each member's status: finished if its rows say so, else the pack's when the pack did
    not finish (errored, unfinished), else pruned (stopped inside the pack)."""
    from analysis.load import read_result_rows
    from jola_ray.sweep.packs import member_dirname
    from jola_ray.sweep.space import members

    fs, path = resolve(result.path)
    parent, pack_name = path.rstrip("/").rsplit("/", 1)
    out = []
    for member in members(trial):
        where = f"{parent}/{member_dirname(pack_name, member['hp']['config_name'])}"
        try:
            rows = read_result_rows(fs, where)
        except (FileNotFoundError, OSError):
            rows = []
        if any(r.get("run_status") == "finished" for r in rows):
            out.append("finished")
        else:
            out.append(pack_status if pack_status != "finished" else "pruned")
    return out


def _trainable(
    resources: dict,
    run_fn,
    make_config,
    metric: str = "dev_score",
    pack_setup=None,
    run_pack_fn=None,
):
    from ray import tune

    from jola_ray.sweep.trainable import named_trainable, sweep_trial

    fn = tune.with_parameters(
        sweep_trial,
        run_fn=run_fn,
        make_config=make_config,
        metric=metric,
        pack_setup=pack_setup,
        run_pack_fn=run_pack_fn or DEFAULT_RUN_PACK,
    )
    fn = tune.with_resources(fn, {k: v for k, v in resources.items() if v})
    return named_trainable(fn)


def _scheduler(space: SearchSpace):
    from ray.tune.schedulers import FIFOScheduler

    from jola_ray.sweep.scheduler import GroupedASHA

    if space.scheduler.type == "fifo":
        return FIFOScheduler()
    sch = space.scheduler
    return GroupedASHA(
        max_t=resolved_max_t(space),
        grace_period=sch.grace_period,
        reduction_factor=sch.reduction_factor,
        brackets=sch.brackets,
    )


def _pack_setup(space: SearchSpace) -> dict | None:
    """What a pack trial needs: the metric it reports for Tune and, under ASHA, its rungs
    (successive halving inside the pack); None without packs."""
    if not space.pack:
        return None
    sch = space.scheduler
    rungs = None
    if sch.type == "asha":
        rungs = {
            "metric": space.metric,
            "mode": space.mode,
            "grace_period": sch.grace_period,
            "reduction_factor": sch.reduction_factor,
            "max_t": resolved_max_t(space),
        }
    return {"metric": space.metric, "mode": space.mode, "rungs": rungs}


def _new_tuner(
    space: SearchSpace,
    storage: str,
    name: str,
    trainable,
    callbacks,
    scheduler,
    reuse_actors,
):
    from ray import tune

    from jola_ray.sweep.recovery import CheckpointRepair, FailureGuard

    trials = space.trials()
    tune_config = tune.TuneConfig(
        metric=space.metric,
        mode=space.mode,
        scheduler=scheduler if scheduler is not None else _scheduler(space),
        num_samples=1,  # one pass over the grid: each trial dict once
        max_concurrent_trials=space.max_concurrent_trials,
        trial_dirname_creator=trial_dirname,
        trial_name_creator=trial_name,
        reuse_actors=reuse_actors,
    )
    run_config = tune.RunConfig(
        name=name,
        storage_path=storage,
        failure_config=tune.FailureConfig(max_failures=space.max_failures),
        # two kept: a trial whose newest checkpoint is corrupt falls back to the one before
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=[*callbacks, CheckpointRepair(), FailureGuard()],
        verbose=0,
    )
    # The expanded trial dicts as one grid axis, as Ray's own examples pass a list of configs:
    # Ray's BasicVariantGenerator serves them and keeps its position in its own state on
    # restore; nothing of this project is pickled into the experiment.
    param_space = {TRIAL_KEY: tune.grid_search(trials)}
    return tune.Tuner(
        trainable, param_space=param_space, tune_config=tune_config, run_config=run_config
    )


def run_sweep(
    space: SearchSpace,
    storage_path: str | None = None,
    name: str | None = None,
    address: str | None = None,
    dashboard: bool = False,
    run_fn: str | Callable = DEFAULT_RUN,
    make_config: str | Callable = DEFAULT_MAKE_CONFIG,
    say: Callable[[str], None] | None = None,
    scheduler=None,
    reuse_actors: bool | None = None,
    metrics_export_port: int | None = None,
    log_to: list[str] | None = None,
    run_pack_fn: str | Callable = DEFAULT_RUN_PACK,
    trust_experiment_dir: bool = False,
) -> SweepOutcome:
    """Run (or resume) the sweep of ``space``; see the module docstring.

    ``run_fn``/``make_config`` are what each trial runs (dotted paths or callables; stubs in
    tests), ``run_pack_fn`` what a pack trial runs (``jola_ray.train.resident.run_pack_in_worker``: ``run_pack`` with the worker's kept model);
    ``scheduler`` replaces the space's (a comparison with Ray's pooled ASHA).
    ``reuse_actors`` keeps worker processes between trials (default None: on GPU as on CPU),
    which saves each trial the import of torch/transformers/TRL (seconds) and, with the default
    run, the base model's load: the worker's ``jola_ray.train.resident.WORKER`` keeps the frozen
    model, the splits and their tokenized datasets, and releases each finished trial's memory
    explicitly (trainer, optimizer, edit, CUDA cache), so a reused GPU worker holds no more than
    its model between trials (Ray issue #30414 concerned memory left by the trial itself).
    ``False`` gives every trial a fresh process. ``metrics_export_port``
    exports a local Ray's Prometheus metrics on that port; ``log_to`` names experiment trackers
    (tensorboard, wandb, mlflow: Ray Tune's logger callbacks, ``jola_ray.sweep.trackers``).

    ``trust_experiment_dir`` resumes even when other users can write the experiment
    directory (a resume unpickles Ray's state from it; docs/cluster.md).

    Raises:
        ConfigError: the experiment exists and was started from a different space.
        ExperimentRefusedError: another sweep holds the experiment's lock, or other users can
            write the experiment directory.
        StorageError: the storage cannot be written (full disk); the experiment stays
            resumable.
    """
    # Ray's own table output is replaced by SweepProgress lines (legacy engine + verbose=0).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    from jola_ray.sweep.cluster import bind_local_to_loopback

    bind_local_to_loopback(address)
    from jola_ray.sweep.lock import ExperimentLock
    from jola_ray.sweep.recovery import is_storage_error, storage_error
    from jola_ray.sweep.trackers import parse_trackers

    say = say or (lambda s: print(s, flush=True))
    trackers = parse_trackers(log_to)  # a missing package is refused before Ray starts
    storage, name, exp_path = experiment_location(space, storage_path, name)
    lock = ExperimentLock(exp_path, say)
    try:
        lock.acquire()
    except OSError as err:
        if is_storage_error(err):
            raise storage_error(err, exp_path) from err
        raise
    try:
        return _run_locked(
            space, storage, name, exp_path, address, dashboard, run_fn, make_config, say,
            scheduler, reuse_actors, trust_experiment_dir, metrics_export_port, trackers,
            run_pack_fn,
        )  # fmt: skip
    finally:
        lock.release()


def _run_locked(
    space, storage, name, exp_path, address, dashboard, run_fn, make_config, say, scheduler,
    reuse_actors, trust_experiment_dir, metrics_export_port, trackers,
    run_pack_fn=DEFAULT_RUN_PACK,
) -> SweepOutcome:  # fmt: skip
    from ray import tune

    from jola_ray.sweep import recovery
    from jola_ray.sweep.cluster import connect, trial_resources
    from jola_ray.sweep.preflight import check_experiment_permissions
    from jola_ray.sweep.progress import SweepProgress
    from jola_ray.sweep.trackers import tracker_callbacks

    fingerprint = space.fingerprint()
    marker_text = _read_text(f"{exp_path}/{MARKER}")
    resumable = tune.Tuner.can_restore(exp_path)
    if resumable and marker_text:
        stored = json.loads(marker_text).get("fingerprint")
        if stored != fingerprint:
            raise ConfigError(
                f"{exp_path} holds an experiment started from a different search space "
                f"(fingerprint {stored} there, {fingerprint} now; file {space.source}). "
                f"Resuming it with a changed space would mix two grids. Start a new experiment "
                f"with --name NEW_NAME (or another --storage-path), or restore the old space file."
            )
    if resumable:
        check_experiment_permissions(exp_path, trust=trust_experiment_dir)
        recovery.repair_state_files(exp_path, say)

    recovery.FailureGuard.reset()
    cluster = connect(address=address, dashboard=dashboard, metrics_export_port=metrics_export_port)
    notes = []
    try:
        if cluster.dashboard_url:
            from jola_ray.sweep.cluster import dashboard_access

            for line in dashboard_access(cluster.dashboard_url):
                say(line)
        elif dashboard:
            say("no Ray dashboard: an existing cluster's dashboard is where it was started")
        if cluster.metrics_url:
            say(f"Prometheus metrics: {cluster.metrics_url} (ray_jola_trial_*)")
        if cluster.started_here and (cluster.metrics_url or cluster.dashboard_url):
            from jola_ray.sweep.cluster import install_grafana_dashboard

            placed = install_grafana_dashboard()
            if placed:
                say(f"Grafana dashboard of the trials (beside Ray's): {placed}")
        elif metrics_export_port:
            say(
                "--metrics-export-port applies to a local Ray only: a cluster's nodes export "
                "on their own `ray start --metrics-export-port`"
            )
        resources, note = trial_resources(space.resources, cluster.num_gpus)
        if note:
            notes.append(note)
            say(note)
        trainable = _trainable(
            resources, run_fn, make_config, space.metric, _pack_setup(space), run_pack_fn
        )
        if reuse_actors is None:
            reuse_actors = True
        progress = SweepProgress(space.grid_size(), metric=space.metric, mode=space.mode)
        callbacks = [progress, *tracker_callbacks(trackers, name)]
        t0 = time.monotonic()
        if resumable:
            say(f"resuming experiment {exp_path} (finished and pruned trials are kept)")
            tuner = tune.Tuner.restore(exp_path, trainable=trainable, resume_errored=True)
        else:
            say(f"experiment {exp_path}: {space.grid_size()} trials")
            marker = {
                "fingerprint": fingerprint,
                "space_file": space.source,
                "name": name,
                "trials": space.grid_size(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                # every grid point, so the report counts trials never started (analysis)
                "grid": [grid_point(t) for t in space.member_trials()],  # configurations
            }
            try:
                _write_text(f"{exp_path}/{MARKER}", json.dumps(marker, indent=2))
                src_text = _read_text(space.source)
                if src_text is not None:
                    _write_text(f"{exp_path}/{SPACE_COPY}", src_text)
                tuner = _new_tuner(
                    space, storage, name, trainable, callbacks, scheduler, reuse_actors
                )
                recovery.backup_tuner_state(exp_path)
            except OSError as err:
                if recovery.is_storage_error(err):
                    raise recovery.storage_error(err, exp_path) from err
                raise
        try:
            results = tuner.fit()
        except Exception as err:
            if recovery.is_storage_error(err):
                raise recovery.storage_error(err, exp_path) from err
            raise
        wall = time.monotonic() - t0
    finally:
        cluster.shutdown()
    if recovery.FailureGuard.storage_error:
        raise recovery.storage_error(recovery.FailureGuard.storage_error, exp_path)
    statuses = _statuses(results, exp_path)
    configurations = len(space.member_trials())  # a pack is one trial of several
    return SweepOutcome(exp_path, statuses, wall, resumable, results, notes, configurations)


def summary_text(outcome: SweepOutcome) -> str:
    c = outcome.counts()
    total = sum(c.values())
    line = (
        f"sweep done in {outcome.wall_s:.1f}s: {total} trials, {c['finished']} finished, "
        f"{c['pruned']} pruned, {c['errored']} errored"
        + (f", {c['unfinished']} unfinished" if c.get("unfinished") else "")
        + f" -> {outcome.experiment_path}"
    )
    if c.get("unfinished"):
        line += (
            f"\ninterrupted: {c['unfinished']} trials unfinished; run the same command again "
            "to resume them from their last checkpoints"
        )
    if c["errored"]:
        errored = [t for t, s in outcome.statuses.items() if s == "errored"]
        line += f"\nerrored trials: {', '.join(errored)} (error.txt in each trial directory)"
    return line


def comparison_table(outcome: SweepOutcome) -> str:
    """The report of ``analysis`` when it is installed, else Ray's results DataFrame."""
    try:
        from analysis import render_report

        return render_report([outcome.experiment_path])
    except Exception as err:  # analysis absent or unable to read: fall back, say why
        reason = f"(analysis report unavailable: {type(err).__name__}: {err})"
    df = outcome.results.get_dataframe()
    cols = [
        c
        for c in (
            "config/task",
            "config/seed",
            "config/method",
            "config/hp/config_name",
            "epoch",
            "run_status",
            "dev_score",
            "test_score",
        )
        if c in df.columns
    ]
    return f"{reason}\n{df[cols].to_string(index=False)}"


def print_and_exit_code(outcome: SweepOutcome, stream=None) -> int:
    stream = stream or sys.stdout
    print(comparison_table(outcome), file=stream)
    print(summary_text(outcome), file=stream)
    return outcome.exit_code
