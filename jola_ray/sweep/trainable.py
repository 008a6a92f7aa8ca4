"""The Ray Tune function trainable: one trial = one run of ``jola_ray.train.run``.

The trial turns its config dict into the run config once, loads the model inside the worker
(the run does; nothing large travels from the driver), resumes from Tune's checkpoint when one
exists (a retry or a restored experiment), and forwards every report of the run to
``tune.report`` with an edit-only checkpoint. Each report also sets live Gauges
(``ray.util.metrics``) tagged by experiment, task, seed, config, method, model and the extra
axes, which a cluster's Prometheus scrapes. While the trial runs, a daemon thread re-sets its
gauges every few seconds (Ray's exporter forgets a series that has not been set for a while,
and an epoch of a large model takes minutes); when the trial ends the thread stops, so the
trial's series leave the exporter instead of showing a finished trial's last value.

The run function and the config builder are dotted paths (or callables), so tests inject stub
runs without Ray pickling anything large: ``run(cfg, report, resume_from) -> dict`` and
``make_config(flat_dict) -> cfg``.
"""

from __future__ import annotations

import importlib
import math
import os
import threading
from collections.abc import Callable
from typing import Any

from ray import tune

from jola_ray.errors import StorageError
from jola_ray.sweep import DEFAULT_MAKE_CONFIG, DEFAULT_RUN, DEFAULT_RUN_PACK
from jola_ray.sweep.space import members, run_config_dict, trial_of

# Live metrics: result key -> Gauge name (exported as ray_<name> to Prometheus).
GAUGES = {
    "dev_loss": "jola_trial_dev_loss",
    "dev_score": "jola_trial_dev_score",
    "open_gate_fraction": "jola_trial_open_gate_fraction",
    "step": "jola_trial_step",
    "epoch": "jola_trial_epoch",
}
GAUGE_TAGS = ("experiment", "task", "seed", "config", "method", "model", "axes")
# Seconds between re-sets of a running trial's gauges (see the module docstring).
GAUGE_REFRESH_S = 2.0


def resolve(target: str | Callable) -> Callable:
    """A callable from a dotted path ``pkg.mod.attr[.attr]`` (or the callable itself)."""
    if callable(target):
        return target
    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):  # the longest importable module prefix
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"cannot import {target!r}")


def gauge_tags(config: dict[str, Any], experiment: str) -> dict[str, str]:
    """The tags of a trial's series: its grid point, with the extra axes joined into one tag
    (``train_size=100``; empty when the space has none) so that trials differing only in an
    extra axis do not share a series."""
    from jola_ray.sweep.progress import config_name, extra_axes_label

    config = trial_of(config)
    return {
        "experiment": str(experiment),
        "task": str(config.get("task")),
        "seed": str(config.get("seed")),
        "config": config_name(config),
        "method": str(config.get("method")),
        "model": str(config.get("model")),
        "axes": extra_axes_label(config),
    }


class TrialGauges:
    """The trial's live Gauges: ``update`` sets every finite metric it knows from a report; a
    refresher thread re-sets the latest values until ``close`` (the trial's end)."""

    def __init__(
        self,
        config: dict[str, Any],
        experiment: str = "",
        gauge_cls=None,
        refresh_s: float = GAUGE_REFRESH_S,
    ):
        if gauge_cls is None:
            from ray.util.metrics import Gauge as gauge_cls
        self.tags = gauge_tags(config, experiment)
        self.gauges = {
            key: gauge_cls(
                name, description=f"latest {key} of a jola-ray trial", tag_keys=GAUGE_TAGS
            )
            for key, name in GAUGES.items()
        }
        self.latest: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # The thread running the trial: a pruned trial's function is ended by Ray without a
        # return, so the refresher also stops when that thread is gone.
        self._owner = threading.current_thread()
        self._thread = threading.Thread(
            target=self._refresh, args=(refresh_s,), name="jola-gauges", daemon=True
        )
        self._thread.start()

    def update(self, metrics: dict[str, Any]) -> None:
        with self._lock:
            for key in self.gauges:
                value = metrics.get(key)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.latest[key] = float(value)
            self._set_all()

    def _set_all(self) -> None:
        for key, value in self.latest.items():
            self.gauges[key].set(value, tags=self.tags)

    def _refresh(self, every: float) -> None:
        while not self._stop.wait(every) and self._owner.is_alive():
            with self._lock:
                self._set_all()

    def close(self) -> None:
        """Stop refreshing: the series age out of the exporter (the trial has ended)."""
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def refreshing(self) -> bool:
        return self._thread.is_alive()


