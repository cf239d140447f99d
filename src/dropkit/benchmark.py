"""Speed and memory of dropkit's ops against PyTorch and the memory-copy floor, in one run.

Three suites:

* **ops** (:func:`run_benchmarks`): for each op, size, dtype and pass (``fwd``, ``fwd+bwd``)
  three providers in the same process: ``dropkit``, ``torch`` (PyTorch's own op or the usual
  composition) and ``copy`` (an allocating copy of the same bytes: the floor, one copy forward
  and one more backward). The ops are the technique registry's ``bench=True`` entries
  (``dropkit._techniques``, canonical names; aliases accepted) plus two channels_last variants.
* **dropout** (:func:`run_dropout_benchmarks`): plain dropout over sizes, dtypes, thread counts
  and rates against every reference point at once: ``torch.nn.functional.dropout``,
  ``torch.compile(F.dropout)``, an allocating ``x * 2.0`` (floor of an allocating op), a copy
  into a preallocated tensor (floor of an ``out=`` op) and dropkit's ``out=`` path. Providers
  are timed round-robin, so a burst of noise from other processes hits all of them alike.

* **fused** (:func:`run_fused_benchmarks`): ``residual + dropout(act(x + bias))`` against the
  reference backend, PyTorch's eager composition and an allocating ``x + residual`` (the floor
  of the bytes the fused forward moves), round-robin like the dropout suite.

All report medians with the inter-quartile range, ratios to the floor and to PyTorch, and the
bytes each provider holds for backward (from the autograd saved-tensor hooks).

This harness lives in the package, not in ``benchmarks/``, because it is what the installed
``dropkit bench`` command runs (``benchmarks/`` is not shipped); ``dropkit.cli`` is a thin front
over it (argument defaults and printing only). ``benchmarks/`` holds the one-off scripts that
measure a specific claim (GPU parity and overhead, first call, huge pages, a model step).
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as torch_functional
from torch import Tensor

import dropkit.functional as F
from dropkit import _techniques, kernels

__all__ = [
    "BenchResult",
    "format_dropout_table",
    "format_fused_table",
    "format_table",
    "held_bytes",
    "run_benchmarks",
    "run_dropout_benchmarks",
    "run_fused_benchmarks",
    "time_call",
]

OpFn = Callable[[Tensor], Tensor]
RATE = 0.1


@dataclass
class BenchResult:
    """One timed (op, provider, dtype, numel, pass) cell."""

    op: str
    provider: str
    dtype: str
    numel: int
    pass_name: str
    median_ms: float
    q25_ms: float
    q75_ms: float
    repeats: int
    held_bytes_per_element: float
    ratio_to_floor: float = math.nan
    ratio_to_torch: float = math.nan
    extra: dict[str, str] = field(default_factory=dict)
    threads: int = 0
    p: float = RATE


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Callable[[], object],
    device: torch.device,
    *,
    min_time_s: float = 0.25,
    min_repeats: int = 5,
    max_repeats: int = 200,
) -> list[float]:
    """Wall times in ms of ``fn()``: a warm-up call, then repeats until ``min_time_s`` has
    passed (at least ``min_repeats``, at most ``max_repeats``)."""
    fn()
    _synchronize(device)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max_repeats and (
        len(times) < min_repeats or time.perf_counter() - started < min_time_s
    ):
        start = time.perf_counter()
        fn()
        _synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def held_bytes(op: OpFn, x: Tensor) -> int:
    """Bytes of the tensors autograd saves for backward of ``op(x)``, other than ``x`` itself."""
    storages: dict[int, int] = {}
    input_storage = x.untyped_storage().data_ptr()

    def pack(saved: Tensor) -> Tensor:
        storage = saved.untyped_storage()
        if storage.data_ptr() != input_storage:
            storages[storage.data_ptr()] = storage.nbytes()
        return saved

    leaf = x.detach().requires_grad_(True)
    input_storage = leaf.untyped_storage().data_ptr()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda saved: saved):
        op(leaf)
    return sum(storages.values())


def _step_counter() -> Callable[[], int]:
    step = 0

    def next_step() -> int:
        nonlocal step
        step += 1
        return step

    return next_step


def _torch_locked_dropout(x: Tensor) -> Tensor:
    """The usual PyTorch locked (variational) dropout: one ``(1, B, H)`` mask over time."""
    mask = x.new_empty((1, *x.shape[1:])).bernoulli_(1 - RATE) / (1 - RATE)
    return x * mask


def _torch_gaussian_dropout(x: Tensor) -> Tensor:
    return x * (1 + math.sqrt(RATE / (1 - RATE)) * torch.randn_like(x))


#: PyTorch's counterpart of every technique the registry marks ``bench=True``.
_TORCH_OPS: dict[str, OpFn] = {
    "dropout": lambda x: torch_functional.dropout(x, RATE, training=True),
    "gaussian": _torch_gaussian_dropout,
    "alpha": lambda x: torch_functional.alpha_dropout(x, RATE, training=True),
    "feature_alpha": lambda x: torch_functional.feature_alpha_dropout(x, RATE, training=True),
    "spatial2d": lambda x: torch_functional.dropout2d(x, RATE, training=True),
    "locked": _torch_locked_dropout,
}
#: Extra arguments of the dropkit call for the benchmark's input layout (see ``_shape_for``).
_DROPKIT_KWARGS: dict[str, dict[str, object]] = {"locked": {"time_dim": 0}}
#: Layout variants: the op timed on a channels_last input (the rest: contiguous).
_CHANNELS_LAST_OPS = {"spatial_cl": "spatial2d", "dropout_cl": "dropout"}


def _dropkit_op(functional: Callable[..., Tensor], kwargs: dict[str, object]) -> OpFn:
    steps = _step_counter()
    return lambda x: functional(x, RATE, seed=1, step=steps(), **kwargs)


def _ops() -> dict[str, dict[str, OpFn]]:
    """``{op: {"dropkit": fn, "torch": fn}}``: the registry's ``bench`` techniques (canonical
    names), then the channels_last variants."""
    ops = {
        spec.name: {
            "dropkit": _dropkit_op(spec.functional, _DROPKIT_KWARGS.get(spec.name, {})),
            "torch": _TORCH_OPS[spec.name],
        }
        for spec in _techniques.TECHNIQUES.values()
        if spec.bench
    }
    for variant, name in _CHANNELS_LAST_OPS.items():
        spec = _techniques.get(name)
        ops[variant] = {
            "dropkit": _dropkit_op(spec.functional, _DROPKIT_KWARGS.get(name, {})),
            "torch": _TORCH_OPS[name],
        }
    return ops


def _canonical_op(name: str) -> str:
    """An op name as ``_ops`` keys it: technique aliases (``"gaussian_dropout"``) resolve."""
    if name in _CHANNELS_LAST_OPS or name not in _techniques.names(aliases=True):
        return name
    return _techniques.get(name).name


def _shape_for(op: str, numel: int) -> tuple[int, ...]:
    if op in ("spatial2d", "feature_alpha") or op in _CHANNELS_LAST_OPS:
        return (max(numel // 1024, 1), 16, 8, 8)
    if op == "locked":  # (time, batch, hidden)
        return (max(numel // (32 * 512), 1), 32, 512)
    return (numel,)


def _copy(x: Tensor) -> Tensor:
    return x.clone()


def _copy_fwd_bwd(x: Tensor) -> None:
    # Floor of fwd+bwd: one copy for the forward, one for the backward.
    x.clone()
    x.clone()


def run_benchmarks(
    *,
    ops: Sequence[str] | None = None,
    sizes: Sequence[int] = (1 << 16, 1 << 20),
    dtypes: Sequence[torch.dtype] = (torch.float32, torch.bfloat16),
    device: str | torch.device = "cpu",
    min_time_s: float = 0.25,
    progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Time every (op, size, dtype, pass) for dropkit, PyTorch and the copy floor."""
    device = torch.device(device)
    all_ops = _ops()
    chosen = list(all_ops) if ops is None else list(ops)
    unknown = sorted(name for name in chosen if _canonical_op(name) not in all_ops)
    if unknown:
        raise ValueError(f"ops must be among {sorted(all_ops)}, got unknown {unknown}")
    results: list[BenchResult] = []
    for op_name in chosen:  # rows keep the name asked for (an alias or the canonical one)
        op = _canonical_op(op_name)
        for dtype in dtypes:
            for numel in sizes:
                shape = _shape_for(op, numel)
                x = torch.randn(shape, device=device).to(dtype)
                if op in _CHANNELS_LAST_OPS:
                    x = x.to(memory_format=torch.channels_last)
                grad = torch.ones_like(x)
                cells: dict[tuple[str, str], BenchResult] = {}
                if progress is not None:
                    progress(f"{op_name} {str(dtype).removeprefix('torch.')} n={x.numel()}")
                providers: dict[str, OpFn] = {**all_ops[op], "copy": _copy}
                for provider, fn in providers.items():
                    leaf = x.detach().requires_grad_(provider != "copy")

                    def forward(fn: OpFn = fn, leaf: Tensor = leaf) -> None:
                        with torch.no_grad():
                            fn(leaf)

                    def forward_backward(
                        fn: OpFn = fn, leaf: Tensor = leaf, grad: Tensor = grad
                    ) -> None:
                        fn(leaf).backward(grad)
                        leaf.grad = None

                    def copy_fwd_bwd(x: Tensor = x) -> None:
                        _copy_fwd_bwd(x)

                    passes: dict[str, Callable[[], None]] = {
                        "fwd": forward,
                        "fwd+bwd": copy_fwd_bwd if provider == "copy" else forward_backward,
                    }
                    held = 0 if provider == "copy" else held_bytes(fn, x)
                    for pass_name, call in passes.items():
                        times = time_call(call, device, min_time_s=min_time_s)
                        q = statistics.quantiles(times, n=4) if len(times) > 1 else times * 3
                        cells[(provider, pass_name)] = BenchResult(
                            op=op_name,
                            provider=provider,
                            dtype=str(dtype).removeprefix("torch."),
                            numel=x.numel(),
                            pass_name=pass_name,
                            median_ms=statistics.median(times),
                            q25_ms=q[0],
                            q75_ms=q[2],
                            repeats=len(times),
                            held_bytes_per_element=held / x.numel(),
                        )
                for (_, pass_name), cell in cells.items():
                    cell.ratio_to_floor = cell.median_ms / cells[("copy", pass_name)].median_ms
                    cell.ratio_to_torch = cell.median_ms / cells[("torch", pass_name)].median_ms
                results.extend(cells.values())
    return results


