"""The backend parity table: every op of :data:`dropkit.kernels.SPECS`, run on a backend and on
the reference with the same ``(seed, step, offset)``, must give the same bits.

This module does not import pytest: ``tests/kernels/test_gpu_parity.py`` runs it under pytest
(small sizes through the Triton interpreter and the CPU backend in the default suite; full sizes
on a CUDA device behind the ``gpu`` marker), and ``benchmarks/gpu_check.py`` imports it on the
GPU machine, where pytest may be missing.

A case is chosen by the spec's *kind* (:func:`kind_of`: its epilogue, or its draw for the
elementwise family), so a new spec of an existing kind is covered without an edit here; a new
kind needs a case builder in :data:`CASES` (``test_every_spec_has_a_parity_case`` fails until
it has one). Bernoulli ops are compared bit for bit; normals (log/sin/cos) and the fused
activations (erf, exp) within float tolerance, their masks still bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from dropkit.kernels import SPECS, Draw, OpSpec, _dispatch
from dropkit.kernels._dispatch import Backend, Epilogue

__all__ = [
    "CASES",
    "DTYPES",
    "Result",
    "backend_named",
    "check_spec",
    "failures",
    "kind_of",
    "run_all",
    "special_checks",
]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
RATES = (0.0, 0.3, 1.0)
#: How many cases to run: ``"quick"`` (the default suite: one input per kind of layout, p = 0.3,
#: and p = 0 and 1 on the first), ``"small"`` (every layout at small sizes, p in RATES),
#: ``"full"`` (a CUDA device: GPU sizes too).
LEVELS = ("quick", "small", "full")
SEED = 2**40 + 12345
STEP = 3
ACTIVATIONS = ("identity", "gelu", "gelu_tanh", "relu", "silu")
#: Activations whose values come from libm functions that may differ in the last bit.
TRANSCENDENTAL = ("gelu", "gelu_tanh", "silu")


@dataclass
class Result:
    """One compared case: ``passed``, or ``detail`` says what differed."""

    case: str
    passed: bool
    detail: str = ""
    skipped: bool = False


#: (label, outputs): one backend call's result as a tuple of tensors.
Call = Callable[[Backend], tuple[Tensor, ...]]


@dataclass
class Case:
    """One parity case: ``call(backend)`` and whether each output must be bit-equal."""

    label: str
    call: Call
    exact: tuple[bool, ...]


def kind_of(spec: OpSpec) -> str:
    """The case builder a spec takes: ``"draws"`` for a draw op, its epilogue, else
    ``"elementwise"``."""
    if spec.draws_only:
        return "draws"
    return spec.epilogue or "elementwise"


def backend_named(name: str) -> Backend | None:
    """The registered backend ``name`` (loading a lazy one), or None if it is unavailable."""
    backend = _dispatch._resolve(name)
    if backend is None or isinstance(backend, _dispatch._Unavailable):
        return None
    return backend


def _randn(shape: Sequence[int], dtype: torch.dtype, device: torch.device, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(shape), generator=gen).to(device=device, dtype=dtype)


def _rng(device: torch.device, rate: float) -> tuple[Tensor, Tensor, Tensor]:
    return (
        torch.tensor(rate, dtype=torch.float32, device=device),
        torch.tensor(SEED, dtype=torch.int64, device=device),
        torch.tensor(STEP, dtype=torch.int64, device=device),
    )


def _rates(level: str, first: bool) -> tuple[float, ...]:
    return (0.3,) if level == "quick" and not first else RATES


def _layouts(device: torch.device, dtype: torch.dtype, level: str) -> list[tuple[str, Tensor]]:
    """Inputs in the layouts each backend plans separately: odd sizes, 4-D, channels_last (H*W
    a multiple of 8 or not), strided views, rows of >= 128 unit-stride elements."""
    full = level == "full"
    if level == "quick":
        return [
            ("(1031,)", _randn((1031,), dtype, device, 0)),
            ("(3,5,7,11)", _randn((3, 5, 7, 11), dtype, device, 1)),
            ("channels_last8", _randn((2, 5, 4, 6), dtype, device, 2).contiguous(
                memory_format=torch.channels_last)),
            ("strided", _randn((8, 130), dtype, device, 3)[:, 1::2]),
        ]  # fmt: skip
    sizes = [(1,), (7,), (4097,)] + ([(1_000_003,)] if full else [])
    out = [(str(size), _randn(size, dtype, device, len(size) + size[0])) for size in sizes]
    out.append(("(3,5,7,11)", _randn((3, 5, 7, 11), dtype, device, 1)))
    channels_last = (8, 16, 33, 17) if full else (2, 3, 5, 7)
    channels_last8 = (8, 24, 16, 16) if full else (2, 5, 4, 6)
    for label, shape in (("channels_last", channels_last), ("channels_last8", channels_last8)):
        x = _randn(shape, dtype, device, 2).contiguous(memory_format=torch.channels_last)
        out.append((label, x))
    out.append(("strided", _randn((64, 130), dtype, device, 3)[:, 1::2]))
    out.append(("rows", _randn((4, 6, 16, 24) if full else (2, 3, 12, 12), dtype, device, 4)))
    out.append(("row_slice", _randn((24, 300), dtype, device, 5)[:, 17:250]))
    return out


def _mask_shapes(x: Tensor) -> list[tuple[str, list[int]]]:
    """The full mask and, where ``x`` has the dims, spatial (one per (N, C)) and locked (one
    shared over dim 0) masks."""
    shapes = [("full", list(x.shape))]
    if x.dim() >= 3:
        shapes.append(("spatial", [*x.shape[:2], *[1] * (x.dim() - 2)]))
    if x.dim() >= 2:
        shapes.append(("locked", [1, *x.shape[1:]]))
    return shapes


def _elementwise_cases(
    spec: OpSpec, device: torch.device, dtype: torch.dtype, level: str
) -> Iterator[Case]:
    exact = spec.draw == "bernoulli"
    for index, (label, x) in enumerate(_layouts(device, dtype, level)):
        for mask_label, mask_shape in _mask_shapes(x):
            for rate in _rates(level, index == 0):
                draw = Draw(*_rng(device, min(rate, 0.9)), 5, mask_shape)

                def call(backend: Backend, x: Tensor = x, draw: Draw = draw) -> tuple[Tensor, ...]:
                    return (backend.run(spec, x, draw),)  # type: ignore[return-value]

                yield Case(f"{label}/{mask_label}/p={rate}", call, (exact,))


def _fused_shapes(level: str) -> list[tuple[int, int]]:
    # Widths that are multiples of 8 (with offset 16) take Triton's backward that reduces the
    # bias gradient in the kernel; the others the elementwise backward.
    if level == "quick":
        return [(7, 33), (4, 264)]
    return [(7, 33), (5, 4097), (4, 264)] + ([(64, 768), (3, 8192)] if level == "full" else [])


def _bias_act_add_cases(
    spec: OpSpec, device: torch.device, dtype: torch.dtype, level: str
) -> Iterator[Case]:
    for shape in _fused_shapes(level):
        x = _randn(shape, dtype, device, 6)
        bias = _randn(shape[-1:], dtype, device, 7)
        residual = _randn(shape, dtype, device, 8)
        offset = 16 if shape[-1] % 8 == 0 else 3
        draw = Draw(*_rng(device, 0.3), offset, list(shape))
        for activation in ACTIVATIONS:
            for with_residual in (True, False):
                epilogue = Epilogue(activation, bias, residual if with_residual else None)

                def call(
                    backend: Backend,
                    x: Tensor = x,
                    draw: Draw = draw,
                    epilogue: Epilogue = epilogue,
                ) -> tuple[Tensor, ...]:
                    return (backend.bias_act_add(spec, x, draw, epilogue),)

                exact = activation not in TRANSCENDENTAL
                suffix = "+residual" if with_residual else ""
                yield Case(f"{shape}/{activation}{suffix}", call, (exact,))


def _bias_act_backward_cases(
    spec: OpSpec, device: torch.device, dtype: torch.dtype, level: str
) -> Iterator[Case]:
    for shape in _fused_shapes(level):
        grad = _randn(shape, dtype, device, 9)
        x = _randn(shape, dtype, device, 10)
        bias = _randn(shape[-1:], dtype, device, 11)
        offset = 16 if shape[-1] % 8 == 0 else 3
        draw = Draw(*_rng(device, 0.3), offset, list(shape))
        for activation in ACTIVATIONS:
            epilogue = Epilogue(activation, bias, input=x)

            def call(
                backend: Backend,
                grad: Tensor = grad,
                draw: Draw = draw,
                epilogue: Epilogue = epilogue,
            ) -> tuple[Tensor, ...]:
                return tuple(backend.bias_act_backward(spec, grad, draw, epilogue))

            # The bias gradient is summed in each backend's own order: within tolerance.
            yield Case(f"{shape}/{activation}", call, (activation not in TRANSCENDENTAL, False))


def _residual_add_cases(
    spec: OpSpec, device: torch.device, dtype: torch.dtype, level: str
) -> Iterator[Case]:
    shapes = {
        "quick": [(4, 3, 5), (3, 700)],
        "small": [(4, 3, 5), (3, 700), (9,), (6, 4, 3000)],
        "full": [(4, 3, 5), (3, 700), (9,), (6, 4, 3000), (64, 197, 768)],
    }[level]
    for index, shape in enumerate(shapes):
        branch = _randn(shape, dtype, device, 12)
        residual = _randn(shape, dtype, device, 13)
        masks = [("per sample", [shape[0], *[1] * (len(shape) - 1)]), ("batch", [1] * len(shape))]
        if len(shape) >= 2:
            masks.append(("dim 1", [1, shape[1], *[1] * (len(shape) - 2)]))
        for mask_label, mask_shape in masks:
            for rate in _rates(level, index == 0):
                draw = Draw(*_rng(device, rate), 5, mask_shape)
                epilogue = Epilogue("identity", None, residual)

                def call(
                    backend: Backend,
                    x: Tensor = branch,
                    draw: Draw = draw,
                    epilogue: Epilogue = epilogue,
                ) -> tuple[Tensor, ...]:
                    return (backend.residual_add(spec, x, draw, epilogue),)

                yield Case(f"{shape}/{mask_label}/p={rate}", call, (True,))


def _draws_cases(
    spec: OpSpec, device: torch.device, dtype: torch.dtype, level: str
) -> Iterator[Case]:
    # The draws have no input (``dtype`` only labels the cases): small shapes at every level.
    shapes = [[7], [3, 5, 7]] if level == "quick" else [[1], [7], [3, 5, 7], [4097]]
    for shape in shapes:
        for offset in (0, 13):
            for rate in (0.0, 0.3, 1.0) if spec.draw == "bernoulli" else (0.0,):
                draw = Draw(*_rng(device, rate), offset, shape)

                def call(backend: Backend, draw: Draw = draw) -> tuple[Tensor, ...]:
                    return (backend.draws(spec, draw),)

                yield Case(f"{shape}/offset={offset}/p={rate}", call, (True,))


#: kind (:func:`kind_of`) -> the cases of a spec of that kind, on a device and dtype, at a
#: level of :data:`LEVELS`.
CASES: dict[str, Callable[[OpSpec, torch.device, torch.dtype, str], Iterator[Case]]] = {
    "elementwise": _elementwise_cases,
    "bias_act_add": _bias_act_add_cases,
    "bias_act_backward": _bias_act_backward_cases,
    "residual_add": _residual_add_cases,
    "draws": _draws_cases,
}


def _poison(device: torch.device, tensors: Sequence[Tensor]) -> None:
    """On CUDA, fill freed allocator blocks of each output's size with 0xFF bytes (NaN in every
    float dtype): an element a kernel forgets to write shows up as NaN."""
    if device.type != "cuda":
        return
    blocks = [
        torch.empty(t.numel() * t.element_size(), dtype=torch.uint8, device=device).fill_(0xFF)
        for t in tensors
        for _ in range(2)
    ]
    del blocks


def _compare(case: str, expected: Tensor, got: Tensor, exact: bool) -> Result:
    if got.shape != expected.shape or got.dtype != expected.dtype:
        return Result(case, False, f"shape/dtype {tuple(got.shape)} {got.dtype}, expected "
                      f"{tuple(expected.shape)} {expected.dtype}")  # fmt: skip
    if got.dim() and got.numel() > 1 and got.stride() != expected.stride():
        return Result(case, False, f"strides {got.stride()}, expected {expected.stride()}")
    if torch.isnan(got).any() and not torch.isnan(expected).any():
        return Result(case, False, "NaN where the reference has none (an unwritten output?)")
    if exact:
        if not torch.equal(got, expected):
            diff = (got.double() - expected.double()).abs()
            return Result(
                case, False, f"{int((diff > 0).sum())} differ, max {float(diff.max()):.3g}"
            )
        return Result(case, True)
    tolerance = 1e-5 if expected.dtype == torch.float32 else 2e-2
    try:
        torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance)
    except AssertionError as error:
        return Result(case, False, str(error).splitlines()[0])
    return Result(case, True)


def check_spec(
    spec: OpSpec, backend: Backend, device: torch.device, dtype: torch.dtype, level: str = "small"
) -> list[Result]:
    """Every case of ``spec`` at ``level`` (:data:`LEVELS`) on ``backend`` against the
    reference."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    reference = _dispatch._BACKENDS[_dispatch.REFERENCE]
    results = []
    prefix = f"{spec.name}/{backend.name}/{str(dtype).removeprefix('torch.')}"
    for case in CASES[kind_of(spec)](spec, device, dtype, level):
        name = f"{prefix}/{case.label}"
        try:
            expected = case.call(reference)
            _poison(device, expected)
            got = case.call(backend)
        except Exception as error:  # report and keep going: one table, many cases
            results.append(Result(name, False, f"raised {error!r}"[:300]))
            continue
        for index, (want, have, exact) in enumerate(zip(expected, got, case.exact, strict=True)):
            results.append(_compare(f"{name}/out{index}", want, have, exact))
    return results


