#!/usr/bin/env bash
# Create the virtual environment VENV (default .venv) and install jola-ray into it.
# On a machine without an NVIDIA driver the CPU build of torch is installed first, so that
# the dependency resolver never pulls a multi-GB CUDA build; on a GPU node pip's normal
# (CUDA) build is kept.
set -euo pipefail
VENV="${1:-.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "install: NVIDIA GPU found, installing torch from the default index"
    "${PIP[@]}" "torch>=2.5"
  else
    echo "install: no GPU, installing the CPU build of torch"
    # A local wheel of the CPU build wins where the machine provides one (find-links);
    # elsewhere PyTorch's CPU index serves it.
    "${PIP[@]}" "torch==2.13.0" 2>/dev/null \
      || "${PIP[@]}" torch --index-url https://download.pytorch.org/whl/cpu
  fi
fi
"${PIP[@]}" -e ".[dev]"
touch "$VENV/.installed"
