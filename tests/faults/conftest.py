"""The fault suite: faults injected into real small sweeps on the tiny-demo model.

Workers import ``fault_runs`` (and tests/sweep's stubs) by name: both directories go on
``PYTHONPATH`` before the session's Ray starts (tests/conftest.py's ``ray_cluster``). Each test
records its faults in the session's ``fault_tally``; the suite ends with one line,
``N faults injected, N recovered, 0 results lost``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for d in (HERE, HERE.parent / "sweep"):
    if str(d) not in sys.path:
        sys.path.insert(0, str(d))
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(d) not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(d), *parts])


class FaultTally:
    """Faults injected, recovered (the documented outcome was met) and results lost."""

    def __init__(self):
        self.injected: list[str] = []
        self.recovered: list[str] = []
        self.lost = 0

    def inject(self, name: str) -> None:
        self.injected.append(name)

    def recover(self, name: str) -> None:
        self.recovered.append(name)

    def line(self) -> str:
        return (
            f"{len(self.injected)} faults injected, {len(self.recovered)} recovered, "
            f"{self.lost} results lost"
        )


TALLY = FaultTally()


@pytest.fixture(scope="session")
def fault_tally():
    return TALLY


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if TALLY.injected:
        terminalreporter.write_line(f"fault suite: {TALLY.line()}")
        missing = sorted(set(TALLY.injected) - set(TALLY.recovered))
        if missing:
            terminalreporter.write_line(f"fault suite: not recovered: {', '.join(missing)}")
