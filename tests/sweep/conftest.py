"""One local Ray for the sweep tests that need a cluster (session-scoped, loopback, small).

Starting Ray costs seconds, so the tests share this instance; ``run_sweep`` reuses an
initialised Ray and leaves it running. Tests that need their own cluster (two nodes, a killed
driver) run in a subprocess. Workers import the stub runs by name: this directory is put on
``PYTHONPATH`` before Ray starts, so every worker process inherits it.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _with_here_on_path() -> None:
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(HERE) not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), *parts])


_with_here_on_path()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray started the way ``jola-ray sweep`` starts one (``cluster.connect``), on
    127.0.0.1: 4 logical CPUs, 256 MiB object store, no dashboard, Prometheus metrics on a free
    loopback port (reported every second)."""
    os.environ.pop("RAY_ADDRESS", None)
    import ray

    from jola_ray.sweep.cluster import connect

    if ray.is_initialized():
        ray.shutdown()
    port = free_port()
    handle = connect(
        num_cpus=4,
        num_gpus=0,
        object_store_memory=256 << 20,
        _metrics_export_port=port,
        _system_config={"metrics_report_interval_ms": 1000},
        log_to_driver=False,
    )
    yield {"address": ray.get_runtime_context().gcs_address, "metrics_port": port}
    handle.shutdown()
