"""The CPU fast path of the fused ops ``residual + dropout(act(x + bias))`` and its backward.

Bit-equal to the reference for identity and relu (every dtype), silu and gelu_tanh (float32,
bfloat16, float16). Elsewhere the reference's own activation is not reproduced operation for
operation (float32 gelu runs on oneDNN's JIT kernel; float64 on SLEEF's erf/exp/tanh), and the
tests hold the fast path to the bound stated in ``docs/cpu.md``: in compute precision,
``|fast - reference| <= tolerance * scale * (1 + |reference|)``, plus one rounding of the output
dtype. The mask is exact in every case: a dropped unit is exactly the residual (or 0).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import dropkit.functional as F
from dropkit import kernels, rng
from dropkit.functional._checks import resolve_seed_step
from dropkit.kernels import _ops as _fused_ops
from dropkit.kernels.reference import ReferenceBackend
from tests.kernels._calls import OpCalls

numba = pytest.importorskip("numba")

from dropkit.kernels.cpu import PARALLEL_MIN_NUMEL, CPUBackend, _fused  # noqa: E402

ACTIVATIONS = ["identity", "gelu", "gelu_tanh", "relu", "silu"]
DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
_BITS = {
    torch.float32: torch.int32,
    torch.bfloat16: torch.int16,
    torch.float16: torch.int16,
    torch.float64: torch.int64,
}
#: The stated bound, relative to ``scale * (1 + |reference|)``, in compute precision
#: (measured maxima over 2.6M inputs in [-30, 30]: 1.3e-6 float32, 1.9e-14 float64).
TOLERANCE = {torch.float32: 5e-6, torch.float64: 5e-14}


def exact(activation: str, dtype: torch.dtype) -> bool:
    """Whether the fast path gives the reference's bits for this activation and dtype."""
    if activation in ("identity", "relu"):
        return True
    return activation in ("silu", "gelu_tanh") and dtype != torch.float64


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().view(_BITS[t.dtype])


def assert_close_to_reference(
    fast: torch.Tensor,
    reference: torch.Tensor,
    activation: str,
    scale: float,
    dropped: torch.Tensor | None = None,
) -> None:
    """Bit equality where :func:`exact`, else the stated bound; ``dropped`` units always exact."""
    assert fast.shape == reference.shape and fast.dtype == reference.dtype
    if dropped is not None:  # (the sign of a dropped gradient's 0 follows act', so compare values)
        assert torch.equal(fast[dropped], reference[dropped]), "mask differs"
    if exact(activation, fast.dtype):
        assert torch.equal(_bits(fast), _bits(reference)), "fast path and reference differ"
        return
    compute = torch.float64 if fast.dtype == torch.float64 else torch.float32
    rounding = torch.finfo(fast.dtype).eps if fast.dtype != compute else 0.0
    bound = TOLERANCE[compute] * scale * (1 + reference.double().abs())
    bound = bound + rounding * reference.double().abs()
    difference = (fast.double() - reference.double()).abs()
    both_nan = fast.isnan() & reference.isnan()
    assert bool(((difference <= bound) | both_nan).all()), (
        f"max difference {difference.max().item():.3g} over the bound"
    )


def on_both(fn, *args):
    """``fn(*args)`` under the CPU backend and under the reference."""
    with kernels.use_backend("cpu"):
        fast = fn(*args)
    with kernels.use_backend("reference"):
        reference = fn(*args)
    return fast, reference


@pytest.fixture
def count_launches(monkeypatch):
    """Counts launches of the fused kernels, to show a test really ran the fast path."""
    calls = {"forward": 0, "backward": 0}
    for name, kind in [
        ("forward_span", "forward"),
        ("forward", "forward"),
        ("backward_serial", "backward"),
        ("backward", "backward"),
    ]:
        original = getattr(_fused, name)

        def counted(*args, original=original, kind=kind):
            calls[kind] += 1
            return original(*args)

        monkeypatch.setattr(_fused, name, counted)
    return calls


def _keep(rate: torch.Tensor, seed: int, step: int, offset: int, shape) -> torch.Tensor:
    return ReferenceBackend.keep(rate, torch.tensor(seed), torch.tensor(step), offset, shape)


def _scale(rate: torch.Tensor) -> float:
    threshold = int(rng.threshold_tensor(rate))
    return 65536 / max(65536 - threshold, 1)


