"""Hard-Concrete gates (Louizos, Welling, Kingma 2018) with JoLA's constants.

A gate is parameterised by ``log_alpha``. At training it is a stretched, clipped binary-Concrete
sample: ``u ~ U(eps, 1 - eps)``, ``s = sigmoid((log u - log(1 - u) + log_alpha) / temperature)``,
``g = clamp(s * (high - low) + low, 0, 1)``. At evaluation it is deterministic,
``g = clamp(sigmoid(log_alpha) * (high - low) + low, 0, 1)`` (no noise, no temperature, as in
the reference code), which is exactly 0 for ``log_alpha <= -ln 11`` and exactly 1 for
``log_alpha >= ln 11``. The expected-L0 penalty uses the closed form
``P(g != 0) = sigmoid(log_alpha - temperature * log(-low / high))``.
"""

from __future__ import annotations

import math

import torch

TEMPERATURE = 0.33
LOW, HIGH = -0.1, 1.1
EPS = 1e-6


def sample_gates(
    log_alpha: torch.Tensor,
    shape: tuple[int, ...] | None = None,
    temperature: float = TEMPERATURE,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Training gates: one logistic-noise sample per element of ``shape`` (default: log_alpha's).

    ``shape`` must broadcast with ``log_alpha`` (e.g. ``(batch, H)`` for per-example gates).
    Noise comes from the global RNG of log_alpha's device, so activation checkpointing (which
    restores that RNG state when it recomputes a forward) sees the same gates twice; a trial
    pack gives each configuration its own ``generator`` (on log_alpha's device) instead.
    """
    shape = tuple(log_alpha.shape) if shape is None else shape
    u = torch.rand(shape, device=log_alpha.device, dtype=log_alpha.dtype, generator=generator)
    u = u * (1 - 2 * EPS) + EPS
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / temperature)
    return (s * (HIGH - LOW) + LOW).clamp(0.0, 1.0)


def eval_gates(log_alpha: torch.Tensor) -> torch.Tensor:
    """Deterministic evaluation gates ``clamp(1.2 * sigmoid(log_alpha) - 0.1, 0, 1)``."""
    return (torch.sigmoid(log_alpha) * (HIGH - LOW) + LOW).clamp(0.0, 1.0)


def open_probability(log_alpha: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """``P(gate != 0)`` in closed form (Louizos et al. Eq. 12), differentiable in log_alpha."""
    return torch.sigmoid(log_alpha - temperature * math.log(-LOW / HIGH))
