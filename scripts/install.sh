#!/usr/bin/env bash
# Create the virtual environment VENV (default .venv) and install jola-ray into it.
#
#   scripts/install.sh [VENV]
#
# torch first, chosen by the machine:
#   * an NVIDIA GPU (nvidia-smi lists one): pip's default torch (the CUDA build), then
#     jola-ray with the `quant` extra (bitsandbytes, for 4-bit loading);
#   * no NVIDIA GPU: the CPU build from PyTorch's CPU wheel index, so the resolver never pulls
#     the multi-GB CUDA build; if that index cannot be reached, a local wheel (pip's
#     --find-links: JOLA_TORCH_FIND_LINKS, else pip's configured find-links, else ./wheels);
#     then jola-ray without the extra. Each attempt has a short network timeout.
#
# Environment: PYTHON (interpreter for the venv, default python3), JOLA_PIP_TIMEOUT (seconds
# per network operation, default 15), JOLA_TORCH_CPU_INDEX, JOLA_TORCH_FIND_LINKS.
# JOLA_PIP replaces "VENV/bin/python -m pip" (a command line): the tests give it a stand-in
# that records the calls, to check the decision without downloading anything.
set -euo pipefail
VENV="${1:-.venv}"
PY="${PYTHON:-python3}"
TIMEOUT="${JOLA_PIP_TIMEOUT:-15}"
CPU_INDEX="${JOLA_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
TORCH="torch>=2.5"

if [ -n "${JOLA_PIP:-}" ]; then
  read -r -a PIP_CMD <<< "$JOLA_PIP"
  need_torch=1
else
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  PIP_CMD=("$VENV/bin/python" -m pip)
  need_torch=1
  if "$VENV/bin/python" -c "import torch" 2>/dev/null; then need_torch=0; fi
fi
PIP=("${PIP_CMD[@]}" install --disable-pip-version-check -q --timeout "$TIMEOUT" --retries 1)

has_nvidia_gpu() {
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1
}

find_links() {
  if [ -n "${JOLA_TORCH_FIND_LINKS:-}" ]; then echo "$JOLA_TORCH_FIND_LINKS"; return; fi
  if [ -n "${PIP_FIND_LINKS:-}" ]; then echo "$PIP_FIND_LINKS"; return; fi
  local configured
  configured="$("${PIP_CMD[@]}" config get global.find-links 2>/dev/null || true)"
  echo "${configured:-./wheels}"
}

if has_nvidia_gpu; then
  echo "install: NVIDIA GPU found: torch from the default index (CUDA build), extra [quant]"
  EXTRAS="dev,quant"
  if [ "$need_torch" = 1 ]; then
    "${PIP[@]}" "$TORCH"
  fi
else
  echo "install: no NVIDIA GPU: the CPU build of torch from $CPU_INDEX"
  EXTRAS="dev"
  if [ "$need_torch" = 1 ]; then
    if ! "${PIP[@]}" --index-url "$CPU_INDEX" "$TORCH"; then
      LINKS="$(find_links)"
      echo "install: $CPU_INDEX unreachable: a local CPU wheel from $LINKS"
      if ! "${PIP[@]}" --no-index --find-links "$LINKS" "$TORCH"; then
        echo "install: no CPU build of torch found (index $CPU_INDEX, wheels in $LINKS);" \
             "set JOLA_TORCH_FIND_LINKS to a directory holding one" >&2
        exit 1
      fi
    fi
  fi
fi
"${PIP[@]}" -e ".[$EXTRAS]"
if [ -z "${JOLA_PIP:-}" ]; then touch "$VENV/.installed"; fi
