"""The CPU fast path's layout pass: broadcast masks (spatial, locked, feature-alpha, Keras
``noise_shape``), full masks over any layout, and Gaussian dropout, each in one numba pass,
bit-equal to the reference (Gaussian: within stated ulps)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import dropkit.functional as F
from dropkit import kernels, rng
from dropkit.kernels import _ops
from dropkit.kernels.reference import ReferenceBackend
from tests.kernels._calls import OpCalls

numba = pytest.importorskip("numba")

from dropkit.kernels.cpu import PARALLEL_MIN_NUMEL, CPUBackend, _layout, _philox  # noqa: E402
from dropkit.kernels.cpu.backend import _philox_key  # noqa: E402

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
_BITS = {
    torch.float32: torch.int32,
    torch.bfloat16: torch.int16,
    torch.float16: torch.int16,
    torch.float64: torch.int64,
}
#: Largest difference allowed between the kernel's float32 normals and the reference's, in
#: float32 ulps of the reference value (log, sin and cos are numba's libm vs PyTorch's).
NORMAL_ULPS = 4


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().view(_BITS[t.dtype])


def assert_bit_equal(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype and a.stride() == b.stride()
    assert torch.equal(_bits(a), _bits(b)), "CPU layout pass and reference differ"


def on_both(fn, *args):  # type: ignore[no-untyped-def]
    with kernels.use_backend("cpu"):
        fast = fn(*args)
    with kernels.use_backend("reference"):
        reference = fn(*args)
    return fast, reference


@pytest.fixture
def count_layout(monkeypatch):  # type: ignore[no-untyped-def]
    """Counts layout passes, to show a test ran the one-pass path, not the reference select."""
    calls = {"layout": 0}
    original = CPUBackend._layout_pass

    def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["layout"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CPUBackend, "_layout_pass", counted)
    return calls


def _inputs(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x4 = torch.randn(3, 5, 7, 9, generator=gen).to(dtype)
    x5 = torch.randn(2, 3, 4, 5, 3, generator=gen).to(dtype)
    return {
        "2d": x4,
        "2d_channels_last": x4.to(memory_format=torch.channels_last),
        "2d_strided": x4[:, 1::2, :, ::3],
        "2d_transposed": x4.transpose(1, 3),
        "3d": x5,
        "3d_channels_last": x5.to(memory_format=torch.channels_last_3d),
        "1d": x4[:, :, 0, :],
    }


BROADCAST_OPS = {
    "spatial": lambda t, p, kw: F.spatial_dropout(t, p, **kw),
    "spatial_channel_last_dim": lambda t, p, kw: F.spatial_dropout(t, p, channel_dim=-1, **kw),
    "spatial_unbatched": lambda t, p, kw: F.spatial_dropout(t, p, batch_dim=None, **kw),
    "locked_time0": lambda t, p, kw: F.locked_dropout(t, p, time_dim=0, **kw),
    "locked_time1": lambda t, p, kw: F.locked_dropout(t, p, time_dim=1, **kw),
    "feature_alpha": lambda t, p, kw: F.feature_alpha_dropout(t, p, **kw),
    "noise_shape": lambda t, p, kw: F.dropout(
        t, p, noise_shape=[None, *[1] * (t.dim() - 2), None], mode="standard", **kw
    ),
    "alpha_noise_shape": lambda t, p, kw: F.alpha_dropout(
        t, p, noise_shape=[1, None, *[1] * (t.dim() - 2)], **kw
    ),
    "full": lambda t, p, kw: F.dropout(t, p, **kw),
    "alpha_full": lambda t, p, kw: F.alpha_dropout(t, p, **kw),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op", list(BROADCAST_OPS))
def test_layouts_and_masks_bit_equal_forward_and_backward(dtype, op, count_layout):
    kw = {"seed": 2**63 + 77, "step": 2**32 + 5, "offset": 13}
    for name, x in _inputs(dtype).items():
        for p in (0.1, 0.5):
            fast, reference = on_both(lambda t, p=p: BROADCAST_OPS[op](t, p, kw), x)
            assert_bit_equal(fast, reference)
            assert fast.stride() == torch.empty_like(x).stride(), name

        def grads(t: torch.Tensor) -> torch.Tensor:
            leaf = t.detach().clone().requires_grad_(True)
            BROADCAST_OPS[op](leaf, 0.3, kw).backward(torch.ones_like(t))
            assert leaf.grad is not None
            return leaf.grad

        assert_bit_equal(*on_both(grads, x))
    # Every layout above ran the one-pass path (contiguous full masks take the fused one).
    full_contiguous = op in ("full", "alpha_full")
    assert count_layout["layout"] >= (4 if full_contiguous else 7) * 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_rate_corner_cases(dtype, count_layout):
    x = _inputs(dtype)["2d_channels_last"]
    for p in (torch.tensor(0.0), 0.1, 0.5, 1.0, torch.tensor(1.0 - 2**-16)):
        for op in (BROADCAST_OPS["spatial"], BROADCAST_OPS["full"], BROADCAST_OPS["alpha_full"]):
            assert_bit_equal(*on_both(lambda t, p=p, op=op: op(t, p, {"seed": 4}), x))
    with kernels.use_backend("cpu"):
        kept = F.spatial_dropout(x, torch.tensor(0.0), seed=4)
        dropped = F.spatial_dropout(x, 1.0, seed=4)
    assert torch.equal(kept, x) and bool((dropped == 0).all())
    assert count_layout["layout"] > 0


def test_whole_channels_zeroed_and_mask_is_layout_independent():
    x = torch.randn(4, 6, 5, 5) + 10.0  # no zeros of its own
    with kernels.use_backend("cpu"):
        contiguous = F.spatial_dropout(x, 0.5, seed=2)
        channels_last = F.spatial_dropout(x.to(memory_format=torch.channels_last), 0.5, seed=2)
        full_cl = F.dropout(x.to(memory_format=torch.channels_last), 0.5, seed=2)
    assert torch.equal(channels_last, contiguous)
    zero = (contiguous == 0).flatten(2)
    assert bool((zero.all(-1) | ~zero.any(-1)).all()), "a channel is zeroed whole or not at all"
    assert 0 < int(zero.all(-1).sum()) < 24
    with kernels.use_backend("reference"):
        assert torch.equal(full_cl, F.dropout(x, 0.5, seed=2))


def test_in_place_and_out_on_strided_layouts(count_layout):
    x = torch.randn(6, 4, 9, 10).to(memory_format=torch.channels_last)
    with kernels.use_backend("reference"):
        expected = F.dropout(x, 0.3, seed=8, step=1)
        expected_spatial = F.spatial_dropout(x, 0.3, seed=8, step=1)
    y = x.clone()
    with torch.no_grad(), kernels.use_backend("cpu"):
        assert F.dropout(y, 0.3, seed=8, step=1, inplace=True) is y
        out = torch.empty(6, 4, 9, 10)  # contiguous out for a channels_last input
        F.dropout(x, 0.3, seed=8, step=1, out=out)
        z = x.clone()
        F.spatial_dropout(z, 0.3, seed=8, step=1, inplace=True)
    assert torch.equal(y, expected) and torch.equal(out, expected)
    assert torch.equal(z, expected_spatial)
    assert count_layout["layout"] == 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_thread_count_does_not_change_bits(dtype, count_layout):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 16, 33, 65, generator=gen).to(dtype)
    assert x.numel() > 4 * PARALLEL_MIN_NUMEL  # even a half of it runs threaded
    cl = x.to(memory_format=torch.channels_last)
    ops = [
        lambda: F.spatial_dropout(cl, 0.3, seed=9, step=2, offset=3),
        lambda: F.spatial_dropout(x, 0.3, seed=9, step=2),
        lambda: F.spatial_dropout(x.reshape(8, 16 * 33, 5, 13), 0.3, seed=9),  # 65-element runs
        lambda: F.locked_dropout(x.flatten(2), 0.3, time_dim=2, seed=9),
        lambda: F.feature_alpha_dropout(cl, 0.3, seed=9),
        lambda: F.dropout(cl, 0.3, seed=9, offset=5),
        lambda: F.dropout(x.transpose(0, 3), 0.3, seed=9),
        lambda: F.dropout(x[:, :, ::2], 0.3, seed=9),
        lambda: F.gaussian_dropout(cl, 0.3, seed=9, offset=1),
        lambda: F.gaussian_dropout(x, 0.3, seed=9, noise_shape=(None, None, 1, 1)),
        lambda: F.gaussian_dropout(x.view(-1), 0.3, seed=9, offset=2),
    ]
    results = []
    for threads in (1, 2, 3):
        torch.set_num_threads(threads)
        with kernels.use_backend("cpu"):
            results.append([op() for op in ops])
    for other in results[1:]:
        for one, two in zip(results[0], other, strict=True):
            assert_bit_equal(one, two)
    with kernels.use_backend("reference"):
        for one, op in zip(results[0][:8], ops[:8], strict=True):
            assert_bit_equal(one, op())
    assert count_layout["layout"] == 3 * len(ops)


def test_gradcheck_through_the_layout_pass(count_layout):
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64).to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    with kernels.use_backend("cpu"):
        for op in (
            lambda t: F.spatial_dropout(t, 0.3, seed=4, offset=3),
            lambda t: F.locked_dropout(t, 0.3, time_dim=1, seed=4),
            lambda t: F.feature_alpha_dropout(t, 0.3, seed=4),
            lambda t: F.dropout(t, 0.3, seed=4),
            lambda t: F.gaussian_dropout(t, 0.3, seed=4, noise_shape=(None, None, 1, None)),
        ):
            assert torch.autograd.gradcheck(op, (x,))
    assert count_layout["layout"] > 0


@pytest.mark.parametrize(
    "mask_shape", [[5, 3, 1, 1], [1, 3, 4, 6], [5, 3, 4, 6]], ids=["spatial", "locked", "full"]
)
def test_grouped_step_on_layouts(mask_shape, count_layout):
    # MC sampling's 1-D step: dim-0 group j drawn with steps[j], as k separate calls.
    x = torch.randn(4 * 5, 3, 4, 6).to(memory_format=torch.channels_last)
    rate, seed = torch.tensor(0.4), torch.tensor(-(2**62))
    steps = torch.tensor([3, 2**40 + 1, 0, 7])
    for op in (
        lambda t, s, m: _ops.dropout(t, rate, seed, s, 2, m, True),
        lambda t, s, m: _ops.alpha_dropout(t, rate, seed, s, 2, m),
        lambda t, s, m: _ops.alpha_dropout_backward(t, rate, seed, s, 2, m),
    ):
        with kernels.use_backend("cpu"):
            grouped = op(x, steps, mask_shape)
        with kernels.use_backend("reference"):
            separate = torch.cat(
                [op(part, s, mask_shape) for part, s in zip(x.split(5), steps, strict=True)]
            )
        assert torch.equal(_bits(grouped), _bits(separate))
    assert count_layout["layout"] >= 3 * 4


# -- Gaussian dropout ---------------------------------------------------------------------------


def _ulps(fast: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Distance in float32 ulps (same-sign values: the difference of their bit patterns)."""
    assert bool(((fast >= 0) == (reference >= 0)).all())
    return (fast.view(torch.int32).to(torch.int64) - reference.view(torch.int32)).abs()


