"""Primitive ops with a 1-D ``step``: dim-0 group ``j`` drawn with ``step[j]``, bit for bit as
``k`` separate calls, on every backend (the CPU one in one kernel call)."""

from __future__ import annotations

import pytest
import torch

from dropkit import kernels
from dropkit.kernels import _ops

# The Triton backend has no out= kernel: forcing it routes out= to the reference (that is the
# documented fallback, tested elsewhere), with a one-time warning this module does not need.
pytestmark = pytest.mark.filterwarnings("ignore:dropkit backend 'triton' cannot run dropout_out")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
STEPS = [3, 2**40 + 7, 11, 2**62 + 5]
_BITS = {
    torch.float32: torch.int32,
    torch.bfloat16: torch.int16,
    torch.float16: torch.int16,
    torch.float64: torch.int64,
}
OPS = {
    "dropout": lambda x, r, s, t, o, m: _ops.dropout(x, r, s, t, o, m, True),
    "dropout_unscaled": lambda x, r, s, t, o, m: _ops.dropout(x, r, s, t, o, m, False),
    "alpha_dropout": _ops.alpha_dropout,
    "alpha_dropout_backward": _ops.alpha_dropout_backward,
    "gaussian_dropout": _ops.gaussian_dropout,
}


def _backends() -> list[object]:
    no_numba = DEVICE != "cpu" or not _importable("numba")
    return [
        "reference",
        pytest.param("cpu", marks=pytest.mark.skipif(no_numba, reason="numba, CPU run")),
        pytest.param("triton", marks=pytest.mark.skipif(not _importable("triton"), reason="")),
    ]


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(_BITS[t.dtype])


def _args(p: float = 0.3, seed: int = 2**63 + 9) -> tuple[torch.Tensor, torch.Tensor]:
    rate = torch.tensor(p, dtype=torch.float32, device=DEVICE)
    return rate, torch.tensor(seed - 2**64 if seed >= 2**63 else seed, device=DEVICE)


def _separately(op, x, rate, seed, steps, offset, mask_shape):  # type: ignore[no-untyped-def]
    k = steps.numel()
    parts = x.unflatten(0, (k, x.shape[0] // k)).unbind(0)
    return torch.cat(
        [
            op(part, rate, seed, step, offset, mask_shape)
            for part, step in zip(parts, steps, strict=True)
        ]
    )


def _x(shape, dtype=torch.float32) -> torch.Tensor:  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=gen).to(device=DEVICE, dtype=dtype)


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize(
    "mask_shape",
    [[5, 3, 7], [1, 3, 7], [5, 1, 7]],
    ids=["full", "batch_consistent", "broadcast"],
)
def test_vector_step_equals_separate_calls(backend, name, mask_shape):
    x, op = _x((4 * 5, 3, 7)), OPS[name]
    rate, seed = _args()
    steps = torch.tensor(STEPS, device=DEVICE)
    with kernels.use_backend(backend):
        grouped = op(x, rate, seed, steps, 13, mask_shape)
        separate = _separately(op, x, rate, seed, steps, 13, mask_shape)
    assert torch.equal(_bits(grouped), _bits(separate))
    assert not torch.equal(grouped[:5], grouped[5:10]), "groups must draw different masks"


@pytest.mark.parametrize("backend", _backends())
def test_vector_step_dropout_out_in_place_and_into_out(backend):
    x = _x((3 * 4, 9))
    rate, seed = _args(0.5)
    steps = torch.tensor(STEPS[:3], device=DEVICE)
    with kernels.use_backend(backend):
        expected = _separately(OPS["dropout"], x, rate, seed, steps, 0, [4, 9])
        out = torch.full_like(x, float("nan"))
        _ops.dropout_out(x, rate, seed, steps, 0, [4, 9], True, out)
        inplace = x.clone()
        _ops.dropout_out(inplace, rate, seed, steps, 0, [4, 9], True, inplace)
    assert torch.equal(out, expected) and torch.equal(inplace, expected)


@pytest.mark.parametrize("backend", _backends())
def test_vector_step_backward_regenerates_each_groups_mask(backend):
    x = _x((2 * 6, 5)).requires_grad_(True)
    rate, seed = _args(0.4)
    steps = torch.tensor(STEPS[:2], device=DEVICE)
    with kernels.use_backend(backend):
        y = _ops.dropout(x, rate, seed, steps, 0, [6, 5], True)
        y.backward(torch.ones_like(y))
        ones = torch.ones_like(x.detach())
        expected = _separately(OPS["dropout"], ones, rate, seed, steps, 0, [6, 5])
    assert x.grad is not None and torch.equal(x.grad, expected)


@pytest.mark.parametrize("dtype", list(_BITS), ids=str)
@pytest.mark.parametrize("threads", [1, 2])
def test_cpu_grouped_is_one_kernel_call_bit_equal_to_reference(dtype, threads, monkeypatch):
    pytest.importorskip("numba")
    if DEVICE != "cpu":
        pytest.skip("CPU backend")
    from dropkit.kernels.cpu import PARALLEL_MIN_NUMEL, _elementwise, _launch

    # Only kernels launched from Python are patched: a jit function calling a patched one
    # (bernoulli_span) would no longer compile. Threaded, the launch goes to PyTorch's OpenMP
    # team where its libgomp is found (keys with one row per group), else to numba's pool.
    launches = {"grouped": 0, "single": 0}
    for kernel, kind in [
        ("bernoulli_groups", "grouped"),
        ("bernoulli_groups_parallel", "grouped"),
        ("bernoulli", "single"),
    ]:
        original = getattr(_elementwise, kernel)

        def counted(*args, _original=original, _kind=kind):  # type: ignore[no-untyped-def]
            launches[_kind] += 1
            return _original(*args)

        monkeypatch.setattr(_elementwise, kernel, counted)
    launcher, on_openmp = _launch.bernoulli_launcher(), []
    if launcher is not None:

        def counted_openmp(x, out, offset, keys, *args):  # type: ignore[no-untyped-def]
            launches["grouped" if keys.ndim == 2 and len(keys) > 1 else "single"] += 1
            on_openmp.append(True)
            return launcher(x, out, offset, keys, *args)

        monkeypatch.setattr(_launch, "bernoulli_launcher", lambda: counted_openmp)
    rows = PARALLEL_MIN_NUMEL // 64 + 3  # a group above the threading threshold, ragged blocks
    x = _x((5 * rows, 65), dtype)
    rate, seed = _args(0.25)
    steps = torch.tensor([*STEPS, 0], device=DEVICE)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with kernels.use_backend("cpu"):
            fast = _ops.dropout(x, rate, seed, steps, 5, [rows, 65], True)
    finally:
        torch.set_num_threads(previous)
    assert launches == {"grouped": 1, "single": 0}
    assert len(on_openmp) == (1 if launcher is not None and threads > 1 else 0)
    with kernels.use_backend("reference"):
        reference = _separately(OPS["dropout"], x, rate, seed, steps, 5, [rows, 65])
    assert torch.equal(_bits(fast), _bits(reference))


def test_step_must_divide_the_leading_dim():
    x = _x((10, 3))
    rate, seed = _args()
    with pytest.raises(ValueError, match="step must be 0-d or 1-D"):
        _ops.dropout(x, rate, seed, torch.tensor([1, 2, 3], device=DEVICE), 0, [10, 3], True)
    with pytest.raises(ValueError, match="step must be 0-d or 1-D"):
        _ops.dropout(x, rate, seed, torch.zeros(2, 1, dtype=torch.int64), 0, [5, 3], True)
