"""One sweep at a time per experiment directory: ``STORAGE/NAME/.jola_lock``.

Two sweeps with the same name and storage would both run the whole grid into one directory
and overwrite each other's ``tuner.pkl``. The lock file is created atomically (``O_EXCL``) and
holds the owner's host, pid and start time. A lock left by a dead process on this host is taken
over (with a message); a live owner, or one on another host (whose pid cannot be checked from
here), is refused with the owner named.

On object stores (``s3://``, ``gs://``) there is no atomic create: the lock is written after
checking that none exists, which catches a second sweep started later but not two started in
the same instant (docs/sweeps.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable

from jola_ray.errors import ExperimentRefusedError

LOCK_FILE = ".jola_lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _owner_text(owner: dict) -> str:
    return f"host {owner.get('host')!r}, pid {owner.get('pid')}, started {owner.get('started')}"


class ExperimentLock:
    """``with ExperimentLock(exp_path, say):`` holds the experiment's lock for the block."""

    def __init__(self, exp_path: str, say: Callable[[str], None] = print):
        self.exp_path = exp_path.rstrip("/")
        self.path = f"{self.exp_path}/{LOCK_FILE}"
        self.say = say
        self.me = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.held = False

    # --- local files: atomic -------------------------------------------------------------

    def _create_local(self) -> bool:
        os.makedirs(self.exp_path, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            json.dump(self.me, fh)
        return True

    def _read_local(self) -> dict:
        try:
            with open(self.path) as fh:
                owner = json.load(fh)
            return owner if isinstance(owner, dict) else {}
        except (OSError, ValueError):
            return {}  # empty or cut off (its writer died at once, or a full disk)

    def _take_over_local(self) -> bool:
        """Move the stale lock aside (rename is atomic: one taker wins), then create ours."""
        aside = f"{self.path}.stale-{self.me['pid']}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            pass
        else:
            os.remove(aside)
        return self._create_local()

    def acquire(self) -> None:
        """Take the lock or raise ExperimentRefusedError naming its owner."""
        if "://" in self.exp_path:
            self._acquire_uri()
            return
        for _ in range(3):  # created, or a stale one taken over (a race may repeat it)
            if self._create_local():
                self.held = True
                return
            owner = self._read_local()
            refusal = self._refusal(owner)
            if refusal:
                raise ExperimentRefusedError(refusal)
            self.say(
                f"taking over the lock of a sweep that is gone ({_owner_text(owner)}): {self.path}"
            )
            if self._take_over_local():
                self.held = True
                return
        raise ExperimentRefusedError(f"{self.path}: another sweep keeps taking this lock")

    def _refusal(self, owner: dict) -> str | None:
        """Why ``owner`` keeps the lock, or None when it is stale (a dead pid on this host)."""
        if not owner:
            age = time.time() - os.path.getmtime(self.path) if os.path.exists(self.path) else 99
            if age < 10:  # being written this instant
                return f"{self.path}: another sweep is starting on this experiment"
            return None
        host, pid = owner.get("host"), owner.get("pid")
        hint = (
            f"; wait for it to end, or use --name NEW_NAME. If it is gone for sure, delete "
            f"{self.path}"
        )
        if host != self.me["host"]:
            return (
                f"experiment {self.exp_path} is in use by a sweep on another host "
                f"({_owner_text(owner)}){hint}"
            )
        if isinstance(pid, int) and pid != self.me["pid"] and _alive(pid):
            return (
                f"experiment {self.exp_path} is in use by another sweep on this host "
                f"({_owner_text(owner)}){hint}"
            )
        return None

    # --- URIs: best effort ----------------------------------------------------------------

    def _acquire_uri(self) -> None:
        from pyarrow import fs as pafs

        fs, inner = pafs.FileSystem.from_uri(self.path)
        if fs.get_file_info(inner).type != pafs.FileType.NotFound:
            with fs.open_input_stream(inner) as fh:
                try:
                    owner = json.loads(fh.read().decode())
                except ValueError:
                    owner = {}
            refusal = self._refusal_uri(owner)
            if refusal:
                raise ExperimentRefusedError(refusal)
            self.say(f"taking over the lock of a sweep that is gone ({_owner_text(owner)})")
        with fs.open_output_stream(inner) as fh:
            fh.write(json.dumps(self.me).encode())
        self.held = True

    def _refusal_uri(self, owner: dict) -> str | None:
        if owner.get("host") == self.me["host"]:
            pid = owner.get("pid")
            if isinstance(pid, int) and _alive(pid) and pid != self.me["pid"]:
                return f"experiment {self.exp_path} is in use ({_owner_text(owner)})"
            return None
        return (
            f"experiment {self.exp_path} is in use by a sweep on another host "
            f"({_owner_text(owner)}); if it is gone for sure, delete {self.path}"
        )

    # --- release --------------------------------------------------------------------------

    def release(self) -> None:
        """Remove the lock if it is still ours (never another sweep's)."""
        if not self.held:
            return
        self.held = False
        if "://" in self.exp_path:
            from pyarrow import fs as pafs

            fs, inner = pafs.FileSystem.from_uri(self.path)
            with contextlib.suppress(OSError):
                fs.delete_file(inner)
            return
        owner = self._read_local()
        if owner.get("pid") == self.me["pid"] and owner.get("host") == self.me["host"]:
            with contextlib.suppress(OSError):
                os.remove(self.path)

    def __enter__(self) -> ExperimentLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