@pytest.mark.parametrize("offset", [0, 1, 3, 6])
def test_kernel_normals_within_ulps_of_the_reference(offset):
    n = 3 * 4096 + 5
    key = _philox_key(rng.seed_tensor(2**63 + 3), rng.step_tensor(2**33 + 1))
    normals = np.empty(n, np.float32)
    _philox.normals(normals, offset, key)
    reference = rng.normal((n,), seed=2**63 + 3, step=2**33 + 1, offset=offset)
    ulps = _ulps(torch.from_numpy(normals), reference)
    assert int(ulps.max()) <= NORMAL_ULPS
    assert float((ulps == 0).double().mean()) > 0.6  # most agree to the last bit (~72%)
    assert float(ulps.double().mean()) < 0.5


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gaussian_dropout_within_stated_bounds(dtype, count_layout):
    # out = x * (1 + std * n): with n within NORMAL_ULPS float32 ulps, float32 and float64
    # outputs lie within rtol 4e-6 (|n| <= 6, std <= 1); half types within one storage ulp.
    inputs = _inputs(dtype)
    cases = [
        (inputs["2d"], None),
        (inputs["2d_channels_last"], None),
        (inputs["2d_transposed"], None),
        (inputs["2d"], (None, None, 1, 1)),
        (inputs["3d_channels_last"], (1, None, None, 1, None)),
        (inputs["2d"].reshape(-1), None),
    ]
    tolerance = {
        torch.float32: 4e-6,
        torch.float64: 4e-6,
        torch.bfloat16: 2**-7,
        torch.float16: 2**-10,
    }[dtype]
    for x, noise_shape in cases:
        for p in (0.1, 0.5):
            fast, reference = on_both(
                lambda t, p=p, s=noise_shape: F.gaussian_dropout(
                    t, p, seed=7, step=3, offset=2, noise_shape=s
                ),
                x,
            )
            assert fast.stride() == reference.stride()
            torch.testing.assert_close(fast, reference, rtol=tolerance, atol=tolerance)
        with kernels.use_backend("cpu"):
            assert torch.equal(F.gaussian_dropout(x, torch.tensor(0.0), seed=7), x)
    assert count_layout["layout"] == len(cases) * 3


