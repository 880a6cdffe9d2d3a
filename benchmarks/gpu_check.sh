#!/usr/bin/env bash
# Everything a CUDA machine checks, in one call, with no network: install our wheels (and
# the peers' wheels, when they travel with the run), then run the GPU tests and the
# benchmarks. Build the wheels first, on a machine with network:
#
#   bash benchmarks/build_wheels.sh            # ours, into .wheels/
#   # the peers (optional) and pytest-xdist, into .whl/, for example:
#   pip download --no-deps -d .whl spikingjelly==2.0.0 snntorch loguru pytest-xdist execnet
#
# Then, on the CUDA machine:
#
#   bash benchmarks/gpu_check.sh               # tests, bench_neurons, bench_peers, memory
#   bash benchmarks/gpu_check.sh tests [pytest args]
#   bash benchmarks/gpu_check.sh neurons [bench_neurons args]
#   bash benchmarks/gpu_check.sh peers [bench_peers args]
#   bash benchmarks/gpu_check.sh memory [memory args]
#
# Logs, JSON and figures go to $OUT (default /tmp/gpu_check).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
site=${GPU_CHECK_SITE:-/tmp/gpu_check_site}
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" \
  .wheels/*.whl $(ls .whl/*.whl 2>/dev/null) || exit 1
export PYTHONPATH=$site PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_cache
{
  date -u +"%Y-%m-%d %H:%M UTC"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  python3 -c "import cupy; print('cupy', cupy.__version__)" 2>/dev/null || echo "cupy: not installed"
  python3 -m sj_core info
} 2>&1 | tee "$OUT/machine.txt"

what=${1:-all}
shift || true
status=0

run_tests() {
  local args=("$@")
  if [[ ${#args[@]} -eq 0 ]]; then
    # The correctness tests in parallel when pytest-xdist is importable (Triton compiles
    # on the CPU), then the timing tests alone, so that nothing else shares the GPU.
    local parallel=()
    python3 -c "import xdist" 2>/dev/null && parallel=(-n 8)
    python3 -m pytest -q -p no:cacheprovider "${parallel[@]}" -m "gpu and not slow" tests 2>&1 \
      | tee "$OUT/tests.log" | tail -30
    status=$((status | PIPESTATUS[0]))
    python3 -m pytest -q -p no:cacheprovider -m "gpu and slow" -s tests 2>&1 \
      | tee "$OUT/tests_timing.log" | grep -E "floor|passed|failed|Error" | tail -40
    status=$((status | PIPESTATUS[0]))
  else
    python3 -m pytest -q -p no:cacheprovider "${args[@]}" 2>&1 | tee "$OUT/tests.log" | tail -40
    status=$((status | PIPESTATUS[0]))
  fi
}

run_neurons() {
  local args=("$@")
  [[ ${#args[@]} -eq 0 ]] && args=(--backends triton cupy flexsn torch)
  python3 benchmarks/bench_neurons.py --json "$OUT/bench_neurons.json" "${args[@]}" 2>&1 \
    | tee "$OUT/bench_neurons.log" | tail -5
}

run_peers() {
  python3 benchmarks/bench_peers.py --json "$OUT/bench_peers.json" --png "$OUT/bench_peers.png" \
    "$@" 2>&1 | tee "$OUT/bench_peers.log" | tail -60
}

run_memory() {
  if [[ -f benchmarks/memory.py ]]; then
    python3 benchmarks/memory.py --json "$OUT/memory.json" "$@" 2>&1 | tee "$OUT/memory.log" | tail -30
  fi
}

case $what in
  tests) run_tests "$@" ;;
  neurons) run_neurons "$@" ;;
  peers) run_peers "$@" ;;
  memory) run_memory "$@" ;;
  all) run_tests; run_neurons; run_peers; run_memory ;;
  *) echo "usage: gpu_check.sh [all|tests|neurons|peers|memory] [args]" >&2; exit 2 ;;
esac
exit $status
