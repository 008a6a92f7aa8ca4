#!/usr/bin/env bash
# Every GPU figure in ONE device call: the sections run most important first, each under its
# own time limit (a slow section cannot eat the rest) and each writing its own result file as
# it ends, so a call cut short still returns every section that finished. At the end the
# files are merged into one JSON + Markdown (python -m benchmarks.report --merge-out).
#
#   On the device (run tool, carry ["benchmarks/gpu/wheels"], timeout_s 540):
#       bash benchmarks/gpu/run_all.sh
#   Rehearsal here, same script, tiny shape, smoke sizes:
#       bash benchmarks/gpu/run_all.sh --device cpu --quick
#
# Environment: OUT (results folder; the run tool sets it; default benchmarks/results/run_all),
# BUDGET_S (seconds for all sections together, default 480), NAME (file prefix, default gpu or
# cpu-rehearsal), PYTHON (default python3 on the device, .venv/bin/python here).
# Sections and their limits (seconds): train-1b 80, train-8b 90, methods 60, eval 50,
# packs 70, pack-runs 50, gpu-tests 50, trial-1b 50, sweep 40 (sum 540; BUDGET_S cuts the
# tail: the sweep section is what a full budget leaves out). A section whose limit would pass the budget
# gets what is left; one with under 15 s left is skipped and recorded as skipped.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
DEVICE=cuda
QUICK=()
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --quick) QUICK=(--quick); shift ;;
    *) echo "run_all.sh: unknown argument $1 (known: --device cpu|cuda, --quick)" >&2; exit 2 ;;
  esac
done
if [ "$DEVICE" = cuda ]; then
  NAME="${NAME:-gpu}"; PY="${PYTHON:-python3}"; BIG=1b; HUGE=8b
else
  NAME="${NAME:-cpu-rehearsal}"; PY="${PYTHON:-.venv/bin/python}"; BIG=tiny; HUGE=tiny
fi
BOTH="$BIG,$HUGE"; [ "$BIG" = "$HUGE" ] && BOTH="$BIG"
OUTDIR="${OUT:-benchmarks/results/run_all}"
BUDGET_S="${BUDGET_S:-480}"
mkdir -p "$OUTDIR"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0  # Ray binds to 127.0.0.1 (gpu-ray.md)
SUMMARY="$OUTDIR/$NAME-sections.tsv"
printf 'section\tstatus\tseconds\tlimit_s\tfile\n' >"$SUMMARY"
START=$(date +%s)

# The carried wheels (benchmarks/gpu/prepare_wheels.sh): Ray repacked, TRL, datasets, pytest,
# bitsandbytes trimmed. Installed into /tmp/site, never into the device's own site-packages.
if [ "$DEVICE" = cuda ]; then
  if ls benchmarks/gpu/wheels/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site benchmarks/gpu/wheels/*.whl >"$OUTDIR/$NAME-install.log" 2>&1 \
      || echo "wheel install failed: see $NAME-install.log (trial, sweep and 4-bit sections will fail)" >&2
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "no wheels in benchmarks/gpu/wheels: the trial, sweep and 4-bit sections will fail" >&2
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
    >"$OUTDIR/$NAME-nvidia-smi.csv" 2>&1
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

# section NAME LIMIT_S FILE COMMAND...: run COMMAND under min(LIMIT_S, budget left), log it,
# record its status and result FILE in the summary.
section() {
  local name="$1" limit="$2" file="$3"; shift 3
  local now left t0 rc status
  now=$(date +%s); left=$((BUDGET_S - (now - START)))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -lt 15 ]; then
    printf '%s\tskipped (budget)\t0\t%s\t-\n' "$name" "$limit" >>"$SUMMARY"
    echo "[run_all] $name: skipped, $left s of the budget left" >&2
    return
  fi
  echo "[run_all $(date +%H:%M:%S)] $name (limit $limit s)" >&2
  t0=$(date +%s)
  timeout --signal=INT --kill-after=10 "$limit" "$@" >"$OUTDIR/$NAME-$name.log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status="timed out" ;;
    *) status="failed (rc $rc)" ;;
  esac
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$(($(date +%s) - t0))" "$limit" \
    "$file" >>"$SUMMARY"
  echo "[run_all] $name: $status in $(($(date +%s) - t0)) s" >&2
}

bench() {  # bench NAME LIMIT ARGS...: one harness call writing $OUTDIR/$NAME-<name>.json
  local name="$1" limit="$2"; shift 2
  section "$name" "$limit" "$NAME-$name.json" "$PY" -m benchmarks.run --device "$DEVICE" "${QUICK[@]}" \
    --out "$OUTDIR/$NAME-$name.json" "$@"
}

bench train-1b 80 --only train --shapes "$BIG"
bench train-8b 90 --only train --shapes "$HUGE" --variants plain,batched
bench methods 60 --only methods --shapes "$BOTH"
bench eval 50 --only eval --shapes "$BOTH"
bench packs 70 --only packing --shapes "$BOTH"
# the same K trials through the trainer (the sweep worker's run), one at a time vs one pack:
# the issue's trial-throughput figure with everything a trial's step costs
section pack-runs 50 "$NAME-pack-runs.json" "$PY" -m benchmarks.packing --trainer \
  --shape "$BIG" --device "$DEVICE" --levels 1,5 "${QUICK[@]}" --out "$OUTDIR/$NAME-pack-runs.json"
# The GPU tests (bf16 and SDPA/flash edits, the 4-bit NF4 run with bitsandbytes); on the CPU
# rehearsal they collect and skip, which checks the selection.
section gpu-tests 50 "$NAME-gpu-tests.xml" "$PY" -m pytest -q -ra -m gpu -p no:cacheprovider \
  --junitxml "$OUTDIR/$NAME-gpu-tests.xml" tests
bench trial-1b 50 --only trial --shapes "$BIG"
bench sweep 40 --only sweep --sweep-shape "$BIG"

# One file for docs/benchmarks.md: every section's JSON merged, with its Markdown.
jsons=$(ls "$OUTDIR/$NAME"-*.json 2>/dev/null | grep -v -- "-all.json" || true)
if [ -n "$jsons" ]; then
  # shellcheck disable=SC2086
  "$PY" -m benchmarks.report --merge-out "$OUTDIR/$NAME-all.json" $jsons \
    >"$OUTDIR/$NAME-all.md" 2>"$OUTDIR/$NAME-merge.log" || echo "merge failed" >&2
fi
echo "[run_all] done in $(($(date +%s) - START)) s; sections:" >&2
column -t -s $'\t' "$SUMMARY" >&2 || cat "$SUMMARY" >&2