def trial_repr(trial_name: str, config: dict[str, Any]) -> str:
    """What the dashboard shows for a trial's actor: its name, grid point and configuration."""
    from jola_ray.sweep.progress import trial_label

    config = trial_of(config)
    hp = {k: v for k, v in config.get("hp", {}).items() if k != "config_name"}
    settings = " ".join(f"{k}={v}" for k, v in hp.items())
    return f"jola_trial({trial_name}: {trial_label(config)}{' ' + settings if settings else ''})"


def named_trainable(fn):
    """``fn`` (a function trainable) as Tune's class trainable, with an actor repr that names
    the trial (Ray shows the repr in the dashboard's actor list and in log prefixes; Tune's
    own repr is the function's name, ``sweep_trial``, the same for every trial). With
    ``reuse_actors`` one actor runs several trials in turn and keeps its first trial's repr."""
    from ray.tune.trainable import wrap_function

    base = wrap_function(fn)

    class JolaTrial(base):
        def __repr__(self):
            try:
                return trial_repr(self.trial_name, self.config)
            except Exception:  # before setup: Ray may ask early
                return "jola_trial"

    JolaTrial.__name__ = JolaTrial.__qualname__ = "JolaTrial"
    return JolaTrial


def sweep_trial(
    config: dict[str, Any],
    run_fn: str | Callable = DEFAULT_RUN,
    make_config: str | Callable = DEFAULT_MAKE_CONFIG,
    metric: str = "dev_score",
    pack_setup: dict | None = None,
    run_pack_fn: str | Callable = DEFAULT_RUN_PACK,
) -> None:
    """Run one trial of the sweep (called by Ray Tune in a worker process): one run, or for a
    pack trial (``"pack"`` in its dict) one ``run_pack`` over its members.

    A failure the driver must know about (storage full, a permanent error) is first reported
    as a marker result, then raised (``recovery``)."""
    from jola_ray.sweep import recovery

    try:
        _sweep_trial(config, run_fn, make_config, pack_setup, run_pack_fn)
    except Exception as err:
        kind = recovery.classify(err)
        if kind is not None:
            tune.report(recovery.marker(*kind, metric=metric))
        raise


