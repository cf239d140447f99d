"""dropkit's allocating CPU dropout with and without huge pages for its fresh outputs.

Round-robin in one process (so load from other processes hits every provider alike): dropkit
forward and forward+backward with the advice on and off (``dropkit.kernels.cpu._memory``),
``F.dropout``, the allocating ``x * 2.0`` floor, dropkit's ``out=`` and a preallocated copy.
Prints medians and minima in ms and the load average (docs/cpu.md, "Throughput work").

    PYTHONPATH=src python benchmarks/cpu_huge_pages.py --numel 16777216 --threads 2 --rounds 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as torch_functional

import dropkit.functional as F
from dropkit.kernels.cpu import _memory


def _providers(x: torch.Tensor, p: float) -> dict[str, Callable[[], object]]:
    out, grad = torch.empty_like(x), torch.ones_like(x)
    leaf = x.detach().requires_grad_(True)
    step = iter(range(1, 1 << 62))

    def dropkit(t: torch.Tensor) -> torch.Tensor:
        return F.dropout(t, p, seed=1, step=next(step))

    def forward_backward(op: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def call() -> None:
            op(leaf).backward(grad)
            leaf.grad = None

        return call

    def on_small_pages(call: Callable[[], object]) -> Callable[[], object]:
        def small() -> object:
            _memory.enabled = False
            try:
                return call()
            finally:
                _memory.enabled = True

        return small

    calls: dict[str, Callable[[], object]] = {
        "dk fwd": lambda: dropkit(x),
        "dk fwd 4K": on_small_pages(lambda: dropkit(x)),
        "pt fwd": lambda: torch_functional.dropout(x, p),
        "x*2.0": lambda: x * 2.0,
        "dk fwd+bwd": forward_backward(dropkit),
        "dk fwd+bwd 4K": on_small_pages(forward_backward(dropkit)),
        "pt fwd+bwd": forward_backward(lambda t: torch_functional.dropout(t, p)),
        "dk out=": lambda: F.dropout(x, p, seed=1, step=next(step), out=out),
        "copy": lambda: out.copy_(x),
    }
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numel", type=int, default=1 << 24)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.1, 0.5])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for dtype in (torch.float32, torch.bfloat16):
        for p in args.rates:
            x = torch.randn(args.numel).to(dtype)
            calls = _providers(x, p)
            for call in calls.values():
                call()
            times: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(args.rounds):
                for name, call in calls.items():
                    with torch.no_grad() if "bwd" not in name else torch.enable_grad():
                        start = time.perf_counter()
                        call()
                        times[name].append((time.perf_counter() - start) * 1e3)
            row = " ".join(
                f"{name}={statistics.median(t):.2f}|{min(t):.2f}" for name, t in times.items()
            )
            print(f"{str(dtype).removeprefix('torch.'):<9} p={p} (median|min ms) {row}")
    print("load average", *(f"{load:.2f}" for load in os.getloadavg()))


if __name__ == "__main__":
    main()
