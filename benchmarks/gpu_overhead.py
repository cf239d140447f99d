"""Where the host time of a dropkit call goes on a CUDA device (diagnostic).

Times, per call, the host side (wall clock with a sync every 50 calls; the GPU work is small
enough that the host bounds it) of: the torch eager forward/backward, dropkit's functional
forward (no_grad and recording), forward+backward through ``torch.autograd.grad`` with and
without autograd's device threads, the raw ``torch.library`` op and the backend call; then
cProfiles forward+backward on the calling thread and prints the top entries.

    PYTHONPATH=src python3 benchmarks/gpu_overhead.py
    PYTHONPATH=src python3 benchmarks/gpu_overhead.py --dry-run   # CPU, few calls, no profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as torch_functional

import dropkit.functional as F
from dropkit import kernels
from dropkit.kernels import SPECS, Draw, _ops


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def per_call_us(fn: Callable[[], object], calls: int = 300) -> float:
    for _ in range(min(20, calls)):
        fn()
    _synchronize()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(max(calls // 5, 1)):
            fn()
        _synchronize()
        times.append((time.perf_counter() - start) / max(calls // 5, 1) * 1e6)
    return sorted(times)[2]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, 5 calls per row, no profile")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run")
        return 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    calls = 5 if args.dry_run else 300
    side = 64 if args.dry_run else 1024  # inputs of side**2 elements
    rate = torch.tensor(0.1, device=device)
    seed = torch.tensor(1234, device=device)
    step = torch.tensor(7, device=device)
    x = torch.randn(side * side, device=device, dtype=torch.bfloat16, requires_grad=True)
    grad = torch.randn_like(x)
    xs = [
        x,
        torch.randn(side, side, device=device, dtype=torch.bfloat16).requires_grad_(),
    ]
    b = torch.randn(side, device=device, dtype=torch.bfloat16, requires_grad=True)
    r = torch.randn(side, side, device=device, dtype=torch.bfloat16, requires_grad=True)
    backend = kernels.backend_for(SPECS["dropout"], x)
    print("backend:", type(backend).__name__, "switchinterval", sys.getswitchinterval())

    def fwd_nograd():
        with torch.no_grad():
            F.dropout(x, rate, seed=seed, step=step)

    def fwd_grad():
        F.dropout(x, rate, seed=seed, step=step)

    def fwd_bwd():
        torch.autograd.grad(F.dropout(x, rate, seed=seed, step=step), [x], grad)

    def fwd_bwd_single_thread():
        with torch.autograd.set_multithreading_enabled(False):
            torch.autograd.grad(F.dropout(x, rate, seed=seed, step=step), [x], grad)

    def torch_fwd_bwd():
        torch.autograd.grad(torch_functional.dropout(x, 0.1), [x], grad)

    def raw_op():
        with torch.no_grad():
            _ops.dropout(x, rate, seed, step, 0, [x.numel()], True)

    def backend_call():
        backend.run(SPECS["dropout"], x.detach(), Draw(rate, seed, step, 0, [x.numel()]))

    def fused_fwd_bwd():
        y = F.bias_act_dropout_add(xs[1], b, r, rate, "gelu", seed=seed, step=step)
        torch.autograd.grad(y, [xs[1], b, r], grad.view(side, side))

    def fused_fwd_bwd_single():
        with torch.autograd.set_multithreading_enabled(False):
            fused_fwd_bwd()

    def drop_path_add_fwd_bwd():
        branch = xs[1]
        y = F.drop_path_add(r, branch, rate, seed=seed, step=step)
        torch.autograd.grad(y, [r, branch], grad.view(side, side))

    def empty_like():
        torch.empty_like(x)

    rows = [
        ("torch.empty_like", empty_like),
        ("torch eager fwd+bwd", torch_fwd_bwd),
        ("backend.dropout", backend_call),
        ("_ops.dropout no_grad", raw_op),
        ("F.dropout no_grad", fwd_nograd),
        ("F.dropout recording", fwd_grad),
        ("F.dropout fwd+bwd", fwd_bwd),
        ("F.dropout fwd+bwd 1 thread", fwd_bwd_single_thread),
        ("fused fwd+bwd", fused_fwd_bwd),
        ("fused fwd+bwd 1 thread", fused_fwd_bwd_single),
        ("drop_path_add fwd+bwd", drop_path_add_fwd_bwd),
    ]
    failed = 0
    for name, fn in rows:
        try:
            print(f"{name:32s} {per_call_us(fn, calls):9.1f} us/call", flush=True)
        except Exception as error:  # keep going: a diagnostic
            failed += 1
            print(f"{name:32s} failed: {error!r}", flush=True)
    if args.dry_run:
        return 1 if failed else 0
    for name, fn in (
        ("fwd+bwd 1 thread", fwd_bwd_single_thread),
        ("fused 1 thread", fused_fwd_bwd_single),
    ):
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(200):
            fn()
        _synchronize()
        profile.disable()
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(22)
        print(f"== cProfile {name} (200 calls), by tottime ==")
        print("\n".join(line for line in text.getvalue().splitlines() if line.strip())[:6000])
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("cumtime").print_stats(30)
        print(f"== cProfile {name} (200 calls), by cumtime ==")
        print("\n".join(line for line in text.getvalue().splitlines() if line.strip())[:7000])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
