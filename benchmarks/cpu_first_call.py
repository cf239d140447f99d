"""First-call latency of the CPU fast path: numba's JIT compile (cold) or cache load (warm).

Each measurement runs in a fresh process. ``--cold`` points ``NUMBA_CACHE_DIR`` at an empty
directory, so every kernel compiles; without it, numba's on-disk cache (``__pycache__`` beside
the ``kernels/cpu/`` sources, or ``NUMBA_CACHE_DIR``) is used as a user would see it on a
second run. PyTorch's own one-time cost of the first custom-op call (importing
``torch._dynamo``) is paid before the clock starts.

    PYTHONPATH=src python benchmarks/cpu_first_call.py --cold
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import time, torch, dropkit.functional as F
from dropkit import kernels
with kernels.use_backend("reference"):
    F.dropout(torch.ones(4), 0.5, seed=1)  # PyTorch's first custom-op call (torch._dynamo)
start = time.perf_counter()
import dropkit.kernels.cpu
imported = time.perf_counter()
cases = [
    ("dropout fp32 (1 thread)", lambda: F.dropout(torch.ones(1000), 0.5, seed=1)),
    ("dropout fp32 (threads)", lambda: F.dropout(torch.ones(1 << 20), 0.5, seed=1)),
    ("dropout bf16 (threads)", lambda: F.dropout(torch.ones(1 << 20).bfloat16(), 0.5, seed=1)),
    ("alpha_dropout fp32 (threads)", lambda: F.alpha_dropout(torch.ones(1 << 20), 0.5, seed=1)),
    ("spatial_dropout fp32 (layout pass)", lambda: F.spatial_dropout(torch.ones(8, 4, 3), 0.5)),
    (
        "gaussian_dropout fp32 (layout pass)",
        lambda: F.gaussian_dropout(torch.ones(1000), 0.5, seed=1),
    ),
]
print(f"import numba + kernels module: {imported - start:.2f} s")
for name, case in cases:
    t = time.perf_counter(); case(); first = time.perf_counter() - t
    t = time.perf_counter(); case(); second = time.perf_counter() - t
    print(f"{name:<34} first call {first:6.2f} s   second {second * 1e3:7.2f} ms")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="empty numba cache: full compile")
    args = parser.parse_args()
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as cache:
        if args.cold:
            env["NUMBA_CACHE_DIR"] = cache
        subprocess.run([sys.executable, "-c", CHILD], env=env, check=True)


if __name__ == "__main__":
    main()
