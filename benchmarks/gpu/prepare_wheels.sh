#!/usr/bin/env bash
# Download from PyPI (pip download) the wheels a GPU machine without a registry needs for the
# harness's trial and sweep sections (TRL, datasets, Ray and what they need that the machine
# lacks), for CPython 3.12 x86_64 manylinux, and repack Ray's wheel to fit the 64 MiB transfer
# limit. Facts and the tested set: shared/reference/gpu-ray.md. Output: benchmarks/gpu/wheels/
# (git-ignored; a device run names it in `carry`). About 117 MiB to download, about 52 MiB kept.
#
#   bash benchmarks/gpu/prepare_wheels.sh            # into benchmarks/gpu/wheels
#   PYTHON=.venv/bin/python bash benchmarks/gpu/prepare_wheels.sh /some/dir
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEST="${1:-$HERE/wheels}"
PY="${PYTHON:-$(ls "$HERE/../../.venv/bin/python" 2>/dev/null || echo python3)}"
RAW="$DEST/.download"

# One version of each (two versions of one package stop the install on the GPU machine).
PACKAGES=(
  ray==2.60.0 trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
  pydantic==2.14.3 pydantic_core==2.50.4 annotated_types==0.8.0 typing_inspection==0.4.5
  typing_extensions==4.16.0 jsonschema==4.26.0 jsonschema_specifications==2025.9.1
  referencing==0.37.0 rpds_py==2026.9.1 tensorboardx==2.6.5
  bitsandbytes==0.50.2
)
# Members of Ray's wheel the harness never loads: the Java worker, RLlib, Serve, LLM, the
# dashboard's web client (gpu-ray.md: 75.7 MiB -> 39.6 MiB).
RAY_DROP=(ray/jars/ ray/rllib/ ray/serve/ ray/llm/ ray/dashboard/client/build/)
# bitsandbytes ships one library per CUDA/ROCm/XPU release (41 MiB): the device's torch is
# CUDA 13.0 (KINDS.md), so only libbitsandbytes_cuda130.so and the CPU library are kept.
BNB_DROP=(
  bitsandbytes/libbitsandbytes_cuda11 bitsandbytes/libbitsandbytes_cuda12
  bitsandbytes/libbitsandbytes_cuda132 bitsandbytes/libbitsandbytes_rocm
  bitsandbytes/libbitsandbytes_xpu
)

mkdir -p "$RAW"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d "$RAW" "${PACKAGES[@]}"

for whl in "$RAW"/*.whl; do
  name="$(basename "$whl")"
  case "$name" in
    ray-*) "$PY" "$HERE/repack_wheel.py" "$whl" "$DEST" "${RAY_DROP[@]}" ;;
    bitsandbytes-*) "$PY" "$HERE/repack_wheel.py" "$whl" "$DEST" "${BNB_DROP[@]}" ;;
    *) cp "$whl" "$DEST/$name" ;;
  esac
done
rm -rf "$RAW"

count=$(ls "$DEST"/*.whl | wc -l)
total=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
echo "$count wheels, $((total / 1048576)) MiB in $DEST"
if [ "$count" -ne "${#PACKAGES[@]}" ]; then
  echo "error: expected ${#PACKAGES[@]} wheels (one per package), found $count" >&2
  exit 1
fi
if [ "$total" -gt $((56 * 1048576)) ]; then
  echo "error: the wheels exceed 56 MiB; with the working tree they must stay under 64 MiB" >&2
  exit 1
fi