def _sweep_trial(config: dict[str, Any], run_fn, make_config, pack_setup, run_pack_fn) -> None:
    import ray

    from jola_ray.sweep import recovery

    if not ray.get_gpu_ids():
        # A worker with 0 GPUs still sees every GPU of the node (Ray >= 2.50): hide them.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    orig_cwd = os.environ.get("TUNE_ORIG_WORKING_DIR")
    if orig_cwd and os.path.isdir(orig_cwd):
        # Tune moved the worker into the trial directory; relative paths in the run config
        # (data_dir, a local model) mean the worker's own working directory.
        os.chdir(orig_cwd)
    if "pack" in trial_of(config):
        _pack_trial(trial_of(config), resolve(run_pack_fn), resolve(make_config), pack_setup or {})
        return
    flat = run_config_dict(config)
    if "output_dir" not in flat:
        flat["output_dir"] = os.path.join(tune.get_context().get_trial_dir(), "run")
    cfg = resolve(make_config)(flat)
    run = resolve(run_fn)
    gauges = TrialGauges(config, experiment=tune.get_context().get_experiment_name())

    warnings: list[str] = []

    def warn(message: str) -> None:
        recovery.warn_to_stderr(message)
        warnings.append(message)

    def report(metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        gauges.update(metrics)
        metrics = dict(metrics)
        if warnings:  # a checkpoint fallback rides on the next result (result.json, terminal)
            metrics["warning"] = "; ".join([*warnings, *filter(None, [metrics.get("warning")])])
            warnings.clear()
        ckpt = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        try:
            tune.report(metrics, checkpoint=ckpt)  # copies the checkpoint into storage
        except OSError as err:
            if recovery.is_storage_error(err):  # the driver names the storage and the way on
                raise StorageError(f"a checkpoint could not be written: {err}") from err
            raise

    try:
        recovery.run_with_fallback(run, cfg, report, tune.get_checkpoint(), warn)
    finally:
        gauges.close()


def _pack_trial(trial: dict, run_pack: Callable, make_config: Callable, setup: dict):
    """One pack trial: its members trained together, each writing its own trial directory
    (``jola_ray.sweep.packs``); the pack's checkpoint (every member's state) goes to Tune."""
    from ray.train._internal.session import get_storage

    from jola_ray.sweep import recovery
    from jola_ray.sweep.packs import MemberRecords, SuccessiveHalving, member_dirname

    trial_dir = tune.get_context().get_trial_dir()
    storage = get_storage()
    trial_id = tune.get_context().get_trial_id()
    pack_name = os.path.basename(storage.trial_fs_path.rstrip("/"))
    member_dicts = members(trial)
    cfgs, records = [], []
    for k, member in enumerate(member_dicts):
        name = member["hp"]["config_name"]
        flat = run_config_dict(member)
        flat.setdefault("output_dir", os.path.join(trial_dir, "members", name))
        cfgs.append(make_config(flat))
        records.append(
            MemberRecords(
                storage.storage_filesystem,
                f"{storage.experiment_fs_path}/{member_dirname(pack_name, name)}",
                {**member, "pack_trial": trial_id},
                f"{trial_id}_{k}",
            )
        )
    experiment = tune.get_context().get_experiment_name()
    gauges = [TrialGauges(m, experiment=experiment) for m in member_dicts]
    rungs = setup.get("rungs")
    prune = SuccessiveHalving(**rungs) if rungs else None
    metric, sign = setup.get("metric", "dev_score"), -1 if setup.get("mode") == "min" else 1
    warnings: list[str] = []  # a checkpoint fallback, said with the next result

    def report(rows: dict[int, dict], checkpoint_dir: str) -> None:
        statuses = {}
        for k, row in rows.items():
            records[k].write(row)
            gauges[k].update(row)
            if row.get("run_status") == "finished":
                records[k].finish(str(cfgs[k].output_dir) + "/final")
            statuses[member_dicts[k]["hp"]["config_name"]] = row.get("run_status")
        finished = all(r.get("run_status") == "finished" for r in rows.values())
        values = [r[metric] for r in rows.values() if isinstance(r.get(metric), (int, float))]
        summary = {
            # Tune wants the metric in every result: the best member's (ASHA skips packs)
            metric: sign * max(sign * v for v in values) if values else float("nan"),
            "epoch": max(int(r.get("epoch", 0)) for r in rows.values()),
            "pack_size": len(cfgs),
            "pack_reported": statuses,
            "run_status": "finished" if finished else "running",
        }
        if warnings:
            summary["warning"] = "; ".join(warnings)
            warnings.clear()
        try:
            tune.report(summary, checkpoint=tune.Checkpoint.from_directory(checkpoint_dir))
        except OSError as err:
            if recovery.is_storage_error(err):  # the driver names the storage and the way on
                raise StorageError(f"a pack checkpoint could not be written: {err}") from err
            raise

    def run(cfgs, report, resume_from):
        run_pack(
            cfgs,
            report=report,
            resume_from=resume_from,
            pack_dir=os.path.join(trial_dir, "pack"),
            prune=prune,
        )

    def warn(message: str) -> None:
        recovery.warn_to_stderr(message)
        warnings.append(message)

    try:
        # as a single trial: the newest checkpoint whose files all read, else the one before
        recovery.run_with_fallback(run, cfgs, report, tune.get_checkpoint(), warn)
    except Exception as err:
        import traceback

        text = f"pack trial {trial_id} failed:\n{traceback.format_exc()}"
        for rec in records:
            if not any(r.get("run_status") == "finished" for r in rec.rows):
                rec.error(text)
        raise err
    finally:
        for g in gauges:
            g.close()
