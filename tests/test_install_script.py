"""scripts/install.sh chooses torch's source by the machine (the decision, not the download).

A stand-in pip records each call (and can fail the CPU index, as an offline machine does); a
stand-in nvidia-smi on PATH makes the machine a GPU node or not.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install.sh"

FAKE_PIP = """#!/usr/bin/env bash
echo "$*" >> "$PIP_LOG"
case "$*" in
  *"--index-url"*) [ "${FAIL_INDEX:-0}" = 1 ] && exit 1 ;;
  *"config get"*) exit 1 ;;
esac
exit 0
"""


def run_install(tmp_path, gpu: bool, fail_index: bool = False, links: str | None = None):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pip = bin_dir / "fake-pip"
    pip.write_text(FAKE_PIP)
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/usr/bin/env bash\necho 'GPU 0: NVIDIA H200'\n" if gpu else "exit 9\n")
    for f in (pip, smi):
        f.chmod(0o755)
    log = tmp_path / "pip.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "JOLA_"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}",
        JOLA_PIP=str(pip),
        PIP_LOG=str(log),
        FAIL_INDEX="1" if fail_index else "0",
        JOLA_PIP_TIMEOUT="7",
    )
    if links:
        env["JOLA_TORCH_FIND_LINKS"] = links
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "venv")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return proc, [c for c in calls if c.startswith("install")]


def test_cpu_machine_asks_the_cpu_index_first(tmp_path):
    proc, calls = run_install(tmp_path, gpu=False)
    assert proc.returncode == 0, proc.stderr
    assert len(calls) == 2
    torch_call, project = calls
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_call
    assert "torch>=2.5" in torch_call and "--timeout 7" in torch_call
    assert project.endswith("-e .[dev]")  # no bitsandbytes on a CPU machine
    assert not (tmp_path / "venv").exists()  # the stand-in pip: nothing was created


def test_cpu_machine_falls_back_to_a_local_wheel(tmp_path):
    proc, calls = run_install(tmp_path, gpu=False, fail_index=True, links="/opt/my-wheels")
    assert proc.returncode == 0, proc.stderr
    assert len(calls) == 3
    assert "--index-url" in calls[0]
    assert "--no-index --find-links /opt/my-wheels torch>=2.5" in calls[1]
    assert calls[2].endswith("-e .[dev]")
    assert "unreachable" in proc.stdout


def test_gpu_node_takes_the_default_build_and_the_quant_extra(tmp_path):
    proc, calls = run_install(tmp_path, gpu=True)
    assert proc.returncode == 0, proc.stderr
    assert len(calls) == 2
    assert "--index-url" not in calls[0] and "--find-links" not in calls[0]
    assert calls[0].endswith("torch>=2.5")
    assert calls[1].endswith("-e .[dev,quant]")


def test_the_quant_extra_is_declared():
    tomllib = pytest.importorskip("tomllib")
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(d.startswith("bitsandbytes") for d in meta["optional-dependencies"]["quant"])
    assert not any(d.startswith("bitsandbytes") for d in meta["dependencies"])
    ray = next(d for d in meta["dependencies"] if d.startswith("ray["))
    assert ">=2.60" in ray
