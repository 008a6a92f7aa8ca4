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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

RUN_STATE_FILE = "run_state.json"
BEST_EDIT_FILE = "best_edit.safetensors"


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


def _json_default(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