def test_gaussian_backward_uses_the_same_noise():
    x = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    with kernels.use_backend("cpu"):
        y = F.gaussian_dropout(x, 0.3, seed=5)
        (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    # y = x * factor, so dy/dx = factor = y / x, with the same normals in both passes.
    torch.testing.assert_close(grad, (y / x).detach(), rtol=1e-12, atol=0)
    assert torch.autograd.gradcheck(lambda t: F.gaussian_dropout(t, 0.3, seed=5), (x,))


# -- fallback -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["apply_drawn", "apply_chunked"])
def test_compile_failure_falls_back_with_one_warning(kernel, monkeypatch):
    def broken(*args):  # type: ignore[no-untyped-def]
        raise numba.core.errors.TypingError("forced failure")

    monkeypatch.setattr(_layout, kernel, broken)
    backend, reference = OpCalls(CPUBackend()), OpCalls(ReferenceBackend())
    x = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    rate, seed, step = torch.tensor(0.3), torch.tensor(7), torch.tensor(1)
    mask_shape = [2, 3, 1, 1] if kernel == "apply_drawn" else [2, 3, 4, 5]
    args = (rate, seed, step, 3, mask_shape, True)
    with pytest.warns(RuntimeWarning, match="could not compile its kernels"):
        y = backend.dropout(x, *args)
    assert_bit_equal(y, reference.dropout(x, *args))
    assert not backend.supports(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_bit_equal(
            backend.alpha_dropout(x, *args[:-1]), reference.alpha_dropout(x, *args[:-1])
        )
        gaussian = backend.gaussian_dropout(x, *args[:-1])
    assert torch.equal(gaussian, reference.gaussian_dropout(x, *args[:-1]))


def test_overlapping_out_takes_the_reference_path():
    storage = torch.randn(2, 200)
    source = storage[:, :100]
    expected = F.spatial_dropout(source.clone().view(2, 4, 25), 0.5, seed=1)
    # out overlaps the input shifted by 50 elements: the one pass would read what it wrote.
    target = storage[:, 50:150].view(2, 4, 25)
    with torch.no_grad():
        F.dropout(source.view(2, 4, 25), 0.5, seed=1, noise_shape=(None, None, 1), out=target)
    assert torch.equal(target, expected)


@pytest.mark.parametrize("launch", ["openmp", "numba"])
def test_openmp_and_numba_launches_bit_equal(launch, monkeypatch):
    # The layout pass runs on PyTorch's OpenMP team where its libgomp is found, else on numba's
    # pool: the same bits at any team size, both for a mask drawn first and one drawn in chunks.
    from dropkit.kernels.cpu import _launch

    launcher = _launch.layout_launcher()
    calls = {"count": 0}
    if launch == "openmp":
        if launcher is None:
            pytest.skip("PyTorch's libgomp not found: the numba pool is used")

        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls["count"] += 1
            return launcher(*args, **kwargs)

        monkeypatch.setattr(_launch, "layout_launcher", lambda: counted)
    else:
        monkeypatch.setattr(_launch, "layout_launcher", lambda: None)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 8, 48, 48, generator=gen)  # above PARALLEL_MIN_NUMEL
    ops = [
        lambda t: F.spatial_dropout(t, 0.3, seed=5, offset=3),
        lambda t: F.spatial_dropout(t.contiguous().view(4, 8 * 48, 6, 8), 0.3, seed=5),
        lambda t: F.dropout(t, 0.3, seed=5, offset=3),
        lambda t: F.feature_alpha_dropout(t, 0.3, seed=5),
        lambda t: F.gaussian_dropout(t, 0.3, seed=5, noise_shape=(None, None, 1, None)),
    ]
    for dtype in (torch.float32, torch.bfloat16):  # each dtype is a compile on a cold cache
        cl = x.to(dtype).to(memory_format=torch.channels_last)
        for threads in (2, 3):
            torch.set_num_threads(threads)
            with kernels.use_backend("cpu"):
                results = [op(cl) for op in ops]
            with kernels.use_backend("reference"):
                expected = [op(cl) for op in ops]
            for fast, reference in zip(results[:4], expected[:4], strict=True):
                assert_bit_equal(fast, reference)
            tolerance = 4e-6 if dtype in (torch.float32, torch.float64) else 2**-7
            torch.testing.assert_close(results[4], expected[4], rtol=tolerance, atol=tolerance)
    assert calls["count"] == (0 if launch == "numba" else 2 * 2 * len(ops))


def test_odd_inputs_bit_equal(count_layout):
    # 0-d (was an IndexError on the CPU backend), empty, size-1 dims, a single draw for all,
    # expanded (stride-0) inputs as autograd's sum() gradient gives them, huge offsets.
    expanded = torch.randn(1, 400).expand(300, 400)
    cases = [
        (lambda t: F.dropout(t, 0.5, seed=1), torch.tensor(1.5)),
        (lambda t: F.spatial_dropout(t, 0.5, seed=1), torch.randn(0, 3, 4, 4)),
        (lambda t: F.spatial_dropout(t, 0.5, seed=1), torch.randn(1, 3, 1, 5)),
        (lambda t: F.dropout(t, 0.5, seed=2, noise_shape=(1, 1, 1)), torch.randn(4, 5, 6)),
        (lambda t: F.locked_dropout(t, 0.5, time_dim=0, seed=3), expanded),
        (lambda t: F.dropout(t, 0.5, seed=3), expanded),
        (
            lambda t: F.spatial_dropout(t, 0.5, seed=5, offset=2**40 + 3),
            _inputs(torch.float32)["2d_channels_last"],
        ),
    ]
    for op, x in cases:
        fast, reference = on_both(op, x)
        assert torch.equal(fast, reference)

    def grad_of(t: torch.Tensor) -> torch.Tensor:
        leaf = t.clone().requires_grad_(True)
        F.spatial_dropout(leaf, 0.3, seed=4).sum().backward()  # an expanded gradient
        assert leaf.grad is not None
        return leaf.grad

    assert_bit_equal(
        *on_both(grad_of, torch.randn(4, 8, 5, 5).to(memory_format=torch.channels_last))
    )
    assert count_layout["layout"] >= 5
