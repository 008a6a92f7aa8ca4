"""The cost of a run: optimizer steps, training tokens, wall and GPU seconds, peak memory.

``cost_wall_s`` is the training wall time (dev evaluations included, the final test evaluation
not), summed over stages and over resumed processes. ``cost_gpu_s`` is the same time when the run
holds a GPU, else 0. ``cost_peak_mem_gb`` is the peak GPU memory allocated by torch on CUDA, and
the process's peak resident memory on CPU.
"""

from __future__ import annotations

import resource
import sys

import torch


class CostMeter:
    """Tracks peak memory from construction on; ``summary`` renders the ``cost_*`` keys."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def peak_mem_gb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 1e9
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 1e9 if sys.platform == "darwin" else rss / 1e6  # bytes on macOS, KiB on Linux

    def summary(self, steps: int, tokens: int, wall_s: float) -> dict:
        return {
            "cost_steps": int(steps),
            "cost_tokens": int(tokens),
            "cost_wall_s": round(float(wall_s), 3),
            "cost_gpu_s": round(float(wall_s), 3) if self.device.type == "cuda" else 0.0,
            "cost_peak_mem_gb": round(self.peak_mem_gb(), 4),
        }
