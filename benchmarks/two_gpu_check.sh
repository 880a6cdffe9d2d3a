#!/usr/bin/env bash
# The two-GPU check (benchmarks/two_gpu_check.py) in one call, with no network: install our
# wheels (bash benchmarks/build_wheels.sh, on a machine with network) as gpu_check.sh does,
# then run the check in two processes with torchrun. Arguments go to the script, e.g.
#
#   bash benchmarks/two_gpu_check.sh                    # devices, ddp and scaling parts
#   bash benchmarks/two_gpu_check.sh --parts ddp --no-compile
#
# The log, JSON and text summary go to $OUT (default /tmp/two_gpu_check).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/two_gpu_check}
mkdir -p "$OUT"
site=${GPU_CHECK_SITE:-/tmp/gpu_check_site}
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" \
  .wheels/*.whl $(ls .whl/*.whl 2>/dev/null) || exit 1
# NVLink multicast (NVLS) stays off: the check does not need it, and not every host has it.
export PYTHONPATH=$site PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_cache \
  NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader \
  > "$OUT/machine.txt" 2>&1
python3 -m torch.distributed.run --standalone --nproc_per_node=2 \
  benchmarks/two_gpu_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/two_gpu_check.log" | tail -80
exit "${PIPESTATUS[0]}"
