#!/usr/bin/env bash
# One call on the GPU machine: install the wheels from .wheels/, then run what is asked.
#
#   bash benchmarks/device_run.sh tests [pytest args]   # GPU tests (default: all plugins)
#   bash benchmarks/device_run.sh bench [bench args]    # benchmarks/bench_neurons.py
#   bash benchmarks/device_run.sh all                   # tests, then the benchmark
#
# Logs and JSON results go to $OUT (the device tool brings them back).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_cache
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -m sj_core info

what=${1:-all}
shift || true
status=0
if [[ $what == tests || $what == all ]]; then
  args=("$@")
  [[ ${#args[@]} -eq 0 || $what == all ]] && args=(tests/core tests/triton tests/cupy tests/flexsn)
  python3 -m pytest -q -x -m "gpu or not gpu" -p no:cacheprovider "${args[@]}" 2>&1 \
    | tee "$OUT/tests.log" | tail -40
  status=${PIPESTATUS[0]}
fi
if [[ $what == bench || $what == all ]]; then
  bench_args=("$@")
  [[ $what == all ]] && bench_args=(--backends triton cupy flexsn torch)
  python3 benchmarks/bench_neurons.py --json "$OUT/bench.json" "${bench_args[@]}" 2>&1 \
    | tee "$OUT/bench.log"
fi
exit $status