def test_auto_picks_cpu_backend_for_the_fused_ops():
    for dtype in DTYPES:
        x = torch.ones(2, dtype=dtype)
        assert kernels.backend_for(kernels.SPECS["bias_act_dropout_add"], x).name == "cpu"
        assert kernels.backend_for(kernels.SPECS["bias_act_dropout_backward"], x).name == "cpu"


def _operands(shape, bias_kind, residual_kind, dtype, generator):
    def make(size):
        return torch.randn(size, generator=generator).mul(3).to(dtype)

    x = make(shape)
    bias = {"none": None, "last": make(shape[-1:]), "trailing2": make(shape[-2:])}[bias_kind]
    residual = {
        "none": None,
        "full": make(shape),
        "broadcast": make((1, *shape[1:])),
        "last": make(shape[-1:]).to(torch.float32),  # another dtype, converted once
    }[residual_kind]
    return x, bias, residual


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_forward_matches_reference(activation, dtype, count_launches):
    generator = torch.Generator().manual_seed(7)
    shape = (3, 5, 37)  # odd sizes: ragged Philox blocks, segments shorter than a tile
    for bias_kind, residual_kind, p, offset in [
        ("none", "none", 0.1, 0),
        ("last", "full", 0.5, 3),
        ("trailing2", "broadcast", torch.tensor(0.0), 13),  # a 0-d rate reaching the kernel
        ("last", "last", 1.0, 5),
        ("trailing2", "full", 0.1, 2**33 + 1),
    ]:
        x, bias, residual = _operands(shape, bias_kind, residual_kind, dtype, generator)
        rate = torch.as_tensor(p, dtype=torch.float32)
        seed, step = resolve_seed_step(2**63 + 12345, 2**32 + 7, x.device)  # all 64 bits used

        def op(x=x, bias=bias, residual=residual, rate=rate, seed=seed, step=step, at=offset):
            return _fused_ops.bias_act_dropout_add(
                x, bias, residual, rate, seed, step, at, activation
            )

        fast, reference = on_both(op)
        dropped = ~ReferenceBackend.keep(rate, seed, step, offset, shape)
        assert_close_to_reference(fast, reference, activation, _scale(rate), dropped)
        if float(p) == 1.0:  # everything dropped: exactly the residual
            expected = residual.to(torch.float32).expand(shape).to(dtype)
            assert torch.equal(_bits(fast), _bits(expected))
    assert count_launches["forward"] == 5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backward_matches_reference(activation, dtype, count_launches):
    generator = torch.Generator().manual_seed(11)
    shape = (67, 3, 29)  # 67 * 3 rows of a last-dim bias: more rows than BIAS_ROW_GROUPS
    for bias_kind, p, offset in [
        ("none", 0.5, 1),
        ("last", 0.1, 0),
        ("trailing2", 0.5, 9),
        ("last", 1.0, 2),
    ]:
        x, bias, _ = _operands(shape, bias_kind, "none", dtype, generator)
        grad = torch.randn(shape, generator=generator).to(dtype)
        rate = torch.tensor(p)
        args = (bias, rate, torch.tensor(3), torch.tensor(4), offset, activation)
        (fast_x, fast_bias), (reference_x, reference_bias) = on_both(
            _fused_ops.bias_act_dropout_backward, grad, x, *args
        )
        dropped = ~_keep(rate, 3, 4, offset, shape)
        assert_close_to_reference(fast_x, reference_x, activation, _scale(rate), dropped)
        assert fast_bias.dtype == reference_bias.dtype and fast_bias.shape == reference_bias.shape
        if bias is None:
            assert fast_bias.numel() == 0
            continue
        # The bias gradient sums the unrounded gradient in another order than PyTorch's sum:
        # both are within the classic bound gamma_n * sum|g| of the exact sum (n: rows summed).
        compute = fast_bias.dtype
        unrounded = OpCalls(ReferenceBackend()).bias_act_dropout_backward(
            grad.to(compute), x.to(compute), *args
        )[0]
        rows = grad.numel() // bias.numel()
        exact_sum = unrounded.double().sum_to_size(bias.shape)
        magnitude = unrounded.double().abs().sum_to_size(bias.shape)
        unit = torch.finfo(fast_bias.dtype).eps / 2
        gamma = rows * unit / (1 - rows * unit)
        # Where the activation is not bit-equal, each summand carries the activation's bound.
        activation_bound = (
            0.0
            if exact(activation, dtype)
            else TOLERANCE[compute] * _scale(rate) * (rows + magnitude)
        )
        for result in (fast_bias, reference_bias):
            error = (result.double() - exact_sum).abs()
            assert bool((error <= gamma * magnitude + activation_bound).all())
    assert count_launches["backward"] == 4


