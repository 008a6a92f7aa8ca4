"""Suite-wide settings: no hub access, no telemetry, one math thread per process.

On a 2-core machine several processes (pytest, Ray workers) share the cores; letting each of
them start a full OpenMP pool makes tiny matrix products many times slower, so every process
of the suite (Ray workers inherit the environment) uses one thread.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import torch  # noqa: E402  (after the thread settings above)

torch.set_num_threads(1)
