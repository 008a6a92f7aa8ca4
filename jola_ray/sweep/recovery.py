"""What a trial does when its checkpoint or its storage fails it, and which failures repeat.

- **Bad checkpoints.** The run refuses a checkpoint that misses or garbles a file
  (``CheckpointError`` naming it). The trial then falls back to the next older checkpoint of
  the trial kept in storage, else restarts from scratch, with a warning naming the bad file, so
  an experiment never holds a trial that cannot complete. A checkpoint directory that is gone
  altogether is replaced on the driver before Ray tries to restore it (``CheckpointRepair``).
- **Storage errors.** A full disk (or quota, read-only storage) is not the trial's fault:
  retrying would fail the same way for every trial. The trial tells the driver (a result with
  ``run_status: storage_error``), and ``FailureGuard`` stops the sweep the way Ctrl-C does, so
  Ray saves the experiment as resumable; the command then exits 3.
- **Permanent failures** (``JolaRayError.permanent``: bad config, broken data, non-finite loss
  at the same seed) are recorded at once (a result with ``run_status: errored``), and
  ``FailureGuard`` sets that trial's retries to zero.

A marker result carries the space's metric as NaN (Ray requires the metric in every result;
ASHA ignores NaN) and no ``epoch``, so no scheduler decision is taken on it.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from ray.tune import Callback

from jola_ray.errors import CheckpointError, JolaRayError, StorageError

STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})
_STORAGE_TEXT = re.compile(r"no space left|disk quota|read-only file system", re.I)
_CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d+)$")
STORAGE_STATUS = "storage_error"
ERRORED_STATUS = "errored"


def is_storage_error(err: BaseException) -> bool:
    """An OSError of a full or read-only storage (pyarrow raises them with errno or text)."""
    while err is not None:
        if isinstance(err, OSError) and (
            err.errno in STORAGE_ERRNOS or _STORAGE_TEXT.search(str(err))
        ):
            return True
        err = err.__cause__ or err.__context__
    return False


def marker(status: str, message: str, metric: str) -> dict[str, Any]:
    """The result a failing trial sends the driver before raising (see the module docstring)."""
    return {metric: math.nan, "run_status": status, "error": message[:2000]}


def _older_checkpoints(checkpoint) -> list:
    """The trial's other kept checkpoints older than ``checkpoint``, newest first."""
    from pyarrow import fs as pafs
    from ray import tune

    parent, name = checkpoint.path.rstrip("/").rsplit("/", 1)
    m = _CHECKPOINT_DIR.match(name)
    try:
        infos = checkpoint.filesystem.get_file_info(pafs.FileSelector(parent))
    except OSError:
        return []
    found = []
    for info in infos:
        mm = _CHECKPOINT_DIR.match(info.base_name)
        if (
            mm
            and info.type == pafs.FileType.Directory
            and (not m or int(mm.group(1)) < int(m.group(1)))
        ):
            found.append((int(mm.group(1)), info.path))
    return [tune.Checkpoint(p, filesystem=checkpoint.filesystem) for _, p in sorted(found)[::-1]]


def candidates(checkpoint) -> Iterator:
    """The checkpoint Ray gave, then the older ones, then None (start from scratch)."""
    if checkpoint is not None:
        yield checkpoint
        yield from _older_checkpoints(checkpoint)
    yield None


def run_with_fallback(run: Callable, cfg, report, checkpoint, warn: Callable[[str], None]) -> None:
    """``run(cfg, report, resume_from)`` from the newest usable checkpoint (see the docstring)."""
    bad: list[str] = []
    for ckpt in candidates(checkpoint):
        if ckpt is None:
            if bad:
                warn(
                    f"{'; '.join(bad)}; no usable checkpoint left: the trial restarts from scratch"
                )
            run(cfg, report=report, resume_from=None)
            return
        with tempfile.TemporaryDirectory(prefix="jola-resume-") as resume_dir:
            try:
                ckpt.to_directory(resume_dir)
            except (OSError, FileNotFoundError) as err:
                if is_storage_error(err):
                    raise
                bad.append(f"checkpoint {ckpt.path} unreadable ({err})")
                continue
            try:
                if bad:
                    warn(f"{'; '.join(bad)}; resuming from the older {ckpt.path}")
                run(cfg, report=report, resume_from=resume_dir)
                return
            except CheckpointError as err:
                # the run names the file inside the local copy; name it in storage instead
                inner = os.path.relpath(err.path, resume_dir)
                bad.append(f"bad checkpoint file {ckpt.path}/{inner}: {err}")


