"""The CPU fast path (numba): bit-equal to the reference everywhere, any thread count."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

import dropkit.functional as F
from dropkit import kernels, rng
from dropkit.kernels.reference import ReferenceBackend
from tests.kernels._calls import OpCalls

numba = pytest.importorskip("numba")

from dropkit.kernels.cpu import PARALLEL_MIN_NUMEL, CPUBackend, _elementwise  # noqa: E402

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
_BITS = {
    torch.float32: torch.int32,
    torch.bfloat16: torch.int16,
    torch.float16: torch.int16,
    torch.float64: torch.int64,
}
# Above PARALLEL_MIN_NUMEL, and not a multiple of 8: the threaded kernel and ragged blocks.
LARGE = 3 * PARALLEL_MIN_NUMEL + 5


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().view(_BITS[t.dtype])


def assert_bit_equal(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    assert torch.equal(_bits(a), _bits(b)), "CPU backend and reference differ"


def on_both(fn, *args):
    """``fn(*args)`` under the CPU backend and under the reference."""
    with kernels.use_backend("cpu"):
        fast = fn(*args)
    with kernels.use_backend("reference"):
        reference = fn(*args)
    return fast, reference


@pytest.fixture
def count_fused(monkeypatch):
    """Counts launches of the fused kernels, to show a test really ran the fast path."""
    calls = {"fused": 0}
    original = CPUBackend._bernoulli

    def counted(self, *args):
        calls["fused"] += 1
        return original(self, *args)

    monkeypatch.setattr(CPUBackend, "_bernoulli", counted)
    return calls


def test_auto_picks_cpu_backend_for_cpu_floats():
    for dtype in DTYPES:
        assert (
            kernels.backend_for(kernels.SPECS["dropout"], torch.ones(2, dtype=dtype)).name == "cpu"
        )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 1001), (2, 3, 5, 7), (LARGE,)])
@pytest.mark.parametrize("offset", [0, 3, 13])
def test_dropout_family_bit_equal(dtype, shape, offset, count_fused):
    x = torch.randn(shape).to(dtype)
    kw = {"seed": 2**63 + 12345, "step": 2**32 + 7, "offset": offset}
    ops = [
        lambda t: F.dropout(t, 0.3, **kw),
        lambda t: F.dropout(t, 0.3, mode="standard", **kw),
        lambda t: F.alpha_dropout(t, 0.2, **kw),
    ]  # Gaussian dropout (normals within ulps, not bits): tests/kernels/test_cpu_layouts.py
    for op in ops:
        assert_bit_equal(*on_both(op, x))
    assert count_fused["fused"] >= 3


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.0, 1e-6, 2e-5, 0.1, 0.5, 1.0 - 2**-16, 1.0])
def test_rate_corner_cases(dtype, p):
    # A tensor rate reaches the kernel even for p = 0 (t = 0: keep all) and p = 1 (drop all).
    x = torch.randn(4099).to(dtype)
    rate = torch.tensor(p)
    for op in (
        lambda t: F.dropout(t, rate, seed=5, step=1, offset=1),
        lambda t: F.alpha_dropout(t, rate, seed=5, step=1, offset=1),
    ):
        fast, reference = on_both(op, x)
        assert_bit_equal(fast, reference)
    with kernels.use_backend("cpu"):
        y = F.dropout(x, rate, seed=5)
    if rng.threshold(p) == 0:  # p = 0 and p = 1e-6 round to t = 0: everything kept
        assert torch.equal(y, x)
    if p == 1.0:
        assert bool((y == 0).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_layouts_and_noise_shapes_bit_equal(dtype):
    x = torch.randn(4, 6, 9, 11).to(dtype)
    inputs = {
        "channels_last": x.to(memory_format=torch.channels_last),
        "strided": x[:, ::2, :, 1::3],
        "transposed": x.transpose(1, 3),
    }
    for name, t in inputs.items():
        for op in (
            lambda u: F.dropout(u, 0.3, seed=3, step=2, offset=5),
            lambda u: F.spatial_dropout(u, 0.3, seed=3, step=2),
            lambda u: F.locked_dropout(u, 0.3, time_dim=2, seed=3, step=2),
            lambda u: F.feature_alpha_dropout(u, 0.3, seed=3),
            lambda u: F.dropout(u, 0.3, noise_shape=(None, 1, None, None), seed=3),
        ):
            fast, reference = on_both(op, t)
            assert_bit_equal(fast, reference)
            assert fast.stride() == reference.stride(), name
    # A layout does not change the mask: channels_last equals its contiguous twin.
    with kernels.use_backend("cpu"):
        twin = F.dropout(inputs["channels_last"], 0.3, seed=3)
        assert_bit_equal(twin.contiguous(), F.dropout(x, 0.3, seed=3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_thread_count_does_not_change_bits(dtype):
    x = torch.randn(5 * PARALLEL_MIN_NUMEL + 3).to(dtype)
    outputs = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with kernels.use_backend("cpu"):
            outputs.append(
                [
                    F.dropout(x, 0.5, seed=9, step=4, offset=7),
                    F.alpha_dropout(x, 0.1, seed=9),
                    F.gaussian_dropout(x, 0.1, seed=9),
                    F.locked_dropout(x[:-3].view(5, -1), 0.5, time_dim=0, seed=9),
                ]
            )
    for one, two in zip(*outputs, strict=True):
        assert_bit_equal(one, two)


def test_gradcheck_through_fast_path(count_fused):
    x = torch.randn(3, 37, dtype=torch.float64, requires_grad=True)
    with kernels.use_backend("cpu"):
        assert torch.autograd.gradcheck(lambda t: F.dropout(t, 0.3, seed=4, offset=3), (x,))
        assert torch.autograd.gradcheck(lambda t: F.alpha_dropout(t, 0.3, seed=4), (x,))
        assert torch.autograd.gradgradcheck(lambda t: F.alpha_dropout(t, 0.3, seed=4), (x,))
    assert count_fused["fused"] > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_backward_bit_equal_and_nothing_held(dtype):
    x = torch.randn(2, 1003).to(dtype)
    grad = torch.randn(2, 1003).to(dtype)

    def grads(op):
        leaf = x.clone().requires_grad_(True)
        op(leaf).backward(grad)
        return leaf.grad

    for op in (
        lambda t: F.dropout(t, 0.3, seed=1, step=3),
        lambda t: F.alpha_dropout(t, 0.3, seed=1, step=3),
    ):
        assert_bit_equal(*on_both(grads, op))
    from dropkit.benchmark import held_bytes

    with kernels.use_backend("cpu"):
        assert held_bytes(lambda t: F.dropout(t, 0.3, seed=1), x) <= 64


def test_out_and_inplace_write_without_temporary(count_fused):
    x = torch.randn(LARGE)
    with kernels.use_backend("reference"):
        expected = F.dropout(x, 0.2, seed=6, step=1)
    out = torch.empty_like(x)
    assert F.dropout(x, 0.2, seed=6, step=1, out=out) is out
    assert_bit_equal(out, expected)
    y = x.clone()
    pointer = y.data_ptr()
    with torch.no_grad():
        result = F.dropout(y, 0.2, seed=6, step=1, inplace=True)
    assert result is y and y.data_ptr() == pointer
    assert_bit_equal(y, expected)
    assert count_fused["fused"] == 2
    # Where autograd records, inplace still gives the right gradient.
    leaf = x.clone().requires_grad_(True)
    hidden = leaf * 1.0
    F.dropout(hidden, 0.2, seed=6, step=1, inplace=True).sum().backward()
    assert torch.equal(leaf.grad, (expected != 0).float() / (1 - 13107 / 65536))


def test_out_bad_arguments():
    x = torch.randn(8)
    with pytest.raises(ValueError, match="out must have the input's shape"):
        F.dropout(x, 0.5, seed=1, out=torch.empty(9))
    with pytest.raises(ValueError, match="out and inplace=True cannot"):
        F.dropout(x, 0.5, seed=1, out=torch.empty(8), inplace=True)
    with pytest.raises(TypeError, match=r"out must be a torch\.Tensor"):
        F.dropout(x, 0.5, seed=1, out=[0.0])
    with pytest.raises(RuntimeError, match="don't support automatic differentiation"):
        F.dropout(x.requires_grad_(True), 0.5, seed=1, out=torch.empty(8))


def test_out_in_eval_copies_input():
    x = torch.randn(8)
    out = torch.empty(8)
    assert F.dropout(x, 0.5, training=False, out=out) is out
    assert torch.equal(out, x)


def test_compile_failure_falls_back_with_one_warning(monkeypatch):
    def broken(*args):
        raise numba.core.errors.TypingError("forced failure")

    monkeypatch.setattr(_elementwise, "bernoulli_span", broken)
    backend, reference = OpCalls(CPUBackend()), OpCalls(ReferenceBackend())
    x = torch.randn(100)
    args = (torch.tensor(0.3), torch.tensor(7), torch.tensor(1), 3, [100], True)
    with pytest.warns(RuntimeWarning, match="could not compile its kernels"):
        y = backend.dropout(x, *args)
    assert_bit_equal(y, reference.dropout(x, *args))
    assert not backend.supports(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_bit_equal(backend.dropout(x, *args), y)


def test_missing_numba_falls_back_to_reference():
    code = (
        "import sys, warnings; sys.modules['numba'] = None\n"
        "import torch, dropkit.functional as F\n"
        "from dropkit import kernels\n"
        "x = torch.randn(1000)\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    y = F.dropout(x, 0.3, seed=1)\n"
        "    F.dropout(x, 0.3, seed=1)\n"
        "with kernels.use_backend('reference'):\n"
        "    z = F.dropout(x, 0.3, seed=1)\n"
        "print(kernels.backend_for(kernels.SPECS['dropout'], x).name, torch.equal(y, z),\n"
        "      sum('unavailable' in str(w.message) for w in caught))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["reference", "True", "1"]


def test_torch_compile_parity():
    x = torch.randn(4, 257)
    compiled = torch.compile(lambda t: F.dropout(t, 0.3, seed=2, step=1), fullgraph=True)
    with kernels.use_backend("reference"):
        expected = F.dropout(x, 0.3, seed=2, step=1)
    assert_bit_equal(compiled(x), expected)


def test_partially_overlapping_out_reads_the_input_before_writing():
    storage = torch.randn(200)
    expected = F.dropout(storage[:100].clone(), 0.5, seed=1)
    # The fused kernel would read elements it had already written: this case takes the
    # reference path, whose select reads a scaled copy of the input.
    F.dropout(storage[:100], 0.5, seed=1, out=storage[50:150])
    assert_bit_equal(storage[50:150], expected)


def test_concurrent_python_threads_get_the_same_bits():
    # numba's workqueue pool is not re-entrant: the backend serialises threaded launches.
    import threading

    torch.set_num_threads(2)
    x = torch.randn(2 * PARALLEL_MIN_NUMEL + 1)
    expected = F.dropout(x, 0.3, seed=1)
    results: list[bool] = []

    def worker() -> None:
        for _ in range(10):
            results.append(torch.equal(F.dropout(x, 0.3, seed=1), expected))

    workers = [threading.Thread(target=worker) for _ in range(4)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert len(results) == 40 and all(results)


@pytest.mark.parametrize("launch", ["openmp", "numba"])
@pytest.mark.parametrize("threads", [2, 3])
def test_openmp_and_numba_launches_bit_equal(launch, threads, monkeypatch):
    # The fused pass runs on PyTorch's OpenMP team where its libgomp is found, else on numba's
    # pool; both, with any team size, give the reference's bits (out=, in place, alpha).
    from dropkit.kernels.cpu import _launch

    launcher = _launch.bernoulli_launcher()
    if launch == "openmp":
        if launcher is None:
            pytest.skip("PyTorch's libgomp not found: the numba pool is used")
        calls = {"count": 0}

        def counted(*args):  # type: ignore[no-untyped-def]
            calls["count"] += 1
            return launcher(*args)

        monkeypatch.setattr(_launch, "bernoulli_launcher", lambda: counted)
    else:
        calls = {"count": -1}
        monkeypatch.setattr(_launch, "bernoulli_launcher", lambda: None)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        kw = {"seed": 2**63 + 5, "step": 2**32 + 3, "offset": 11}
        for dtype in DTYPES:
            x = torch.randn(LARGE).to(dtype)
            for op in (
                lambda t: F.dropout(t, 0.3, **kw),
                lambda t: (lambda u: F.dropout(u, 0.3, out=u, **kw))(t.clone()),  # in place
                lambda t: F.dropout(t, 0.3, out=torch.empty_like(t), **kw),
                lambda t: F.alpha_dropout(t, 0.2, **kw),
            ):
                assert_bit_equal(*on_both(op, x))
    finally:
        torch.set_num_threads(previous)
    assert calls["count"] == (4 * len(DTYPES) if launch == "openmp" else -1)


def test_python_threshold_equals_the_tensor_threshold() -> None:
    from dropkit.kernels.cpu import backend as cpu_backend

    ties = (torch.arange(0, 65536, 97, dtype=torch.float64) + 0.5) / 65536  # exact halves
    gen = torch.Generator().manual_seed(4)
    rates = torch.cat(
        [
            ties,
            torch.rand(4000, generator=gen, dtype=torch.float64),
            torch.tensor([0.0, 1.0, 2.0**-17, 1 - 2.0**-25, 0.1, 0.5], dtype=torch.float64),
        ]
    )
    for dtype in (torch.float32, torch.float64):
        for rate in rates.to(dtype):
            assert cpu_backend._threshold(rate) == int(rng.threshold_tensor(rate)), float(rate)