def failures(results: Sequence[Result]) -> list[str]:
    """``"case: detail"`` of every failed result (skipped ones are not failures)."""
    return [f"{r.case}: {r.detail}" for r in results if not r.passed and not r.skipped]


def run_all(
    device: torch.device,
    backend: Backend,
    level: str,
    *,
    dtypes: Sequence[str] = tuple(DTYPES),
    one_per_kind: bool = False,
    out_of_time: Callable[[], bool] = lambda: False,
    progress: Callable[[str], None] = lambda line: None,
) -> list[Result]:
    """Every spec of :data:`~dropkit.kernels.SPECS` (``one_per_kind``: the first of each
    :func:`kind_of`) in every dtype, then :func:`special_checks`; once ``out_of_time()``, the
    rest is reported as skipped."""
    specs = list(SPECS.values())
    if one_per_kind:
        specs = list({kind_of(spec): spec for spec in reversed(specs)}.values())
    results: list[Result] = []
    for dtype_name in dtypes:
        for spec in specs:
            name = f"{spec.name}/{backend.name}/{dtype_name}"
            if out_of_time():
                results.append(Result(name, False, "out of time", skipped=True))
                continue
            progress(name)
            results.extend(check_spec(spec, backend, device, DTYPES[dtype_name], level))
    if out_of_time():
        return [*results, Result("special checks", False, "out of time", skipped=True)]
    progress("special checks")
    return [*results, *special_checks(device, backend)]


