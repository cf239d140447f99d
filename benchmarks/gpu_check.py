"""dropkit's GPU check: parity of the Triton backend with the reference, then timings.

Run through ``benchmarks/gpu_check.sh`` on a CUDA machine (installs nothing, needs no pytest;
about 5 minutes on an H100 with a cold Triton cache). Phases:

1. **Parity**: the table of ``tests/kernels/parity.py`` (the one ``tests/kernels/
   test_gpu_parity.py`` runs under pytest), imported here without pytest: every op of
   ``dropkit.kernels.SPECS`` on fresh inputs in float32, float16 and bfloat16, odd shapes,
   channels_last, strided views and row slices, full, spatial, locked and per-sample masks,
   ``p`` in {0, 0.3, 1}: the Triton backend must equal the reference bit for bit (normals and
   the fused activations within float tolerance). The allocator is poisoned with NaN bytes
   before every call, so an element a kernel forgets to write shows up. Then a 1-D step in one
   launch, MC sampling, an index past 2**31, a CUDA-graph replay and ``torch.compile``.
2. **Timings**: ``triton.testing.do_bench`` medians (L2 flushed between repeats) of each op for
   ``dropkit``, PyTorch ``eager``, ``torch.compile`` of the same PyTorch composition and the
   ``floor`` (a device copy of the bytes the op must move: forward reads x and writes y,
   backward reads dy and writes dx), plus the bytes each provider holds for backward, from the
   allocator (``memory_allocated`` after the forward, minus the inputs and the output).

Writes ``gpu_check.json`` under ``--out`` and prints the parity line, the target verdicts and
a short table last. The exit status is 1 if any parity check failed. ``--dry-run`` runs every
phase at tiny sizes on the CPU through the Triton interpreter (the test suite does, so the
script cannot rot unnoticed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as torch_functional

import dropkit
import dropkit.functional as F
from dropkit import kernels

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the parity table lives in the test tree
    sys.path.insert(0, str(ROOT))

from tests.kernels import parity  # noqa: E402  (needs the path above)

RATE = 0.1
# bfloat16 first: if the time budget cuts the parity phase short, the target dtype ran.
PARITY_DTYPES = ("bfloat16", "float32", "float16")


class Clock:
    """Wall-clock budget of the whole run: phases skip work rather than overrun."""

    def __init__(self, budget_s: float) -> None:
        self.start = time.perf_counter()
        self.budget_s = budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget_s - self.elapsed()


# ---------------------------------------------------------------------------------------------
# Parity: the table of tests/kernels/parity.py (also run by pytest), imported without pytest
# ---------------------------------------------------------------------------------------------


def run_parity(device: torch.device, clock: Clock, *, dry_run: bool) -> list:
    """Triton against the reference on every op of the op table, then the special checks;
    work left when 45% of the budget is spent is reported as skipped. A dry run: one op of each
    kind, float32, the quick sizes."""
    triton_backend = parity.backend_named("triton")
    if triton_backend is None:
        return [parity.Result("triton backend", False, "unavailable (is triton installed?)")]

    def progress(name: str) -> None:
        # Progress lines: a phase that overruns (a slow compile) shows where it was.
        print(f"[parity] {name} (t={clock.elapsed():.0f}s)", flush=True)

    return parity.run_all(
        device,
        triton_backend,
        "quick" if dry_run else "full",
        dtypes=PARITY_DTYPES[1:2] if dry_run else PARITY_DTYPES,
        one_per_kind=dry_run,
        out_of_time=lambda: clock.elapsed() > 0.45 * clock.budget_s,
        progress=progress,
    )


# ---------------------------------------------------------------------------------------------
# Timings
# ---------------------------------------------------------------------------------------------


@dataclass
class Timing:
    op: str
    dtype: str
    shape: str
    pass_name: str
    provider: str
    median_ms: float
    held_bytes_per_element: float = math.nan
    note: str = ""


@dataclass
class Workload:
    """One op at one size: the inputs and a forward per provider."""

    op: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    make_inputs: Callable[[], list[torch.Tensor]]
    providers: dict[str, Callable[..., torch.Tensor]]
    # Bytes a forward and a backward must move (for the copy floor).
    fwd_bytes: int
    bwd_bytes: int
    compile_too: bool = True
    extras: dict[str, str] = field(default_factory=dict)


def _bench(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=10, rep=40, return_mode="median"))
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _held_bytes(op: Callable[..., torch.Tensor], leaves: list[torch.Tensor]) -> float:
    """Bytes the autograd graph of ``op(*leaves)`` holds beyond inputs and output, per element."""
    device = leaves[0].device
    if device.type != "cuda":
        return math.nan
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated(device)
    y = op(*leaves)
    torch.cuda.synchronize()
    after = torch.cuda.memory_allocated(device)
    held = after - before - y.untyped_storage().nbytes()
    numel = y.numel()
    del y
    return held / numel


def _copy_floor(device: torch.device, nbytes: int) -> Callable[[], None]:
    """A device copy moving ``nbytes`` in all: it reads ``nbytes / 2`` and writes as many."""
    half = max(nbytes // 2, 16)
    src = torch.empty(half, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return lambda: dst.copy_(src)


def _workloads(device: torch.device, smoke: bool) -> list[Workload]:
    rate_t = torch.tensor(RATE, device=device)
    seed_t = torch.tensor(1234, device=device)
    step_t = torch.tensor(7, device=device)
    std = math.sqrt(RATE / (1 - RATE))

    def randn(shape, dtype, requires_grad=True, memory_format=torch.contiguous_format):
        t = torch.randn(shape, device=device, dtype=dtype).contiguous(memory_format=memory_format)
        return t.requires_grad_(requires_grad)

    def dropout_workload(n: int, dtype, label="dropout") -> Workload:
        nbytes = n * torch.tensor([], dtype=dtype).element_size()
        return Workload(
            label, dtype, (n,), lambda: [randn((n,), dtype)],
            {
                "dropkit": lambda x: F.dropout(x, rate_t, seed=seed_t, step=step_t),
                "torch": lambda x: torch_functional.dropout(x, RATE, training=True),
            },
            2 * nbytes, 2 * nbytes,
        )  # fmt: skip

    def fused_workload(shape, dtype, label="bias_gelu_dropout_add") -> Workload:
        numel = math.prod(shape)
        size = torch.tensor([], dtype=dtype).element_size()

        def inputs():
            return [randn(shape, dtype), randn(shape[-1:], dtype), randn(shape, dtype)]

        return Workload(
            label, dtype, shape, inputs,
            {
                "dropkit": lambda x, b, r: F.bias_act_dropout_add(
                    x, b, r, rate_t, "gelu", seed=seed_t, step=step_t
                ),
                "torch": lambda x, b, r: r + torch_functional.dropout(
                    torch_functional.gelu(x + b), RATE, training=True
                ),
            },
            # forward reads x and residual, writes out; backward reads dy and x, writes dx.
            3 * numel * size, 3 * numel * size,
        )  # fmt: skip

    def drop_path_workload(shape, dtype, label="drop_path_add") -> Workload:
        numel = math.prod(shape)
        size = torch.tensor([], dtype=dtype).element_size()
        sample_mask = (shape[0], *[1] * (len(shape) - 1))

        def torch_drop_path_add(x, branch):
            keep = torch.empty(sample_mask, device=device, dtype=branch.dtype).bernoulli_(1 - RATE)
            return x + branch * keep.div_(1 - RATE)

        return Workload(
            label, dtype, shape, lambda: [randn(shape, dtype), randn(shape, dtype)],
            {
                "dropkit": lambda x, branch: F.drop_path_add(
                    x, branch, rate_t, seed=seed_t, step=step_t
                ),
                "torch": torch_drop_path_add,
            },
            # forward reads x and the branch, writes out; backward reads dy, writes dbranch.
            3 * numel * size, 2 * numel * size,
        )  # fmt: skip

    big = 1 << 12 if smoke else 1 << 28
    fused_shape = (16, 64) if smoke else (16384, 8192)
    small_fused = (2, 4, 32) if smoke else (32, 128, 768)
    image = (2, 4, 4, 8) if smoke else (64, 256, 64, 64)
    tokens = (4, 5, 16) if smoke else (256, 197, 768)
    mid = math.prod(image)
    workloads = [
        dropout_workload(big, torch.float32),
        dropout_workload(big, torch.bfloat16),
        fused_workload(fused_shape, torch.bfloat16),
        dropout_workload(1 << 10 if smoke else 1 << 20, torch.bfloat16, "dropout (small)"),
        fused_workload(small_fused, torch.bfloat16, "bias_gelu_dropout_add (small)"),
        drop_path_workload(tokens, torch.bfloat16),
    ]
    bf16_bytes = 2 * mid

    def image_workload(label, dropkit_op, torch_op, memory_format=torch.contiguous_format):
        return Workload(
            label, torch.bfloat16, image,
            lambda: [randn(image, torch.bfloat16, memory_format=memory_format)],
            {"dropkit": dropkit_op, "torch": torch_op},
            2 * bf16_bytes, 2 * bf16_bytes, compile_too=False,
        )  # fmt: skip

    locked_mask_shape = (1, *image[1:])
    workloads += [
        image_workload(
            "spatial_dropout",
            lambda x: F.spatial_dropout(x, rate_t, seed=seed_t, step=step_t),
            lambda x: torch_functional.dropout2d(x, RATE, training=True),
        ),
        image_workload(
            "dropout channels_last",
            lambda x: F.dropout(x, rate_t, seed=seed_t, step=step_t),
            lambda x: torch_functional.dropout(x, RATE, training=True),
            torch.channels_last,
        ),
        image_workload(
            "locked_dropout",
            lambda x: F.locked_dropout(x, rate_t, time_dim=0, seed=seed_t, step=step_t),
            lambda x: (
                x
                * torch.empty(locked_mask_shape, device=device, dtype=x.dtype)
                .bernoulli_(1 - RATE)
                .div_(1 - RATE)
            ),
        ),
        image_workload(
            "gaussian_dropout",
            lambda x: F.gaussian_dropout(x, rate_t, seed=seed_t, step=step_t),
            lambda x: x * (1 + std * torch.randn_like(x)),
        ),
        image_workload(
            "alpha_dropout",
            lambda x: F.alpha_dropout(x, rate_t, seed=seed_t, step=step_t),
            lambda x: torch_functional.alpha_dropout(x, RATE, training=True),
        ),
    ]
    return workloads


def _time_provider(
    op: Callable[..., torch.Tensor],
    leaves: list[torch.Tensor],
    grad: torch.Tensor,
    device: torch.device,
) -> list[tuple[str, float, float]]:
    """(pass, median ms, held bytes per element) for the forward and forward+backward."""

    def forward() -> None:
        with torch.no_grad():
            op(*leaves)

    def forward_backward() -> None:
        y = op(*leaves)
        torch.autograd.grad(y, leaves, grad)

    forward_backward()  # warm up: Triton and inductor compile here
    held = _held_bytes(op, leaves)
    return [(name, _bench(fn, device), held) for name, fn in
            (("fwd", forward), ("fwd+bwd", forward_backward))]  # fmt: skip


def run_timings(device: torch.device, clock: Clock, *, smoke: bool, compile_providers: bool):
    timings: list[Timing] = []
    for work in _workloads(device, smoke):
        if clock.left() < 25:
            print(f"[time] skipped {work.op}: out of time", flush=True)
            continue
        label = f"{work.op} {str(work.dtype).removeprefix('torch.')} {work.shape}"
        print(f"[time] {label} (t={clock.elapsed():.0f}s)", flush=True)
        leaves = work.make_inputs()
        grad = torch.randn(leaves[0].shape, device=device, dtype=work.dtype)
        providers = dict(work.providers)
        dtype_name = str(work.dtype).removeprefix("torch.")
        if compile_providers and work.compile_too:
            if clock.left() > 90:
                providers["compile"] = torch.compile(work.providers["torch"], fullgraph=True)
            else:
                print(f"[time] torch.compile of {work.op} skipped: out of time", flush=True)
        for provider, op in providers.items():
            try:
                for pass_name, median_ms, held in _time_provider(op, leaves, grad, device):
                    timings.append(Timing(work.op, dtype_name, str(work.shape), pass_name,
                                          provider, median_ms, held))  # fmt: skip
            except Exception as error:
                print(f"[time] {provider} failed: {error!r}", flush=True)
                traceback.print_exc()
        floor_fwd = _copy_floor(device, work.fwd_bytes)
        floor_bwd = _copy_floor(device, work.bwd_bytes)

        def floor_both(floor_fwd=floor_fwd, floor_bwd=floor_bwd):
            floor_fwd()
            floor_bwd()

        for pass_name, fn in (("fwd", floor_fwd), ("fwd+bwd", floor_both)):
            timings.append(Timing(work.op, dtype_name, str(work.shape), pass_name, "floor",
                                  _bench(fn, device), 0.0))  # fmt: skip
        del leaves, grad, providers
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return timings


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

TARGETS = [
    # (op, dtype, pass, what, limit, kind) kind "floor": dropkit/floor <= limit; "ms": dropkit ms
    ("dropout", "float32", "fwd+bwd", "<= 1.05x floor", 1.05, "floor"),
    ("dropout", "bfloat16", "fwd+bwd", "<= 1.05x floor", 1.05, "floor"),
    ("bias_gelu_dropout_add", "bfloat16", "fwd+bwd", "<= 0.70 ms (H100)", 0.70, "ms"),
    ("dropout (small)", "bfloat16", "fwd+bwd", "<= eager", 1.0, "torch"),
    ("bias_gelu_dropout_add (small)", "bfloat16", "fwd+bwd", "<= eager", 1.0, "torch"),
    ("drop_path_add", "bfloat16", "fwd+bwd", "<= eager", 1.0, "torch"),
]


def _cells(timings: Sequence[Timing]) -> dict[tuple[str, str, str], dict[str, Timing]]:
    rows: dict[tuple[str, str, str], dict[str, Timing]] = {}
    for t in timings:
        rows.setdefault((t.op, t.dtype, t.pass_name), {})[t.provider] = t
    return rows


def verdicts(timings: Sequence[Timing]) -> list[str]:
    rows = _cells(timings)
    lines = []
    for op, dtype, pass_name, what, limit, kind in TARGETS:
        cells = rows.get((op, dtype, pass_name), {})
        dk = cells.get("dropkit")
        if dk is None:
            lines.append(f"{op} {dtype} {pass_name}: not measured")
            continue
        if kind == "ms":
            value, text = dk.median_ms, f"{dk.median_ms:.3f} ms"
        else:
            base = cells.get("floor" if kind == "floor" else "torch")
            value = dk.median_ms / base.median_ms if base else math.nan
            text = f"{value:.2f}x {'floor' if kind == 'floor' else 'eager'}"
        status = "PASS" if value <= limit else "MISS"
        extra = ""
        if op.startswith("bias_gelu") and "compile" in cells and "torch" in cells:
            extra = (f"; {cells['torch'].median_ms / dk.median_ms:.2f}x faster than eager, "
                     f"{cells['compile'].median_ms / dk.median_ms:.2f}x than compile")  # fmt: skip
        lines.append(f"{status} {op} {dtype} {pass_name}: {text} (target {what}){extra}")
    return lines


def format_table(timings: Sequence[Timing]) -> str:
    header = (
        f"{'op':<30}{'dtype':<9}{'pass':<8}{'dropkit':>9}{'eager':>9}{'compile':>9}"
        f"{'floor':>9}{'dk/floor':>9}{'dk/eager':>9}  held B/el dk|eager|compile"
    )
    lines = [header, "-" * len(header)]
    for (op, dtype, pass_name), cells in _cells(timings).items():

        def ms(provider: str, cells=cells) -> float:
            cell = cells.get(provider)
            return cell.median_ms if cell else math.nan

        def held(provider: str, cells=cells) -> str:
            cell = cells.get(provider)
            return (
                "-"
                if cell is None or math.isnan(cell.held_bytes_per_element)
                else (f"{cell.held_bytes_per_element:.2f}")
            )

        lines.append(
            f"{op:<30}{dtype:<9}{pass_name:<8}{ms('dropkit'):>9.3f}{ms('torch'):>9.3f}"
            f"{ms('compile'):>9.3f}{ms('floor'):>9.3f}{ms('dropkit') / ms('floor'):>8.2f}x"
            f"{ms('dropkit') / ms('torch'):>8.2f}x  "
            f"{held('dropkit')}|{held('torch')}|{held('compile')}"
        )
    return "\n".join(lines)


def environment(device: torch.device) -> dict[str, str]:
    import triton

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "dropkit": dropkit.__version__,
        "commit": commit or "unknown",
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cuda": str(torch.version.cuda),
        "backend": kernels.backend_for(
            kernels.SPECS["dropout"], torch.empty(1, device=device)
        ).name,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or "bench-results")
    parser.add_argument("--budget-s", type=float, default=300.0)
    parser.add_argument(
        "--dry-run",
        "--smoke",
        action="store_true",
        help="every phase at tiny sizes; on a machine without CUDA through the Triton "
        "interpreter (TRITON_INTERPRET=1, set here)",
    )
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile providers")
    parser.add_argument("--parity-only", action="store_true")
    args = parser.parse_args(argv)
    clock = Clock(args.budget_s)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not args.dry_run:
        print("no CUDA device: run with --dry-run (Triton interpreter, tiny sizes)")
        return 2
    if device.type == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton's kernels are built
    env = environment(device)
    print("[env] " + ", ".join(f"{k}={v}" for k, v in env.items()), flush=True)

    results = run_parity(device, clock, dry_run=args.dry_run)
    failures = [r for r in results if not r.passed and not r.skipped]
    skipped = [r for r in results if r.skipped]
    parity_line = (
        f"parity: {len(results) - len(failures) - len(skipped)}/{len(results)} passed, "
        f"{len(failures)} failed, {len(skipped)} skipped (time budget)"
    )
    print(f"[parity] {parity_line} in {clock.elapsed():.0f}s", flush=True)
    for failure in failures[:30]:
        print(f"[parity] FAIL {failure.case}: {failure.detail}", flush=True)

    timings: list[Timing] = []
    if not args.parity_only:
        # A dry run on the CPU skips inductor (minutes of compiling for tiny sizes).
        compile_providers = not args.no_compile and device.type == "cuda"
        timings = run_timings(
            device, clock, smoke=args.dry_run, compile_providers=compile_providers
        )
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "environment": env,
        "elapsed_s": round(clock.elapsed(), 1),
        "parity": {
            "summary": parity_line,
            "failures": [asdict(f) for f in failures],
            "skipped": [r.case for r in skipped],
        },
        "targets": verdicts(timings),
        "timings": [asdict(t) for t in timings],
    }
    (out_dir / "gpu_check.json").write_text(json.dumps(payload, indent=2, default=str))
    print(f"[done] {clock.elapsed():.0f}s; wrote {out_dir / 'gpu_check.json'}")
    print(parity_line)
    for line in verdicts(timings):
        print(line)
    if timings:
        print(format_table(timings))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
