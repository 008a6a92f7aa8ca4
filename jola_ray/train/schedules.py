"""Learning-rate schedules (per optimizer step); the gate-penalty weight is JoLA's (methods/jola.py).

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

    @classmethod
    def for_run(cls, cfg, steps_per_epoch: int) -> LRSchedule:
        """The schedule a run config's ``lr_*``/``warmup_*`` settings name, over its epochs
        (the single run and every member of a trial pack build theirs here)."""
        return cls(
            cfg.lr_schedule,
            steps_per_epoch=steps_per_epoch,
            total_steps=steps_per_epoch * cfg.epochs,
            warmup_steps=cfg.warmup_steps,
            warmup_epochs=cfg.warmup_epochs,
            decay_lambda=cfg.lr_decay_lambda,
            decay_rate=cfg.lr_decay_rate,
            cycle_epochs=cfg.lr_cycle_epochs,
            cycle_min_ratio=cfg.lr_cycle_min_ratio,
            adaptive_factor=cfg.lr_adaptive_factor,
            adaptive_patience=cfg.lr_adaptive_patience,
        )

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