# -- checks beyond one spec call: grouped steps, MC sampling, and (CUDA) int64 indexing, CUDA
# -- graphs, torch.compile ------------------------------------------------------------------


def _grouped_step(device: torch.device, backend: Backend) -> list[Result]:
    """A 1-D step (MC sampling's dim-0 groups) in one call equals one call per group on the
    reference; ``dropout_out`` in place gives the same."""
    from dropkit.kernels import _ops, use_backend

    results = []
    rate, seed = _rng(device, 0.3)[:2]
    steps = torch.tensor([3, 2**40 + 1, 7, 0, 11], device=device)
    for dtype_name, dtype in DTYPES.items():
        x = _randn((5 * 6, 70), dtype, device, 14)
        name = f"grouped step/{backend.name}/{dtype_name}"
        with use_backend("reference"):
            expected = torch.cat([
                _ops.dropout(part, rate, seed, step, 4, [6, 70], True)
                for part, step in zip(x.split(6), steps, strict=True)
            ])  # fmt: skip
        with use_backend(backend.name):
            got = _ops.dropout(x, rate, seed, steps, 4, [6, 70], True)
            inplace = x.clone()
            _ops.dropout_out(inplace, rate, seed, steps, 4, [6, 70], True, inplace)
        results.append(_compare(name, expected, got, True))
        results.append(_compare(f"{name}/dropout_out in place", expected, inplace, True))
    return results