class CheckpointRepair(Callback):
    """Before Ray restores a trial, point it at a checkpoint that exists.

    Ray restores a trial from the checkpoint its saved state names and fails the trial for good
    if that directory is gone (deleted by hand, or a driver killed between persisting a newer
    checkpoint and saving its state). This takes the newest ``checkpoint_N`` still in the
    trial's storage directory instead (the trial itself checks its files), or none (the trial
    restarts from scratch), and says so.
    """

    def say(self, message: str) -> None:
        # stderr, not an injected callable: Ray pickles the callbacks into tuner.pkl
        print(message, file=sys.stderr, flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        from pyarrow import fs as pafs
        from ray.train._internal.session import _TrainingResult
        from ray.tune import Checkpoint

        manager = trial.run_metadata.checkpoint_manager
        latest = manager.latest_checkpoint_result if manager else None
        if latest is None or latest.checkpoint is None:
            return
        ckpt = latest.checkpoint
        try:
            gone = ckpt.filesystem.get_file_info(ckpt.path).type == pafs.FileType.NotFound
        except OSError:
            return
        if not gone:
            return
        fs, trial_path = trial.storage.storage_filesystem, trial.storage.trial_fs_path
        try:
            infos = fs.get_file_info(pafs.FileSelector(trial_path))
        except OSError:
            infos = []
        kept = sorted(
            (int(m.group(1)), i.path)
            for i in infos
            if (m := _CHECKPOINT_DIR.match(i.base_name)) and i.type == pafs.FileType.Directory
        )
        manager._checkpoint_results = [
            r for r in manager._checkpoint_results if r.checkpoint.path != ckpt.path
        ]
        if kept:
            replacement = _TrainingResult(Checkpoint(kept[-1][1], filesystem=fs), latest.metrics)
            manager._latest_checkpoint_result = replacement
            self.say(
                f"warning: trial {trial.trial_id}: checkpoint {ckpt.path} is gone; resuming from "
                f"{kept[-1][1]}"
            )
        else:
            manager._latest_checkpoint_result = None
            self.say(
                f"warning: trial {trial.trial_id}: checkpoint {ckpt.path} is gone and no other "
                "is kept; the trial restarts from scratch"
            )


class FailureGuard(Callback):
    """Reads the trials' results: prints their warnings; permanent failures are not retried; a
    storage error stops the sweep resumably (a SIGINT to the driver: Ray saves the state and returns).

    The storage error is kept on the class: a restored experiment runs the instance unpickled
    from ``tuner.pkl``, and the runner reads it after ``fit`` in the same process."""

    storage_error: str | None = None

    @classmethod
    def reset(cls) -> None:
        cls.storage_error = None

    def on_step_end(self, iteration, trials, **info):
        try:
            keep_state_copies(trials)
        except Exception as err:  # a safety copy must never stop the sweep
            print(f"warning: could not copy Ray's experiment state aside: {err}", file=sys.stderr)

    def _warn(self, trial, result) -> None:
        """Print a result's warning once (a checkpoint fallback, every JoLA gate closed)."""
        warning = result.get("warning")
        if warning and getattr(trial, "_jola_warned", None) != warning:
            trial._jola_warned = warning
            print(f"warning: trial {trial.trial_id}: {warning}", flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._warn(trial, trial.last_result or {})  # the last result may come as completion

    def on_trial_result(self, iteration, trials, trial, result, **info):
        status = result.get("run_status")
        self._warn(trial, result)
        if status == ERRORED_STATUS:
            trial.max_failures = 0  # the next failure (the trial raises next) is final
            print(
                f"trial {trial.trial_id} failed for good (a retry would fail the same way): "
                f"{result.get('error')}",
                flush=True,
            )
        elif status == STORAGE_STATUS and FailureGuard.storage_error is None:
            FailureGuard.storage_error = f"trial {trial.trial_id}: {result.get('error')}"
            os.kill(os.getpid(), signal.SIGINT)  # Ray's handler: save state, end the run


# --- Ray's experiment files after a full disk ------------------------------------------------

TUNER_PKL = "tuner.pkl"
TUNER_BACKUP = ".jola_tuner.pkl"
STATE_COPIES = ".jola_state"  # last intact copies of Ray's experiment-state files
RAY_STATE_PREFIXES = (
    "experiment_state-",
    "search_gen_state-",
    "searcher-state-",
    "basic-variant-state-",
)
_COPY_EVERY_S = 1.0  # how often the staging files are looked at (copied only when changed)
_last_copy = [0.0]
_copied_mtimes: dict[str, float] = {}


def _intact(name: str, data: bytes) -> bool:
    if name.endswith(".pkl"):
        return _pickle_complete(data)
    try:
        json.loads(data.decode())
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def keep_state_copies(trials) -> None:
    """Every second, copy Ray's state files that changed from the driver's staging directory
    (local, intact) into ``STORAGE/NAME/.jola_state/`` when they parse. A write that fails (a
    full disk) leaves the previous copy: each is written to a temporary name, then renamed."""
    import time

    now = time.monotonic()
    if not trials or now - _last_copy[0] < _COPY_EVERY_S:
        return
    _last_copy[0] = now
    storage = trials[0].storage
    staging = storage.experiment_driver_staging_path
    try:
        names = [n for n in os.listdir(staging) if n.startswith(RAY_STATE_PREFIXES)]
    except OSError:
        return
    fs, root = storage.storage_filesystem, storage.experiment_fs_path
    target = f"{root}/{STATE_COPIES}"
    for name in names:
        path = os.path.join(staging, name)
        try:
            mtime = os.stat(path).st_mtime
            if _copied_mtimes.get(path) == mtime:
                continue
            with open(path, "rb") as fh:
                data = fh.read()
            if not _intact(name, data):
                continue
            fs.create_dir(target, recursive=True)
            with fs.open_output_stream(f"{target}/{name}.tmp") as fh:
                fh.write(data)
            fs.move(f"{target}/{name}.tmp", f"{target}/{name}")
            _copied_mtimes[path] = mtime
        except OSError:
            continue  # storage full or gone: the older copy stays


def _pickle_complete(data: bytes) -> bool:
    return len(data) > 2 and data.endswith(b".")  # a pickle ends with the STOP opcode


def backup_tuner_state(exp_path: str) -> None:
    """Copy the new experiment's ``tuner.pkl`` aside (a full disk may later cut it off)."""
    from analysis.load import resolve

    fs, root = resolve(exp_path)
    try:
        with fs.open_input_stream(f"{root}/{TUNER_PKL}") as fh:
            data = fh.read()
        if _pickle_complete(data):
            with fs.open_output_stream(f"{root}/{TUNER_BACKUP}") as fh:
                fh.write(data)
    except FileNotFoundError:
        pass


def repair_state_files(exp_path: str, say: Callable[[str], None]) -> None:
    """Before a resume: a cut-off ``tuner.pkl`` is restored from its copy, and experiment-state
    files that do not parse are moved aside (Ray reads the newest one), each with a message."""
    from pyarrow import fs as pafs

    from analysis.load import resolve

    fs, root = resolve(exp_path)
    try:
        with fs.open_input_stream(f"{root}/{TUNER_PKL}") as fh:
            data = fh.read()
    except FileNotFoundError:
        data = None
    if data is not None and not _pickle_complete(data):
        try:
            with fs.open_input_stream(f"{root}/{TUNER_BACKUP}") as fh:
                backup = fh.read()
        except FileNotFoundError:
            backup = b""
        if not _pickle_complete(backup):
            raise StorageError(
                f"{exp_path}/{TUNER_PKL} is cut off ({len(data)} bytes; a full disk?) and "
                f"there is no intact copy ({TUNER_BACKUP}); start a new experiment with --name"
            )
        with fs.open_output_stream(f"{root}/{TUNER_PKL}") as fh:
            fh.write(backup)
        say(f"warning: {exp_path}/{TUNER_PKL} was cut off ({len(data)} bytes); restored it "
            f"from {TUNER_BACKUP}")  # fmt: skip
    infos = fs.get_file_info(pafs.FileSelector(root))
    for info in sorted(infos, key=lambda i: i.base_name):
        name = info.base_name
        if not name.startswith(RAY_STATE_PREFIXES) or name.endswith((".corrupt", ".tmp")):
            continue
        with fs.open_input_stream(info.path) as fh:
            data = fh.read()
        if _intact(name, data):
            continue
        copy = f"{root}/{STATE_COPIES}/{name}"
        try:
            with fs.open_input_stream(copy) as fh:
                good = fh.read()
        except (FileNotFoundError, OSError):
            good = b""
        fs.move(info.path, info.path + ".corrupt")
        if _intact(name, good):
            with fs.open_output_stream(info.path) as fh:
                fh.write(good)
            say(f"warning: {info.path} was cut off (a full disk?); restored the last intact "
                f"copy from {STATE_COPIES}/ (the cut file is kept as {name}.corrupt)")  # fmt: skip
        else:
            say(f"warning: {info.path} is cut off or corrupt (a full disk?) and no intact copy "
                f"is kept; moved it to {name}.corrupt")  # fmt: skip


def classify(err: BaseException) -> tuple[str, str] | None:
    """(marker status, message) for a failure the driver must know about, else None."""
    if isinstance(err, StorageError) or is_storage_error(err):
        return STORAGE_STATUS, str(err)
    if isinstance(err, JolaRayError) and err.permanent:
        return ERRORED_STATUS, f"{type(err).__name__}: {err}"
    return None


def storage_error(err: BaseException, where: str) -> StorageError:
    """The user-facing StorageError of an OSError raised while writing ``where``."""
    return StorageError(
        f"cannot write the experiment's storage {where}: {err}. Free space (or fix the "
        "storage), then run the same command again: the experiment resumes, finished results "
        "are kept"
    )


def warn_to_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)
