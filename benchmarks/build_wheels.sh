#!/usr/bin/env bash
# Build wheels into .wheels/ (ignored by git) for the GPU machine.
#   bash benchmarks/build_wheels.sh                 # every package
#   bash benchmarks/build_wheels.sh sj-core sj-triton
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .wheels && mkdir -p .wheels
packages=("$@")
[[ ${#packages[@]} -eq 0 ]] && packages=(sj-core sj-triton sj-cupy sj-flexsn)
for package in "${packages[@]}"; do
  python -m build --wheel --no-isolation --outdir .wheels "packages/$package" >/dev/null
done
ls .wheels
