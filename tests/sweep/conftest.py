"""The sweep tests' stub runs on the workers' path.

Workers import the stub runs by name: this directory is put on ``PYTHONPATH`` before Ray
starts (the session's one local Ray is the ``ray_cluster`` fixture of tests/conftest.py), so
every worker process inherits it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _with_here_on_path() -> None:
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(HERE) not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), *parts])


_with_here_on_path()

# free_port and the ray_cluster fixture live in tests/conftest.py (shared with tests/faults).
