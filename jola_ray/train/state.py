"""The run's own state beside the Trainer's in every checkpoint: history, early stopping, best edit.

The Trainer's checkpoint (``edit_params.safetensors``, ``optimizer.pt``, ``scheduler.pt``,
``rng_state.pth``, ``trainer_state.json``) resumes the optimisation; ``run_state.json`` and
``best_edit.safetensors`` resume everything around it: the per-epoch metrics, the
early-stopping counter, the best epoch's edit tensors, the cost so far and what earlier stages
of the method handed on (LoFiT: stage 1's metrics and selected heads).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

RUN_STATE_FILE = "run_state.json"
BEST_EDIT_FILE = "best_edit.safetensors"
# What an epoch checkpoint must hold to resume every part of the run: the edit, the optimizer,
# the schedule, the RNG and the step (the Trainer's files), early stopping and history (ours).
TRAINER_FILES = (
    "edit_params.safetensors",
    "optimizer.pt",
    "scheduler.pt",
    "rng_state.pth",
    "trainer_state.json",
)
FINAL_FILES = (RUN_STATE_FILE, "metrics.json")  # a finished run's checkpoint


@dataclass
class RunState:
    """What a resumed run needs beyond the Trainer's state."""

    stage: str = "main"  # the method's stage name (``methods.base.Stage.name``)
    history: list[dict] = field(default_factory=list)  # one metrics dict per finished epoch
    best_value: float | None = None
    best_epoch: int = 0
    epochs_without_gain: int = 0
    stopped: bool = False  # early stopping fired
    finished: bool = False  # test evaluation done (final checkpoint)
    wall_s: float = 0.0  # training wall seconds so far (a resumed process adds its own)
    tokens: int = 0  # training tokens (non-padding) so far
    # what earlier stages handed on: their prefixed "metrics", "cost", and the method's own keys
    # (LoFiT: "heads")
    carry: dict = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] | None = field(default=None, repr=False, compare=False)

    def improved(self, value: float, higher_is_better: bool) -> bool:
        """True when ``value`` beats the best so far (the first finite value always does)."""
        if not math.isfinite(value):
            return False
        if self.best_value is None:
            return True
        return value > self.best_value if higher_is_better else value < self.best_value

    def end_epoch(
        self, row: dict, select_metric: str, patience: int, edit_state: Callable[[], dict]
    ) -> None:
        """Record epoch ``row``: a better ``select_metric`` (higher, or lower for ``dev_loss``)
        makes it the best epoch and keeps ``edit_state()``; otherwise one more epoch without
        gain, and ``stopped`` once ``patience`` (0: never) of them have passed."""
        value = row[select_metric]
        if self.improved(value, higher_is_better=select_metric != "dev_loss"):
            self.best_value = value
            self.best_epoch = row["epoch"]
            self.epochs_without_gain = 0
            self.best_state = edit_state()
        else:
            self.epochs_without_gain += 1
            if patience and self.epochs_without_gain >= patience:
                self.stopped = True
        self.history.append(row)

    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in asdict(self).items() if k != "best_state"}
        (directory / RUN_STATE_FILE).write_text(json.dumps(data, indent=1, default=_json_default))
        if self.best_state is not None:
            save_file(self.best_state, str(directory / BEST_EDIT_FILE))

    @classmethod
    def load(cls, directory: str | Path) -> RunState:
        from safetensors.torch import load_file

        directory = Path(directory)
        data = json.loads((directory / RUN_STATE_FILE).read_text())
        state = cls(**data)
        best = directory / BEST_EDIT_FILE
        if best.is_file():
            state.best_state = load_file(str(best))
        return state

    @staticmethod
    def exists(directory: str | Path) -> bool:
        return (Path(directory) / RUN_STATE_FILE).is_file()


def check_checkpoint(directory: str | Path, trainer_files: bool = True) -> RunState:
    """Load the run state of a checkpoint after checking every file a resume reads.

    ``trainer_files=False``: the directory holds a run state alone (a trial pack's member: the
    Trainer's files are the pack's, checked there with ``check_files``).

    A resume restores the edit, optimizer, schedule, RNG, step and early stopping, or nothing:
    the Trainer would silently start a fresh optimizer without ``optimizer.pt`` and give a
    different result. JSON files must parse, safetensors files must have a readable header and
    tensors, ``.pt``/``.pth`` files must be intact zip archives (their CRCs are checked; nothing
    is unpickled here).

    Raises:
        CheckpointError: naming the missing or unreadable file (``err.path``).
    """
    from jola_ray.errors import CheckpointError

    directory = Path(directory)
    state_path = directory / RUN_STATE_FILE
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint {directory} does not exist", str(directory))
    data = read_json(state_path)
    try:
        state = RunState(**{k: v for k, v in data.items() if k != "best_state"})
    except TypeError as err:
        raise CheckpointError(f"{state_path}: not a run state ({err})", str(state_path)) from None
    if state.finished:
        check_files(directory, FINAL_FILES)
    elif trainer_files:
        check_files(directory, TRAINER_FILES)
    best = directory / BEST_EDIT_FILE
    if not state.finished and state.best_epoch and not best.is_file():
        raise CheckpointError(
            f"checkpoint {directory} has no {BEST_EDIT_FILE} (best epoch {state.best_epoch})",
            str(best),
        )
    if best.is_file():
        state.best_state = _read_safetensors(best)
    return state


def check_files(directory: str | Path, names) -> None:
    """Every file of ``names`` is in ``directory`` and readable: JSON parses, safetensors load,
    ``.pt``/``.pth`` zip archives pass their CRCs (nothing is unpickled).

    Raises:
        CheckpointError: naming the missing or unreadable file (``err.path``).
    """
    from jola_ray.errors import CheckpointError

    directory = Path(directory)
    for name in names:
        path = directory / name
        if not path.is_file():
            raise CheckpointError(
                f"checkpoint {directory} has no {name}; resuming without it would not restore "
                "the run's state (edit, optimizer, schedule, RNG, step, early stopping)",
                str(path),
            )
        if name.endswith(".json"):
            read_json(path)
        elif name.endswith(".safetensors"):
            _read_safetensors(path)
        else:
            _check_zip(path)


def read_json(path: Path) -> dict:
    """A checkpoint's JSON object; ``CheckpointError`` naming the file if missing or garbled."""
    from jola_ray.errors import CheckpointError

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path.parent} has no {path.name}", str(path)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable or truncated JSON ({err})", str(path)) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object", str(path))
    return data


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from jola_ray.errors import CheckpointError

    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own SafetensorError and others
        raise CheckpointError(f"{path}: corrupt safetensors file ({err})", str(path)) from None


def _check_zip(path: Path) -> None:
    import zipfile

    from jola_ray.errors import CheckpointError

    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path}: corrupt torch file ({err})", str(path)) from None
    if bad is not None:
        raise CheckpointError(f"{path}: corrupt torch file (bad entry {bad})", str(path))


def _json_default(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