def test_bias_gradient_equals_reference_when_nothing_is_summed():
    # A bias of x's full shape: the "sum" is the gradient itself, bit for bit.
    x, bias, grad = torch.randn(4, 33), torch.randn(4, 33), torch.randn(4, 33)
    args = (bias, torch.tensor(0.3), torch.tensor(1), torch.tensor(2), 0, "relu")
    (fast_x, fast_bias), (reference_x, reference_bias) = on_both(
        _fused_ops.bias_act_dropout_backward, grad, x, *args
    )
    assert torch.equal(_bits(fast_x), _bits(reference_x))
    assert torch.equal(_bits(fast_bias), _bits(reference_bias))


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")
@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh", "silu"])
def test_float32_activations_equal_pytorch_aten_kernels_where_reproduced(activation):
    # gelu: bit-equal to ATen's own kernel, the one PyTorch runs with oneDNN off; the others
    # are bit-equal with oneDNN on or off.
    # 63 * 129 % 32 = 31: the last 31 elements are PyTorch's scalar tail (C library erff/expf).
    x = torch.randn(63, 129, generator=torch.Generator().manual_seed(3)) * 4
    grad = torch.randn_like(x)
    rate, seed, step = torch.tensor(0.0), torch.tensor(1), torch.tensor(0)
    with torch.backends.mkldnn.flags(enabled=False):
        fast, reference = on_both(
            _fused_ops.bias_act_dropout_add, x, None, None, rate, seed, step, 0, activation
        )
        fast_grad, reference_grad = on_both(
            _fused_ops.bias_act_dropout_backward, grad, x, None, rate, seed, step, 0, activation
        )
    assert torch.equal(_bits(fast), _bits(reference))
    assert torch.equal(_bits(fast_grad[0]), _bits(reference_grad[0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_thread_count_does_not_change_bits(dtype):
    shape = (2 * PARALLEL_MIN_NUMEL // 96 + 3, 96)  # above the threading threshold, ragged
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(shape, generator=generator).to(dtype)
    bias = torch.randn(96, generator=generator).to(dtype)
    residual = torch.randn(shape, generator=generator).to(dtype)
    grad = torch.randn(shape, generator=generator).to(dtype)
    previous = torch.get_num_threads()
    outputs = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            with kernels.use_backend("cpu"):
                results = [F.bias_act_dropout_add(x, bias, residual, 0.2, "gelu", seed=3, step=1)]
                results += _fused_ops.bias_act_dropout_backward(
                    grad, x, bias, torch.tensor(0.2), torch.tensor(3), torch.tensor(1), 0, "gelu"
                )
            outputs.append(results)
    finally:
        torch.set_num_threads(previous)
    for other in outputs[1:]:
        for one, two in zip(outputs[0], other, strict=True):
            assert torch.equal(_bits(one), _bits(two))


def test_gradcheck_through_fast_path(count_launches):
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 37, dtype=torch.float64, generator=generator, requires_grad=True)
    bias = torch.randn(37, dtype=torch.float64, generator=generator, requires_grad=True)
    residual = torch.randn(4, 37, dtype=torch.float64, generator=generator, requires_grad=True)
    with kernels.use_backend("cpu"):
        for activation in ["gelu", "gelu_tanh", "silu"]:
            assert torch.autograd.gradcheck(
                lambda t, b, r, a=activation: F.bias_act_dropout_add(
                    t, b, r, 0.3, a, seed=4, step=1, offset=3
                ),
                (x, bias, residual),
            )
    assert count_launches["forward"] > 0 and count_launches["backward"] > 0


def test_module_gradients_match_reference():
    x = torch.randn(8, 5, 64)
    bias = torch.randn(64)
    residual = torch.randn(8, 5, 64)

    def grads(activation):
        leaves = [t.clone().requires_grad_(True) for t in (x, bias, residual)]
        y = F.bias_act_dropout_add(*leaves, 0.25, activation, seed=9, step=2)
        y.backward(torch.ones_like(y))
        return [y] + [leaf.grad for leaf in leaves]

    for activation in ["relu", "silu"]:
        fast, reference = on_both(grads, activation)
        for a, b in zip(fast[:3], reference[:3], strict=True):  # output, d/dx, d/dbias
            if a.shape == bias.shape:
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
            else:
                assert torch.equal(a, b)
        assert torch.equal(fast[3], reference[3])  # d/dresidual: the incoming gradient


def test_other_layouts_and_broadcasts_run_on_the_reference(count_launches):
    x = torch.randn(2, 6, 5, 7)
    channel_bias = torch.randn(6, 1, 1)  # broadcast inside x's shape: not periodic
    for args in [
        (x, channel_bias, None),
        (x.to(memory_format=torch.channels_last), torch.randn(7), x),
        (x, torch.randn(7), x.transpose(2, 3).contiguous().transpose(2, 3)),
    ]:
        fast, reference = on_both(
            lambda t, b, r: F.bias_act_dropout_add(t, b, r, 0.3, "relu", seed=1), *args
        )
        assert torch.equal(fast, reference)
        assert fast.stride() == reference.stride()
    # Only the strided residual (converted once, then read in order) reached the kernel.
    assert count_launches["forward"] == 1


def test_compile_failure_falls_back_with_one_warning(monkeypatch):
    def broken(*args):
        raise numba.core.errors.TypingError("forced failure")

    monkeypatch.setattr(_fused, "forward_span", broken)
    backend, reference = OpCalls(CPUBackend()), OpCalls(ReferenceBackend())
    x, bias, residual = torch.randn(4, 25), torch.randn(25), torch.randn(4, 25)
    args = (bias, residual, torch.tensor(0.3), torch.tensor(7), torch.tensor(1), 3, "gelu")
    with pytest.warns(RuntimeWarning, match="could not compile its kernels"):
        y = backend.bias_act_dropout_add(x, *args)
    assert torch.equal(y, reference.bias_act_dropout_add(x, *args))
    assert not backend.supports(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(backend.bias_act_dropout_add(x, *args), y)
        backward_args = (bias, torch.tensor(0.3), torch.tensor(7), torch.tensor(1), 3, "gelu")
        fast = backend.bias_act_dropout_backward(residual, x, *backward_args)
        slow = reference.bias_act_dropout_backward(residual, x, *backward_args)
        assert all(torch.equal(a, b) for a, b in zip(fast, slow, strict=True))


def test_nan_and_inf_inputs_follow_the_reference():
    x = torch.tensor([[math.nan, math.inf, -math.inf, -0.0, 0.0, 1.0, -1.0, 100.0] * 4])
    residual = torch.full_like(x, 2.0)
    for activation in ["identity", "relu", "silu"]:
        fast, reference = on_both(
            lambda t, a=activation: F.bias_act_dropout_add(
                t, None, residual, 0.5, a, seed=2) if a != "identity" else F.bias_dropout_add(
                t, None, residual, 0.5, seed=2),
            x,
        )  # fmt: skip
        assert torch.equal(_bits(fast), _bits(reference))


def test_bias_gradient_does_not_depend_on_the_gradient_layout():
    # y.sum().backward() hands over a stride-0 gradient, torch.compile a contiguous one.
    generator = torch.Generator().manual_seed(4)
    tensors = [torch.randn(shape, generator=generator) for shape in [(64, 96), (96,), (64, 96)]]

    def op(x, b, r):
        return F.bias_act_dropout_add(x, b, r, 0.2, "silu", seed=3, step=1)

    leaves = [t.clone().requires_grad_(True) for t in tensors]
    expanded = torch.autograd.grad(op(*leaves).sum(), leaves)
    dense = torch.autograd.grad(op(*leaves), leaves, torch.ones(64, 96))
    compiled = torch.compile(op, fullgraph=True)
    from_compiled = torch.autograd.grad(compiled(*leaves).sum(), leaves)
    for a, b, c in zip(expanded, dense, from_compiled, strict=True):
        assert torch.equal(_bits(a), _bits(b)) and torch.equal(_bits(a), _bits(c))
