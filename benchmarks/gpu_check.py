"""dropkit's GPU check: parity of the Triton backend with the reference, then timings.

Run through ``benchmarks/gpu_check.sh`` on a CUDA machine (installs nothing; about 5 minutes
on an H100 with a cold Triton cache). Phases:

1. **Parity**: every elementwise op and every fused op, on fresh random inputs (the input seed
   is printed and saved), for float32, float16 and bfloat16, odd shapes, channels_last and
   strided views, ``p`` in {0, 0.1, 0.5, 1}: forward and backward on the Triton backend must
   equal the reference bit for bit (Gaussian noise and fused activations: within float
   tolerance, and the same mask bit for bit). The allocator is poisoned with NaN bytes before
   every op, so an element a kernel forgets to write shows up. Also: an index past 2**31, a
   CUDA-graph replay (fresh masks per replay) and ``torch.compile`` of the modules.
2. **Timings**: ``triton.testing.do_bench`` medians (L2 flushed between repeats) of each op for
   ``dropkit``, PyTorch ``eager``, ``torch.compile`` of the same PyTorch composition and the
   ``floor`` (a device copy of the bytes the op must move: forward reads x and writes y,
   backward reads dy and writes dx), plus the bytes each provider holds for backward, from the
   allocator (``memory_allocated`` after the forward, minus the inputs and the output).

Writes ``gpu_check.json`` under ``--out`` and prints the target verdicts and a short table
last. The exit status is 1 if any parity check failed.
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

RATE = 0.1
# bfloat16 first: if the time budget cuts the parity phase short, the target dtype ran.
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}
ACTIVATIONS = ("identity", "gelu", "gelu_tanh", "relu", "silu")


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
# Parity
# ---------------------------------------------------------------------------------------------


@dataclass
class ParityResult:
    case: str
    passed: bool
    detail: str = ""
    skipped: bool = False


def _poison(tensors: Sequence[torch.Tensor]) -> None:
    """Fill freed allocator blocks with 0xFF bytes (NaN in every float dtype): blocks of each
    input's size are poisoned and released, so the op's outputs, allocated next, reuse them."""
    blocks = []
    for t in tensors:
        if t.device.type == "cuda":
            for _ in range(3):
                block = torch.empty(
                    t.numel() * t.element_size(), dtype=torch.uint8, device=t.device
                )
                blocks.append(block.fill_(0xFF))
    del blocks


def _run_on(backend: str, op: Callable[..., torch.Tensor], inputs: Sequence, grad: torch.Tensor):
    leaves = [
        t.detach().clone().requires_grad_(True) if isinstance(t, torch.Tensor) else t
        for t in inputs
    ]
    tensors = [t for t in leaves if isinstance(t, torch.Tensor)]
    _poison(tensors)
    with kernels.use_backend(backend):
        y = op(*leaves)
        grads = torch.autograd.grad(y, tensors, grad, allow_unused=True)
    return y.detach(), grads


def _compare(name: str, ref, tri, *, exact: bool, tol: float) -> ParityResult:
    y_ref, g_ref = ref
    y_tri, g_tri = tri
    pairs = [("y", y_ref, y_tri)] + [
        (f"grad{i}", a, b) for i, (a, b) in enumerate(zip(g_ref, g_tri, strict=True))
    ]
    for label, a, b in pairs:
        if a is None and b is None:
            continue
        if a is None or b is None or a.shape != b.shape or a.dtype != b.dtype:
            return ParityResult(name, False, f"{label}: shape/dtype/None mismatch")
        if torch.isnan(b).any() and not torch.isnan(a).any():
            return ParityResult(name, False, f"{label}: NaN (unwritten output?)")
        if exact:
            if not torch.equal(a, b):
                diff = (a.float() - b.float()).abs()
                return ParityResult(
                    name, False, f"{label}: {int((diff > 0).sum())} differ, max {diff.max():.3g}"
                )
        else:
            try:
                torch.testing.assert_close(b, a, rtol=tol, atol=tol)
            except AssertionError as error:
                return ParityResult(name, False, f"{label}: {str(error).splitlines()[0]}")
    return ParityResult(name, True)


def _elementwise_ops() -> dict[str, tuple[Callable, int, bool]]:
    """name -> (op(x, p, seed), minimum dims, exact)."""
    return {
        "dropout": (lambda x, p, s: F.dropout(x, p, seed=s, step=3, offset=5), 1, True),
        "dropout_standard": (
            lambda x, p, s: F.dropout(x, p, mode="standard", seed=s, step=1),
            1,
            True,
        ),
        "alpha_dropout": (lambda x, p, s: F.alpha_dropout(x, p, seed=s, offset=8), 1, True),
        "gaussian_dropout": (
            lambda x, p, s: F.gaussian_dropout(x, min(p, 0.9), seed=s, offset=2),
            1,
            False,
        ),
        "spatial_dropout": (lambda x, p, s: F.spatial_dropout(x, p, seed=s, offset=6), 3, True),
        "locked_dropout": (lambda x, p, s: F.locked_dropout(x, p, time_dim=0, seed=s), 2, True),
        "feature_alpha_dropout": (
            lambda x, p, s: F.feature_alpha_dropout(x, p, seed=s, step=2),
            3,
            True,
        ),
    }


def _parity_inputs(device: torch.device, dtype: torch.dtype, gen: torch.Generator, smoke: bool):
    """(label, tensor) pairs: odd sizes, a 4-D tensor, channels_last, a strided view."""
    sizes = [(1,), (7,), (4097,)] + ([] if smoke else [(1_000_003,)])
    out = [(f"{s}", torch.randn(s, generator=gen)) for s in sizes]
    out.append(("(3,5,7,11)", torch.randn(3, 5, 7, 11, generator=gen)))
    cl_shape = (2, 3, 5, 7) if smoke else (8, 16, 33, 17)
    out.append(
        (
            "channels_last",
            torch.randn(cl_shape, generator=gen).to(memory_format=torch.channels_last),
        )
    )
    # H*W a multiple of 8: the transposed kernel (8 draws per Philox call in any layout).
    cl8_shape = (2, 5, 4, 6) if smoke else (8, 24, 16, 16)
    out.append(
        (
            "channels_last8",
            torch.randn(cl8_shape, generator=gen).to(memory_format=torch.channels_last),
        )
    )
    out.append(("strided", torch.randn(64, 130, generator=gen)[:, 1::2]))
    # The rows kernel: rows of >= 128 unit-stride elements (spatial over H*W, locked over
    # dim 0 of a (T, B, H) input, a full mask on a row slice).
    out.append(("rows", torch.randn((2, 3, 12, 12) if smoke else (4, 6, 16, 24), generator=gen)))
    out.append(("row_slice", torch.randn(24, 300, generator=gen)[:, 17:250]))
    return [(label, t.to(device=device, dtype=dtype)) for label, t in out]


def run_parity(device: torch.device, clock: Clock, *, smoke: bool = False) -> list[ParityResult]:
    """Triton vs reference on fresh random inputs; returns one result per case."""
    input_seed = int.from_bytes(os.urandom(4), "little")
    print(f"[parity] input seed {input_seed}", flush=True)
    gen = torch.Generator().manual_seed(input_seed)
    results: list[ParityResult] = []
    mask_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    rates = (0.0, 0.1, 0.5, 1.0)
    parity_budget = 0.35 * clock.budget_s
    for dtype_name, dtype in DTYPES.items():
        # Progress lines: a phase that overruns (a slow compile) shows where it was.
        print(f"[parity] elementwise {dtype_name} (t={clock.elapsed():.0f}s)", flush=True)
        for label, x in _parity_inputs(device, dtype, gen, smoke):
            for op_name, (op, min_dims, exact) in _elementwise_ops().items():
                if x.dim() < min_dims:
                    continue
                if clock.elapsed() > parity_budget:
                    results.append(
                        ParityResult(f"{op_name}/{dtype_name}/{label}", False, "time", skipped=True)
                    )
                    continue
                grad = torch.randn(x.shape, generator=gen).to(device=device, dtype=dtype)
                for p in rates:
                    name = f"{op_name}/{dtype_name}/{label}/p={p}"
                    try:
                        fn = lambda t, p=p, op=op: op(t, p, mask_seed)  # noqa: E731
                        ref = _run_on("reference", fn, [x], grad)
                        tri = _run_on("triton", fn, [x], grad)
                        results.append(
                            _compare(
                                name,
                                ref,
                                tri,
                                exact=exact,
                                tol=2e-5 if dtype == torch.float32 else 1e-2,
                            )
                        )
                    except Exception as error:  # report, keep going
                        results.append(ParityResult(name, False, f"raised {error!r}"))
    results.extend(_fused_parity(device, gen, mask_seed, clock, smoke))
    results.extend(_grouped_parity(device, mask_seed))
    if device.type == "cuda" and not smoke:
        results.extend(_special_parity(device, gen, mask_seed))
    return results


def _fused_op(activation: str, has_residual: bool, seed: int, offset: int) -> Callable:
    def op(x, bias, residual=None):
        if activation == "identity":
            return F.bias_dropout_add(x, bias, residual, 0.3, seed=seed, step=2, offset=offset)
        if not has_residual:
            return F.bias_act_dropout(x, bias, 0.3, activation, seed=seed, step=2, offset=offset)
        return F.bias_act_dropout_add(
            x, bias, residual, 0.3, activation, seed=seed, step=2, offset=offset
        )

    return op


def _fused_parity(device, gen, seed, clock, smoke) -> list[ParityResult]:
    results = []
    # Widths that are multiples of 8 (with offset 16) take the backward that reduces the bias
    # gradient in the kernel; the others the elementwise backward.
    shapes = [(7, 33), (5, 4097), (4, 264)] + ([] if smoke else [(64, 768), (3, 8192)])
    for dtype_name, dtype in DTYPES.items():
        for activation in ACTIVATIONS:
            if dtype == torch.float16 and activation not in ("identity", "gelu"):
                continue  # fewer compiled variants; float16 shares bfloat16's code paths
            print(
                f"[parity] fused {activation} {dtype_name} (t={clock.elapsed():.0f}s)", flush=True
            )
            for shape in shapes:
                name = f"fused:{activation}/{dtype_name}/{shape}"
                if clock.elapsed() > 0.45 * clock.budget_s:
                    results.append(ParityResult(name, False, "time", skipped=True))
                    continue
                x = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
                bias = torch.randn(shape[-1:], generator=gen).to(device=device, dtype=dtype)
                has_residual = activation != "gelu_tanh"
                residual = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
                grad = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
                offset = 16 if shape[-1] % 8 == 0 else 3
                op = _fused_op(activation, has_residual, seed, offset)
                inputs = [x, bias, residual] if has_residual else [x, bias]
                try:
                    ref = _run_on("reference", op, inputs, grad)
                    tri = _run_on("triton", op, inputs, grad)
                    tol = 1e-5 if dtype == torch.float32 else 2e-2
                    result = _compare(name, ref, tri, exact=False, tol=tol)
                    ones = torch.ones_like(x)
                    dropped = F.dropout(ones, 0.3, seed=seed, step=2, offset=offset) == 0
                    base = residual if has_residual else torch.zeros_like(x)
                    if result.passed and not torch.equal(tri[0][dropped], base[dropped]):
                        result = ParityResult(name, False, "mask differs from F.dropout's")
                    results.append(result)
                except Exception as error:
                    results.append(ParityResult(name, False, f"raised {error!r}"))
    return results


def _grouped_parity(device, seed) -> list[ParityResult]:
    """A 1-D step (MC sampling's dim-0 groups) in one launch, ``dropout_out`` in place, and
    ``dropkit.uncertainty.sample`` on the Triton backend against the reference."""
    from dropkit.kernels import _ops

    results = []
    rate = torch.tensor(0.3, device=device)
    seed_t = torch.tensor(seed, device=device)
    steps = torch.tensor([3, 2**40 + 1, 7, 0, 11], device=device)
    for dtype_name, dtype in DTYPES.items():
        x = torch.randn(5 * 6, 70, device=device, dtype=dtype)
        name = f"grouped step/{dtype_name}"
        try:
            got = {}
            for backend in ("reference", "triton"):
                with kernels.use_backend(backend):
                    if backend == "reference":  # the reference loops: one call per group
                        got[backend] = torch.cat([
                            _ops.dropout(part, rate, seed_t, step, 4, [6, 70], True)
                            for part, step in zip(x.split(6), steps, strict=True)
                        ])  # fmt: skip
                    else:
                        got[backend] = _ops.dropout(x, rate, seed_t, steps, 4, [6, 70], True)
            results.append(ParityResult(name, torch.equal(got["reference"], got["triton"])))
            inplace = x.clone()
            with kernels.use_backend("triton"):
                _ops.dropout_out(inplace, rate, seed_t, steps, 4, [6, 70], True, inplace)
            results.append(
                ParityResult(
                    f"dropout_out in place/{dtype_name}", torch.equal(inplace, got["triton"])
                )
            )
        except Exception as error:
            results.append(ParityResult(name, False, f"raised {error!r}"))
    try:
        from dropkit.uncertainty import sample

        net = torch.nn.Sequential(
            torch.nn.Linear(16, 64), dropkit.nn.Dropout(0.2, seed=1), torch.nn.ReLU(),
            torch.nn.Linear(64, 3),
        ).to(device)  # fmt: skip
        inputs = torch.randn(40, 16, device=device)
        draws = {}
        for backend in ("reference", "triton"):
            with kernels.use_backend(backend):
                draws[backend] = sample(net, inputs, samples=12, seed=5, batch_budget=1 << 20)
        torch.testing.assert_close(draws["triton"], draws["reference"], rtol=1e-5, atol=1e-5)
        results.append(ParityResult("uncertainty.sample on triton", True))
    except Exception as error:
        results.append(ParityResult("uncertainty.sample on triton", False, f"{error!r}"[:200]))
    return results


def _special_parity(device, gen, seed) -> list[ParityResult]:
    results = []
    # Past 2**31 elements: the tail equals the reference drawn with the matching offset.
    try:
        n = 2**31 + 77
        x = torch.randn(1 << 20, device=device, dtype=torch.bfloat16).repeat(2049)[:n]
        y = F.dropout(x, 0.5, seed=seed)
        tail = 1 << 20
        with kernels.use_backend("reference"):
            expected = F.dropout(x[-tail:], 0.5, seed=seed, offset=n - tail)
        ok = torch.equal(y[-tail:], expected)
        results.append(ParityResult("int64 index: tail of 2**31+77 elements", ok))
        del x, y, expected
    except Exception as error:
        results.append(ParityResult("int64 index", False, f"raised {error!r}"))
    torch.cuda.empty_cache()
    # CUDA graph: replays read the step buffer, so each replay draws a fresh mask.
    try:
        layer = dropkit.nn.Dropout(0.5, seed=7).to(device)
        x = torch.randn(1 << 20, device=device)
        layer(x)  # compile the kernels and build the constant tables outside capture
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            layer(x)
        torch.cuda.current_stream().wait_stream(side)
        step_before = int(layer.step)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = layer(x)
        replays = []
        for _ in range(3):
            graph.replay()
            replays.append(out.clone())
        torch.cuda.synchronize()
        fresh = not torch.equal(replays[0], replays[1])
        expected = F.dropout(x, 0.5, seed=7, step=step_before + 1)
        results.append(ParityResult("cuda graph: fresh mask per replay", fresh))
        results.append(
            ParityResult("cuda graph: replay equals eager", torch.equal(replays[1], expected))
        )
    except Exception as error:
        results.append(ParityResult("cuda graph", False, f"raised {error!r}"))
    # torch.compile (inductor) sees one op per dropkit call and gives the same bits.
    try:
        for module, inputs in (
            (dropkit.nn.Dropout(0.3, seed=5), (torch.randn(4096, device=device),)),
            (
                dropkit.nn.BiasActDropoutAdd(0.3, "gelu", seed=5),
                tuple(torch.randn(s, device=device) for s in ((16, 256), (256,), (16, 256))),
            ),
        ):
            module = module.to(device)
            compiled = torch.compile(module, fullgraph=True)
            state = {k: v.clone() for k, v in module.state_dict().items()}
            got = compiled(*inputs)
            module.load_state_dict(state)
            expected = module(*inputs)
            results.append(
                ParityResult(f"torch.compile {type(module).__name__}", torch.equal(got, expected))
            )
    except Exception as error:
        results.append(ParityResult("torch.compile", False, f"raised {error!r}"))
    return results


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

    big = 1 << 16 if smoke else 1 << 28
    fused_shape = (64, 128) if smoke else (16384, 8192)
    small_fused = (2, 4, 96) if smoke else (32, 128, 768)
    image = (2, 8, 8, 8) if smoke else (64, 256, 64, 64)
    mid = math.prod(image)
    workloads = [
        dropout_workload(big, torch.float32),
        dropout_workload(big, torch.bfloat16),
        fused_workload(fused_shape, torch.bfloat16),
        dropout_workload(1 << 10 if smoke else 1 << 20, torch.bfloat16, "dropout (small)"),
        fused_workload(small_fused, torch.bfloat16, "bias_gelu_dropout_add (small)"),
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
        "backend": kernels.backend_for(torch.empty(1, device=device), "dropout").name,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or "bench-results")
    parser.add_argument("--budget-s", type=float, default=300.0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CPU interpreter OK)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile providers")
    parser.add_argument("--parity-only", action="store_true")
    args = parser.parse_args(argv)
    clock = Clock(args.budget_s)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not args.smoke:
        print("no CUDA device: run with --smoke (TRITON_INTERPRET=1) to exercise the script")
        return 2
    env = environment(device)
    print("[env] " + ", ".join(f"{k}={v}" for k, v in env.items()), flush=True)

    parity = run_parity(device, clock, smoke=args.smoke)
    failures = [r for r in parity if not r.passed and not r.skipped]
    skipped = [r for r in parity if r.skipped]
    parity_line = (
        f"parity: {len(parity) - len(failures) - len(skipped)}/{len(parity)} passed, "
        f"{len(failures)} failed, {len(skipped)} skipped (time budget)"
    )
    print(f"[parity] {parity_line} in {clock.elapsed():.0f}s", flush=True)
    for failure in failures[:30]:
        print(f"[parity] FAIL {failure.case}: {failure.detail}", flush=True)

    timings: list[Timing] = []
    if not args.parity_only:
        timings = run_timings(
            device, clock, smoke=args.smoke, compile_providers=not args.no_compile
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