def _mc_sample(device: torch.device, backend: Backend) -> list[Result]:
    """``dropkit.uncertainty.sample`` draws the reference's samples on ``backend``."""
    import dropkit
    from dropkit.kernels import use_backend
    from dropkit.uncertainty import sample

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(16, 64), dropkit.nn.Dropout(0.2, seed=1), torch.nn.ReLU(),
        torch.nn.Linear(64, 3),
    ).to(device)  # fmt: skip
    inputs = _randn((40, 16), torch.float32, device, 15)
    draws = {}
    for name in ("reference", backend.name):
        with use_backend(name):
            draws[name] = sample(net, inputs, samples=12, seed=5, batch_budget=1 << 20)
    # The linear layers' matmuls may differ in the last bits between runs: float tolerance.
    return [_compare(f"uncertainty.sample/{backend.name}", draws["reference"], draws[backend.name],
                     False)]  # fmt: skip


def _int64_index(device: torch.device) -> list[Result]:
    """Past 2**31 elements: the tail equals the reference drawn at the matching offset."""
    import dropkit.functional as F
    from dropkit.kernels import use_backend

    n = 2**31 + 77
    x = torch.randn(1 << 20, device=device, dtype=torch.bfloat16).repeat(2049)[:n]
    got = F.dropout(x, 0.5, seed=SEED)
    tail = 1 << 20
    with use_backend("reference"):
        expected = F.dropout(x[-tail:], 0.5, seed=SEED, offset=n - tail)
    result = _compare("int64 index: tail of 2**31+77 elements", expected, got[-tail:], True)
    del x, got
    torch.cuda.empty_cache()
    return [result]


