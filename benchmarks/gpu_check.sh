#!/usr/bin/env bash
# dropkit GPU check: parity of the Triton backend with the reference, then timings against
# PyTorch eager, torch.compile and the copy floor. One command, installs nothing, ~5 minutes.
#
#   benchmarks/gpu_check.sh                 # JSON to $OUT if set, else ./bench-results
#   benchmarks/gpu_check.sh --no-compile    # skip the torch.compile providers (faster)
#   benchmarks/gpu_check.sh --parity-only
#
# The parity phase is the table of tests/kernels/parity.py (pytest not needed). Without a GPU:
#   PYTHONPATH=src python benchmarks/gpu_check.py --dry-run   # every phase, tiny sizes, CPU
#
# Needs python3 with torch, triton and a CUDA device; run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET
out_dir="${OUT:-./bench-results}"
mkdir -p "$out_dir"
# The script keeps its own 300 s budget (phases skip work rather than overrun); the timeout is
# only a backstop under the 6-minute limit.
exec timeout 355 python3 benchmarks/gpu_check.py --out "$out_dir" "$@"