def format_table(results: Sequence[BenchResult]) -> str:
    """A plain-text table: one row per (op, dtype, size, pass), providers side by side."""
    header = (
        f"{'op':<17}{'dtype':<9}{'numel':>10} {'pass':<8}"
        f"{'dropkit ms':>11}{'torch ms':>10}{'copy ms':>9}"
        f"{'vs torch':>9}{'vs floor':>9}  {'held B/el dk | pt':<18}"
    )
    lines = [header, "-" * len(header)]
    rows: dict[tuple[str, str, int, str], dict[str, BenchResult]] = {}
    for r in results:
        rows.setdefault((r.op, r.dtype, r.numel, r.pass_name), {})[r.provider] = r
    for (op, dtype, numel, pass_name), cells in rows.items():
        dk, pt, cp = cells["dropkit"], cells["torch"], cells["copy"]
        held = f"{dk.held_bytes_per_element:.3f} | {pt.held_bytes_per_element:.3f}"
        lines.append(
            f"{op:<17}{dtype:<9}{numel:>10} {pass_name:<8}"
            f"{dk.median_ms:>11.3f}{pt.median_ms:>10.3f}{cp.median_ms:>9.3f}"
            f"{dk.ratio_to_torch:>8.2f}x{dk.ratio_to_floor:>8.2f}x  {held:<18}"
        )
    return "\n".join(lines)