def _cuda_graph(device: torch.device) -> list[Result]:
    """Replays read the step buffer: each replay draws a fresh mask, equal to eager's."""
    import dropkit
    import dropkit.functional as F

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
    expected = F.dropout(x, 0.5, seed=7, step=step_before + 1)
    fresh = not torch.equal(replays[0], replays[1])
    return [
        Result("cuda graph: fresh mask per replay", fresh),
        _compare("cuda graph: replay equals eager", expected, replays[1], True),
    ]


def _compiled_modules(device: torch.device) -> list[Result]:
    """torch.compile (inductor) of dropkit modules gives eager's bits."""
    import dropkit

    results = []
    modules = [
        (dropkit.nn.Dropout(0.3, seed=5), [(4096,)]),
        (dropkit.nn.BiasActDropoutAdd(0.3, "gelu", seed=5), [(16, 256), (256,), (16, 256)]),
    ]
    for module, shapes in modules:
        module = module.to(device)
        inputs = [_randn(shape, torch.float32, device, 16) for shape in shapes]
        compiled = torch.compile(module, fullgraph=True)
        state = {k: v.clone() for k, v in module.state_dict().items()}
        got = compiled(*inputs)
        module.load_state_dict(state)
        results.append(
            _compare(f"torch.compile {type(module).__name__}", module(*inputs), got, True)
        )
    return results


def special_checks(device: torch.device, backend: Backend) -> list[Result]:
    """The checks beyond one spec call; the CUDA-only ones (int64 indexing, CUDA graphs,
    inductor) run on a CUDA device only. A check that raises is one failed result."""
    checks: list[tuple[str, Callable[[], list[Result]]]] = [
        ("grouped step", lambda: _grouped_step(device, backend)),
        ("uncertainty.sample", lambda: _mc_sample(device, backend)),
    ]
    if device.type == "cuda":
        checks += [
            ("int64 index", lambda: _int64_index(device)),
            ("cuda graph", lambda: _cuda_graph(device)),
            ("torch.compile", lambda: _compiled_modules(device)),
        ]
    results = []
    for name, check in checks:
        try:
            results.extend(check())
        except Exception as error:  # report and keep going
            results.append(Result(name, False, f"raised {error!r}"[:300]))
    return results
