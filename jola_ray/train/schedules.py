"""Learning-rate schedules (per optimizer step) and the gate-penalty weight schedules.

Every learning-rate schedule is a multiplier of the peak rate ``lr0``, evaluated at the 0-based
optimizer step, and used through ``torch.optim.lr_scheduler.LambdaLR`` (the Trainer steps it after
every optimizer step; the rate used at step ``s`` is ``lr0 * factor(s)``).

Warm-up: ``W = warmup_steps + round(warmup_epochs * steps_per_epoch)`` steps, linear from
``lr0 / W`` at the first step to ``lr0`` at step ``W - 1``. The schedule then runs on the steps
after warm-up, ``s' = s - W``, with ``t = s' / steps_per_epoch`` (epochs since warm-up ended, a
fraction between epoch ends) and ``T' = total_steps - W``:

- ``exponential`` (the paper's): ``lambda^t * exp(-rate * t)``;
- ``linear``: ``1 - s'/T'`` (reaches 0 at the last step);
- ``cosine`` (the reference code's): ``0.5 * (1 + cos(pi * s'/T'))``;
- ``cyclic``: a triangle between 1 and ``min_ratio`` with period ``cycle_epochs`` epochs,
  starting at the peak;
- ``adaptive``: 1, multiplied by ``factor`` each time the dev loss has not improved for more
  than ``patience`` epochs (``on_dev_loss``, called once per epoch);
- ``constant``: 1.

The schedule object keeps its state (the adaptive multiplier) in plain attributes, so
``LambdaLR.state_dict()`` saves it in ``scheduler.pt`` and a resumed run continues with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


class LRSchedule:
    """Callable step -> learning-rate multiplier; see the module docstring for the formulas."""

    def __init__(
        self,
        name: str,
        steps_per_epoch: int,
        total_steps: int,
        warmup_steps: int = 0,
        warmup_epochs: float = 0.0,
        decay_lambda: float = 0.1,
        decay_rate: float = 0.01,
        cycle_epochs: float = 2.0,
        cycle_min_ratio: float = 0.1,
        adaptive_factor: float = 0.5,
        adaptive_patience: int = 0,
    ) -> None:
        self.name = name
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.total_steps = max(1, int(total_steps))
        self.warmup = int(warmup_steps) + int(round(warmup_epochs * self.steps_per_epoch))
        self.decay_lambda = decay_lambda
        self.decay_rate = decay_rate
        self.cycle_epochs = cycle_epochs
        self.cycle_min_ratio = cycle_min_ratio
        self.adaptive_factor = adaptive_factor
        self.adaptive_patience = adaptive_patience
        # Adaptive state: the multiplier applied so far, the best dev loss, epochs without gain.
        self.scale = 1.0
        self.best_dev_loss = math.inf
        self.stalled_epochs = 0

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        s = step - self.warmup
        span = max(1, self.total_steps - self.warmup)
        t = s / self.steps_per_epoch
        if self.name == "exponential":
            factor = self.decay_lambda**t * math.exp(-self.decay_rate * t)
        elif self.name == "linear":
            factor = max(0.0, 1.0 - s / span)
        elif self.name == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * min(1.0, s / span)))
        elif self.name == "cyclic":
            period = max(1.0, self.cycle_epochs * self.steps_per_epoch)
            phase = (s % period) / period
            factor = self.cycle_min_ratio + (1 - self.cycle_min_ratio) * abs(1 - 2 * phase)
        elif self.name in ("adaptive", "constant"):
            factor = 1.0
        else:
            raise ValueError(f"unknown lr schedule {self.name!r}")
        return factor * self.scale

    def on_dev_loss(self, dev_loss: float) -> bool:
        """Adaptive heuristic: feed one epoch's dev loss; True when the rate was just cut."""
        if self.name != "adaptive" or not math.isfinite(dev_loss):
            return False
        if dev_loss < self.best_dev_loss:
            self.best_dev_loss = dev_loss
            self.stalled_epochs = 0
            return False
        self.stalled_epochs += 1
        if self.stalled_epochs > self.adaptive_patience:
            self.scale *= self.adaptive_factor
            self.stalled_epochs = 0
            return True
        return False


def gate_weight(
    name: str,
    step: int,
    total_steps: int,
    fixed: float = 0.1,
    cyclic_start: float | None = None,
) -> float:
    """The reference code's gate-penalty weight ``lambda_t`` at train step ``step``.

    The reference penalty is ``lambda_t * P_add + (1 - lambda_t) * P_mul``. ``t`` counts optimizer
    steps of training only; the reference code counted every ``compute_loss`` call, evaluation
    batches included, so its ``lambda_t`` decayed faster (documented in docs/training.md).

    - ``fixed``: ``fixed`` (0.1, the reference's starting value, unless configured);
    - ``expon``: ``0.1 * exp(-0.01 t)``;
    - ``linear``: from 0 to 0.2 over the run's ``total_steps``;
    - ``cyclic``: ``0.5 + 0.5 * sin(2 pi t / 20)``; at step 0 ``cyclic_start`` when given (the
      reference code starts its cyclic weight at 0.1, not at the formula's 0.5).
    """
    if name == "fixed":
        return fixed
    if name == "expon":
        return 0.1 * math.exp(-0.01 * step)
    if name == "linear":
        return 0.2 * min(1.0, step / max(1, total_steps))
    if name == "cyclic":
        if step == 0 and cyclic_start is not None:
            return cyclic_start
        return 0.5 + 0.5 * math.sin(2 * math.pi * step / 20)
    raise ValueError(f"unknown gate schedule {name!r}")


def reference_penalty(
    penalty: Callable[[float], torch.Tensor],
    schedule: str,
    total_steps: int,
    cyclic_start: float | None = None,
    skip_at_zero: bool = False,
) -> Callable[[int], torch.Tensor]:
    """step -> the reference penalty form's term: ``penalty(lambda_t)`` with ``lambda_t`` from
    ``gate_weight``. ``skip_at_zero``: no penalty at all (a zero) on steps where ``lambda_t``
    is exactly 0, as the reference code's ``if lambda != 0`` guard does (its ``linear`` weight at
    step 0, ``cyclic`` at steps 15, 35, ...); the formula alone would still apply the
    multiplicative-gate term ``(1 - lambda_t) * P_mul`` there.
    """

    def at(step: int) -> torch.Tensor:
        lam = gate_weight(schedule, step, total_steps, cyclic_start=cyclic_start)
        if skip_at_zero and lam == 0.0:
            return torch.zeros(())
        return penalty(lam)

    return at