def environment() -> dict[str, str]:
    """What the numbers were measured on."""
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "threads": str(torch.get_num_threads()),
        "backend": kernels.current_backend_name(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
    }


def write_json(results: Sequence[BenchResult], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"environment": environment(), "results": [asdict(r) for r in results]}
    path.write_text(json.dumps(payload, indent=2))


# -- the dropout suite: every reference point, round-robin -------------------------------------

#: Providers of :func:`run_dropout_benchmarks`, and the floor each one is compared with.
DROPOUT_FLOORS = {
    "dropkit": "x*2.0",
    "torch": "x*2.0",
    "torch.compile": "x*2.0",
    "x*2.0": "x*2.0",
    "dropkit out=": "copy",
    "copy": "copy",
}


def _quartiles(times: Sequence[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return q[0], statistics.median(times), q[2]


def _round_robin(
    calls: dict[tuple[str, str], Callable[[], object]],
    device: torch.device,
    *,
    min_time_s: float,
    min_repeats: int,
    max_repeats: int,
) -> dict[tuple[str, str], list[float]]:
    """Time every call once per round, until each has ``min_repeats`` samples and the rounds
    took ``min_time_s`` per call (at most ``max_repeats`` rounds)."""
    for call in calls.values():
        call()
    times: dict[tuple[str, str], list[float]] = {key: [] for key in calls}
    started = time.perf_counter()
    for round_index in range(max_repeats):
        if round_index >= min_repeats and (
            time.perf_counter() - started >= min_time_s * len(calls)
        ):
            break
        for key, call in calls.items():
            _synchronize(device)
            start = time.perf_counter()
            call()
            _synchronize(device)
            times[key].append((time.perf_counter() - start) * 1e3)
    return times


def _dropout_providers(
    x: Tensor, rate: float, steps: Callable[[], int], compiled: Callable[..., Tensor]
) -> tuple[dict[str, OpFn], dict[str, Callable[[], object]]]:
    """Differentiable providers (timed fwd and fwd+bwd) and forward-only ones."""
    differentiable: dict[str, OpFn] = {
        "dropkit": lambda t: F.dropout(t, rate, seed=1, step=steps()),
        "torch": lambda t: torch_functional.dropout(t, rate, training=True),
        "torch.compile": lambda t: compiled(t, rate, training=True),
        "x*2.0": lambda t: t * 2.0,
    }
    out = torch.empty_like(x)
    forward_only: dict[str, Callable[[], object]] = {
        "dropkit out=": lambda: F.dropout(x, rate, seed=1, step=steps(), out=out),
        "copy": lambda: out.copy_(x),
    }
    return differentiable, forward_only


def run_dropout_benchmarks(
    *,
    sizes: Sequence[int] = (1 << 16, 1 << 20),
    dtypes: Sequence[torch.dtype] = (torch.float32, torch.bfloat16),
    threads: Sequence[int] | None = None,
    rates: Sequence[float] = (RATE,),
    device: str | torch.device = "cpu",
    min_time_s: float = 0.1,
    min_repeats: int = 7,
    max_repeats: int = 200,
    progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Time dropout against PyTorch, torch.compile and the two floors, in one run per cell.

    One cell per (size, dtype, threads, rate); in each, the providers of
    :data:`DROPOUT_FLOORS` are timed round-robin (fwd, and fwd+bwd for the differentiable
    ones: the floor of fwd+bwd is two allocating multiplies). ``threads=None`` keeps the
    current ``torch.get_num_threads()``.
    """
    device = torch.device(device)
    thread_counts = [torch.get_num_threads()] if threads is None else list(threads)
    previous_threads = torch.get_num_threads()
    steps = _step_counter()
    # One compiled function for the whole run: it recompiles for a new dtype or rate only.
    compiled = torch.compile(torch_functional.dropout)
    results: list[BenchResult] = []
    try:
        for thread_count in thread_counts:
            torch.set_num_threads(thread_count)
            for dtype in dtypes:
                for numel in sizes:
                    for rate in rates:
                        if progress is not None:
                            progress(
                                f"dropout {str(dtype).removeprefix('torch.')} n={numel} "
                                f"threads={thread_count} p={rate}"
                            )
                        results.extend(
                            _dropout_cell(
                                numel, dtype, thread_count, rate, device, steps, compiled,
                                min_time_s=min_time_s, min_repeats=min_repeats,
                                max_repeats=max_repeats,
                            )
                        )  # fmt: skip
    finally:
        torch.set_num_threads(previous_threads)
    return results


def _dropout_cell(
    numel: int,
    dtype: torch.dtype,
    thread_count: int,
    rate: float,
    device: torch.device,
    steps: Callable[[], int],
    compiled: Callable[..., Tensor],
    *,
    min_time_s: float,
    min_repeats: int,
    max_repeats: int,
) -> list[BenchResult]:
    x = torch.randn(numel, device=device).to(dtype)
    grad = torch.ones_like(x)
    differentiable, forward_only = _dropout_providers(x, rate, steps, compiled)
    calls: dict[tuple[str, str], Callable[[], object]] = {}
    for provider, fn in differentiable.items():
        leaf = x.detach().requires_grad_(provider != "x*2.0")

        def forward(fn: OpFn = fn, leaf: Tensor = leaf) -> None:
            with torch.no_grad():
                fn(leaf)

        def forward_backward(fn: OpFn = fn, leaf: Tensor = leaf) -> None:
            fn(leaf).backward(grad)
            leaf.grad = None

        def multiply_twice() -> None:  # floor of fwd+bwd: one allocating op each way
            x * 2.0
            grad * 2.0

        calls[(provider, "fwd")] = forward
        calls[(provider, "fwd+bwd")] = multiply_twice if provider == "x*2.0" else forward_backward
    for provider, call in forward_only.items():

        def forward_no_grad(call: Callable[[], object] = call) -> None:
            with torch.no_grad():
                call()

        calls[(provider, "fwd")] = forward_no_grad
    compile_started = time.perf_counter()
    calls[("torch.compile", "fwd+bwd")]()  # compiles forward and backward graphs
    calls[("torch.compile", "fwd")]()
    compile_s = time.perf_counter() - compile_started
    times = _round_robin(
        calls, device, min_time_s=min_time_s, min_repeats=min_repeats, max_repeats=max_repeats
    )
    held = {
        provider: (held_bytes(fn, x) if provider != "x*2.0" else 0)
        for provider, fn in differentiable.items()
    }
    cells: dict[tuple[str, str], BenchResult] = {}
    for (provider, pass_name), samples in times.items():
        q25, median, q75 = _quartiles(samples)
        cells[(provider, pass_name)] = BenchResult(
            op="dropout",
            provider=provider,
            dtype=str(dtype).removeprefix("torch."),
            numel=numel,
            pass_name=pass_name,
            median_ms=median,
            q25_ms=q25,
            q75_ms=q75,
            repeats=len(samples),
            held_bytes_per_element=held.get(provider, 0) / numel,
            threads=thread_count,
            p=rate,
            extra={"torch_compile_first_call_s": f"{compile_s:.2f}"}
            if provider == "torch.compile"
            else {},
        )
    for (provider, pass_name), cell in cells.items():
        cell.ratio_to_floor = (
            cell.median_ms / cells[(DROPOUT_FLOORS[provider], pass_name)].median_ms
        )
        cell.ratio_to_torch = cell.median_ms / cells[("torch", pass_name)].median_ms
    return list(cells.values())


def format_dropout_table(results: Sequence[BenchResult]) -> str:
    """One row per (dtype, size, threads, p, pass): median ms [IQR] per provider, then dropkit's
    ratios (to the floor, and PyTorch's time over dropkit's) and bytes held per element."""
    providers = list(DROPOUT_FLOORS)
    header = f"{'dtype':<9}{'numel':>9}{'thr':>4}{'p':>5} {'pass':<8}" + "".join(
        f"{name:>15}" for name in providers
    )
    header += f"{'dk/floor':>9}{'pt/dk':>7}{'out/copy':>9}  {'held B/el dk|pt':<15}"
    lines = [header, "-" * len(header)]
    rows: dict[tuple[str, int, int, float, str], dict[str, BenchResult]] = {}
    for r in results:
        rows.setdefault((r.dtype, r.numel, r.threads, r.p, r.pass_name), {})[r.provider] = r
    for (dtype, numel, threads, rate, pass_name), cells in rows.items():
        row = f"{dtype:<9}{numel:>9}{threads:>4}{rate:>5} {pass_name:<8}"
        for name in providers:
            cell = cells.get(name)
            row += (
                f"{cell.median_ms:>8.2f}±{(cell.q75_ms - cell.q25_ms) / 2:<6.2f}"
                if cell
                else " " * 15
            )
        dk = cells["dropkit"]
        out_ratio = cells["dropkit out="].ratio_to_floor if "dropkit out=" in cells else math.nan
        held = f"{dk.held_bytes_per_element:.2f}|{cells['torch'].held_bytes_per_element:.2f}"
        row += f"{dk.ratio_to_floor:>8.2f}x{1 / dk.ratio_to_torch:>6.1f}x{out_ratio:>8.2f}x  {held}"
        lines.append(row)
    lines.append("ms: median ± half the inter-quartile range; floors: 'x*2.0' (allocating) for "
                 "dropkit, 'copy' (preallocated) for dropkit out=")  # fmt: skip
    return "\n".join(lines)


# -- the fused suite: residual + dropout(act(x + bias)) ------------------------------------------

#: Providers of :func:`run_fused_benchmarks`: dropkit on the chosen backend, the same op on the
#: reference backend, PyTorch's eager composition, and the floor (an allocating ``x + r`` moves
#: the forward's bytes: two tensors read, one written; fwd+bwd: two of them).
FUSED_PROVIDERS = ("dropkit", "reference", "torch", "floor")
_TORCH_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": torch_functional.gelu,
    "gelu_tanh": lambda t: torch_functional.gelu(t, approximate="tanh"),
    "relu": torch.relu,
    "silu": torch_functional.silu,
}


def run_fused_benchmarks(
    *,
    sizes: Sequence[int] = (1 << 20,),
    dtypes: Sequence[torch.dtype] = (torch.float32, torch.bfloat16),
    threads: Sequence[int] | None = None,
    rates: Sequence[float] = (RATE,),
    activations: Sequence[str] = ("gelu",),
    features: int = 4096,
    device: str | torch.device = "cpu",
    min_time_s: float = 0.1,
    min_repeats: int = 7,
    max_repeats: int = 200,
    progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Time ``residual + dropout(act(x + bias))`` on ``(numel // features, features)`` inputs,
    ``bias`` of ``features`` elements: the providers of :data:`FUSED_PROVIDERS`, round-robin,
    fwd and fwd+bwd (gradients to ``x``, ``bias`` and ``residual``)."""
    device = torch.device(device)
    thread_counts = [torch.get_num_threads()] if threads is None else list(threads)
    previous_threads = torch.get_num_threads()
    steps = _step_counter()
    results: list[BenchResult] = []
    try:
        for thread_count, dtype, numel, rate, activation in (
            (t, d, n, r, a)
            for t in thread_counts
            for d in dtypes
            for n in sizes
            for r in rates
            for a in activations
        ):
            torch.set_num_threads(thread_count)
            if progress is not None:
                progress(
                    f"fused {activation} {str(dtype).removeprefix('torch.')} n={numel} "
                    f"threads={thread_count} p={rate}"
                )
            results.extend(
                _fused_cell(
                    numel, features, dtype, thread_count, rate, activation, device, steps,
                    min_time_s=min_time_s, min_repeats=min_repeats, max_repeats=max_repeats,
                )
            )  # fmt: skip
    finally:
        torch.set_num_threads(previous_threads)
    return results


def _fused_cell(
    numel: int,
    features: int,
    dtype: torch.dtype,
    thread_count: int,
    rate: float,
    activation: str,
    device: torch.device,
    steps: Callable[[], int],
    *,
    min_time_s: float,
    min_repeats: int,
    max_repeats: int,
) -> list[BenchResult]:
    rows = max(numel // features, 1)
    x = torch.randn(rows, features, device=device).to(dtype)
    bias = torch.randn(features, device=device).to(dtype)
    residual = torch.randn(rows, features, device=device).to(dtype)
    grad = torch.ones_like(x)
    torch_activation = _TORCH_ACTIVATIONS[activation]

    def dropkit_op(t: Tensor, b: Tensor, r: Tensor) -> Tensor:
        return F.bias_act_dropout_add(t, b, r, rate, activation, seed=1, step=steps())  # type: ignore[arg-type]

    def reference_op(t: Tensor, b: Tensor, r: Tensor) -> Tensor:
        with kernels.use_backend("reference"):
            return dropkit_op(t, b, r)

    def torch_op(t: Tensor, b: Tensor, r: Tensor) -> Tensor:
        return r + torch_functional.dropout(torch_activation(t + b), rate, training=True)

    providers = {"dropkit": dropkit_op, "reference": reference_op, "torch": torch_op}
    calls: dict[tuple[str, str], Callable[[], object]] = {}
    for provider, fn in providers.items():
        leaves = [t.detach().requires_grad_(True) for t in (x, bias, residual)]

        def forward(fn: Callable[..., Tensor] = fn) -> None:
            with torch.no_grad():
                fn(x, bias, residual)

        def forward_backward(fn: Callable[..., Tensor] = fn, leaves: list[Tensor] = leaves) -> None:
            fn(*leaves).backward(grad)
            for leaf in leaves:
                leaf.grad = None

        calls[(provider, "fwd")] = forward
        calls[(provider, "fwd+bwd")] = forward_backward

    def add_twice() -> None:  # floor of fwd+bwd: the forward's bytes, then the backward's
        x + residual
        grad + x

    calls[("floor", "fwd")] = lambda: x + residual
    calls[("floor", "fwd+bwd")] = add_twice
    times = _round_robin(
        calls, device, min_time_s=min_time_s, min_repeats=min_repeats, max_repeats=max_repeats
    )
    held = {
        provider: held_bytes(lambda t, fn=fn: fn(t, bias, residual), x) / x.numel()  # type: ignore[misc]
        for provider, fn in providers.items()
    }
    cells: dict[tuple[str, str], BenchResult] = {}
    for (provider, pass_name), samples in times.items():
        q25, median, q75 = _quartiles(samples)
        cells[(provider, pass_name)] = BenchResult(
            op=f"bias_{activation}_dropout_add",
            provider=provider,
            dtype=str(dtype).removeprefix("torch."),
            numel=x.numel(),
            pass_name=pass_name,
            median_ms=median,
            q25_ms=q25,
            q75_ms=q75,
            repeats=len(samples),
            held_bytes_per_element=held.get(provider, 0.0),
            threads=thread_count,
            p=rate,
        )
    for (_, pass_name), cell in cells.items():
        cell.ratio_to_floor = cell.median_ms / cells[("floor", pass_name)].median_ms
        cell.ratio_to_torch = cell.median_ms / cells[("torch", pass_name)].median_ms
    return list(cells.values())


def format_fused_table(results: Sequence[BenchResult]) -> str:
    """One row per (op, dtype, size, threads, p, pass): median ms per provider, then dropkit's
    time over the floor, PyTorch's and the reference's times over dropkit's, bytes held."""
    header = f"{'op':<26}{'dtype':<9}{'numel':>9}{'thr':>4}{'p':>5} {'pass':<8}" + "".join(
        f"{name:>15}" for name in FUSED_PROVIDERS
    )
    header += f"{'dk/floor':>9}{'pt/dk':>7}{'ref/dk':>7}  {'held B/el dk|pt':<15}"
    lines = [header, "-" * len(header)]
    rows: dict[tuple[str, str, int, int, float, str], dict[str, BenchResult]] = {}
    for r in results:
        rows.setdefault((r.op, r.dtype, r.numel, r.threads, r.p, r.pass_name), {})[r.provider] = r
    for (op, dtype, numel, threads, rate, pass_name), cells in rows.items():
        row = f"{op:<26}{dtype:<9}{numel:>9}{threads:>4}{rate:>5} {pass_name:<8}"
        for name in FUSED_PROVIDERS:
            cell = cells[name]
            row += f"{cell.median_ms:>8.2f}±{(cell.q75_ms - cell.q25_ms) / 2:<6.2f}"
        dk = cells["dropkit"]
        reference_ratio = cells["reference"].median_ms / dk.median_ms
        held = f"{dk.held_bytes_per_element:.2f}|{cells['torch'].held_bytes_per_element:.2f}"
        row += f"{dk.ratio_to_floor:>8.2f}x{1 / dk.ratio_to_torch:>6.1f}x{reference_ratio:>6.1f}x"
        lines.append(row + f"  {held}")
    lines.append("ms: median ± half the inter-quartile range; floor: an allocating x + residual "
                 "(fwd+bwd: two); held: bytes saved for backward per element, "
                 "besides x")  # fmt: skip
    return "\n".join(lines)
