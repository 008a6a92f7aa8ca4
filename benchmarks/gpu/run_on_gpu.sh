#!/usr/bin/env bash
# Run the speed harness on a GPU machine (no registry): install the carried wheels into
# /tmp/site, then `python -m benchmarks.run --device cuda` writing into $OUT (or
# benchmarks/results/ when $OUT is unset). Extra arguments go to the harness.
#
#   NAME=h100-a bash benchmarks/gpu/run_on_gpu.sh --skip packing,sweep
#   NAME=h100-b bash benchmarks/gpu/run_on_gpu.sh --only packing,sweep
#
# Without wheels (benchmarks/gpu/prepare_wheels.sh, carried as benchmarks/gpu/wheels) the
# trial and sweep sections, which need TRL/datasets and Ray, are skipped.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUTDIR="${OUT:-benchmarks/results}"
NAME="${NAME:-gpu}"
PY="${PYTHON:-python3}"  # the GPU machine's python3 holds torch
mkdir -p "$OUTDIR"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0  # Ray binds to 127.0.0.1
extra=()
if ls benchmarks/gpu/wheels/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site benchmarks/gpu/wheels/*.whl || { echo "wheel install failed" >&2; exit 1; }
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "no wheels in benchmarks/gpu/wheels: skipping the trial and sweep sections" >&2
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  extra=(--skip trial,sweep)
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUTDIR/$NAME-nvidia-smi.csv" 2>&1
"$PY" -m benchmarks.run --device cuda --out "$OUTDIR/$NAME.json" "${extra[@]}" "$@" \
  2>&1 | tee "$OUTDIR/$NAME.log"
