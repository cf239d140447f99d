"""numba kernels of the fused ops ``residual + dropout(act(x + bias))`` and its backward
(jit functions only; wrappers live in ``backend.py``).

The activations reproduce PyTorch's own x86 CPU kernels operation for operation
(``aten/src/ATen/native/cpu/Activation.cpp`` on ``Vectorized<float>``), so the fused pass gives
the reference's bits: SLEEF's ``expf_u10`` and ``tanhf_u10`` are ported (:func:`_sleef_expf`,
:func:`_sleef_tanhf`), ``erf`` is PyTorch's Abramowitz-Stegun polynomial (:func:`_erf_as`), the
``a * b + c`` that PyTorch's build contracts into FMAs are FMAs here too, and the last elements
of a tensor take PyTorch's scalar code (C library ``expf``/``erff``/``tanhf``). Not reproduced:
oneDNN's gelu, which PyTorch runs for float32 gelu when oneDNN is on, and SLEEF's float64
functions (the C library's are used); ``docs/cpu.md`` gives the measured bounds.

Every element depends only on its index, and the bias gradient is summed in a fixed tree of row
groups (:data:`BIAS_ROW_GROUPS`), so no result depends on the thread count.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core.extending import intrinsic, overload

from dropkit.kernels.cpu._kernels import (
    BERNOULLI_PER_BLOCK,
    CHUNK_BLOCKS,
    WORDS_PER_BLOCK,
    _bits_from_float32,
    _float32_from_bits,
    _load,
    _philox_blocks,
    _to_storage,
)

#: Activation codes (the order of :data:`dropkit.kernels.reference.ACTIVATIONS`).
IDENTITY, GELU, GELU_TANH, RELU, SILU = range(5)
#: PyTorch computes the last ``n % (2 * vector width)`` elements of a tensor with its scalar code
#: (C library ``erff``/``expf``): these codes reproduce it for the tail (float32 only).
GELU_SCALAR, GELU_TANH_SCALAR, SILU_SCALAR = 5, 6, 7
#: Rows of the bias gradient are summed in this many fixed groups (then the groups in order),
#: whatever the thread count: the threads share out groups, never split one.
BIAS_ROW_GROUPS = 64

# error_model="numpy": a float division is IEEE (inf/NaN, as PyTorch's) instead of a checked
# Python division, whose exception branch stops LLVM from vectorising the loops (measured:
# 3 ns per element for the silu loop with the check, 0.2 ns without).
_JIT: dict[str, Any] = {
    "cache": True,
    "nogil": True,
    "boundscheck": False,
    "fastmath": False,
    "error_model": "numpy",
}


@intrinsic
def _fma(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    """``a * b + c`` rounded once (``llvm.fma``), as the ``_mm512_fmadd_ps`` PyTorch uses."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        value_type = context.get_value_type(signature.return_type)
        function_type = ir.FunctionType(value_type, [value_type] * 3)
        function = builder.module.declare_intrinsic("llvm.fma", [value_type], function_type)
        return builder.call(function, args)

    return a(a, a, a), codegen


@intrinsic
def _rint(typingctx: Any, value: Any) -> Any:
    """Round to nearest even (``llvm.rint``, the default rounding mode)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        value_type = context.get_value_type(signature.return_type)
        function_type = ir.FunctionType(value_type, [value_type])
        function = builder.module.declare_intrinsic("llvm.rint", [value_type], function_type)
        return builder.call(function, args)

    return value(value), codegen


@intrinsic
def _select(typingctx: Any, condition: Any, if_true: Any, if_false: Any) -> Any:
    """``if_true if condition else if_false`` (both of ``if_false``'s type) as one LLVM
    ``select``: no branch in numba's IR, so the helpers inline cleanly and loops vectorise."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.select(args[0], args[1], args[2])

    return if_false(types.boolean, if_false, if_false), codegen


_LOG2E = np.float32(1.442695040888963407359924681001892137426645954152985934135449406931)
_LN2_HIGH = np.float32(0.693145751953125)
_LN2_LOW = np.float32(1.428606765330187045e-06)
_EXP_COEFFICIENTS = (
    np.float32(0.000198527617612853646278381),
    np.float32(0.00139304355252534151077271),
    np.float32(0.00833336077630519866943359),
    np.float32(0.0416664853692054748535156),
    np.float32(0.166666671633720397949219),
    np.float32(0.5),
)
_EXPK2_COEFFICIENTS = (
    np.float32(0.1980960224e-3),
    np.float32(0.1394256484e-2),
    np.float32(0.8333456703e-2),
    np.float32(0.4166637361e-1),
    np.float32(0.166666659414234244790680580464),
)
_ONE = np.float32(1.0)
_HALF = np.float32(0.5)
_ZERO = np.float32(0.0)


@njit(inline="always")
def _pow2i(q: Any) -> Any:
    """``2**q`` for an int32 ``q`` in float32's exponent range (bit construction)."""
    return _float32_from_bits(np.uint32(q + np.int32(0x7F)) << np.uint32(23))  # type: ignore[call-arg]


@njit(inline="always")
def _sleef_expf(d: Any) -> Any:
    """SLEEF's ``xexpf`` (u10) on float32, as ``Vectorized<float>::exp`` runs it (FMA build)."""
    q = np.int32(_rint(d * _LOG2E))  # type: ignore[call-arg]
    qf = np.float32(q)
    s = _fma(qf, -_LN2_HIGH, d)
    s = _fma(qf, -_LN2_LOW, s)
    u = _EXP_COEFFICIENTS[0]
    u = _fma(u, s, _EXP_COEFFICIENTS[1])
    u = _fma(u, s, _EXP_COEFFICIENTS[2])
    u = _fma(u, s, _EXP_COEFFICIENTS[3])
    u = _fma(u, s, _EXP_COEFFICIENTS[4])
    u = _fma(u, s, _EXP_COEFFICIENTS[5])
    u = _ONE + _fma(s * s, u, s)
    half_q = q >> np.int32(1)
    u = u * _pow2i(half_q) * _pow2i(q - half_q)
    u = _select(d < np.float32(-104.0), _ZERO, u)
    return _select(d > np.float32(100.0), np.float32(np.inf), u)


_ERF_P = np.float32(0.3275911)
_ERF_A = (
    np.float32(0.254829592),
    np.float32(-0.284496736),
    np.float32(1.421413741),
    np.float32(-1.453152027),
    np.float32(1.061405429),
)
_SIGN32 = np.uint32(0x80000000)


@njit(inline="always")
def _erf_as(x: Any) -> Any:
    """``Vectorized<float>::erf``: Abramowitz-Stegun 7.1.26 with PyTorch's FMA order."""
    sign = _bits_from_float32(x) & _SIGN32  # type: ignore[call-arg]
    magnitude = abs(x)
    t = _ONE / _fma(_ERF_P, magnitude, _ONE)
    r = _fma(_ERF_A[4], t, _ERF_A[3])
    r = _fma(r, t, _ERF_A[2])
    r = _fma(r, t, _ERF_A[1])
    r = _fma(r, t, _ERF_A[0])
    negative_exp = -_sleef_expf(-(x * x))
    value = _fma(negative_exp * t, r, _ONE)
    return _float32_from_bits(_bits_from_float32(value) ^ sign)


_SQRT_HALF32 = np.float32(0.70710678118654752440)  # M_SQRT1_2
_GELU_PDF32 = np.float32(1.12837916709551257390 * 0.70710678118654752440 * 0.5)
_TANH_BETA32 = np.float32(1.41421356237309504880 * 1.12837916709551257390 * 0.5)
_TANH_KAPPA32 = np.float32(0.044715)
_THREE_KAPPA32 = np.float32(3.0) * _TANH_KAPPA32
_SQRT_HALF64 = 0.70710678118654752440
_GELU_PDF64 = 1.12837916709551257390 * 0.70710678118654752440 * 0.5
_TANH_BETA64 = 1.41421356237309504880 * 1.12837916709551257390 * 0.5
_TANH_KAPPA64 = 0.044715


# SLEEF's double-float ("df") helpers, FMA variants, on (high, low) pairs of float32.


@njit(inline="always")
def _df_add2_scalar(xx: Any, xy: Any, y: Any) -> Any:
    s = xx + y
    v = s - xx
    return s, ((xx - (s - v)) + (y - v)) + xy


@njit(inline="always")
def _df_add2(xx: Any, xy: Any, yx: Any, yy: Any) -> Any:
    s = xx + yx
    v = s - xx
    return s, ((xx - (s - v)) + (yx - v)) + (xy + yy)


@njit(inline="always")
def _df_mul_scalar(xx: Any, xy: Any, y: Any) -> Any:
    s = xx * y
    return s, _fma(xy, y, _fma(xx, y, -s))  # type: ignore[call-arg]


@njit(inline="always")
def _df_mul(xx: Any, xy: Any, yx: Any, yy: Any) -> Any:
    s = xx * yx
    return s, _fma(xx, yy, _fma(xy, yx, _fma(xx, yx, -s)))  # type: ignore[call-arg]


@njit(inline="always")
def _df_square(xx: Any, xy: Any) -> Any:
    s = xx * xx
    return s, _fma(xx + xx, xy, _fma(xx, xx, -s))  # type: ignore[call-arg]


@njit(inline="always")
def _sleef_expk2f(d: Any) -> Any:
    """SLEEF's ``expk2f``: ``exp(d)`` as a double-float pair."""
    q = np.int32(_rint(d * _LOG2E))  # type: ignore[call-arg]
    qf = np.float32(q)
    sx, sy = _df_add2_scalar(d, _ZERO, qf * -_LN2_HIGH)
    sx, sy = _df_add2_scalar(sx, sy, qf * -_LN2_LOW)
    u = _fma(_EXPK2_COEFFICIENTS[0], sx, _EXPK2_COEFFICIENTS[1])
    u = _fma(u, sx, _EXPK2_COEFFICIENTS[2])
    u = _fma(u, sx, _EXPK2_COEFFICIENTS[3])
    tx, ty = _df_mul_scalar(sx, sy, u)
    tx, ty = _df_add2_scalar(tx, ty, _EXPK2_COEFFICIENTS[4])
    tx, ty = _df_mul(sx, sy, tx, ty)
    tx, ty = _df_add2_scalar(tx, ty, _HALF)
    square_x, square_y = _df_square(sx, sy)
    tx, ty = _df_mul(square_x, square_y, tx, ty)
    tx, ty = _df_add2(sx, sy, tx, ty)
    high = _ONE + tx
    low = ((_ONE - high) + tx) + ty
    half_q = q >> np.int32(1)
    high = high * _pow2i(half_q) * _pow2i(q - half_q)
    low = low * _pow2i(half_q) * _pow2i(q - half_q)
    underflow = d < np.float32(-104.0)
    return _select(underflow, _ZERO, high), _select(underflow, _ZERO, low)


@njit(inline="always")
def _sleef_tanhf(x: Any) -> Any:
    """SLEEF's ``xtanhf`` (u10), as ``Vectorized<float>::tanh`` runs it:
    ``(e - 1/e) / (e + 1/e)`` with ``e = exp(|x|)`` in double-float arithmetic."""
    magnitude = abs(x)
    dx, dy = _sleef_expk2f(magnitude)
    ex = _ONE / dx
    ey = ex * _fma(-dy, ex, _fma(-dx, ex, _ONE))  # type: ignore[call-arg]
    nx = dx - ex
    ny = (((dx - nx) - ex) + dy) - ey
    mx = dx + ex
    my = (((dx - mx) + ex) + dy) + ey
    t = _ONE / mx
    s = nx * t
    u = _fma(t, nx, -s)
    v = _fma(-my, t, _fma(-mx, t, _ONE))
    r = s + _fma(s, v, _fma(ny, t, u))
    r = _select((magnitude > np.float32(8.664339742)) | (r != r), _ONE, r)
    r = _float32_from_bits(_bits_from_float32(r) ^ (_bits_from_float32(x) & _SIGN32))
    return _select(x != x, x, r)


def _gelu(h: Any) -> Any:  # pragma: no cover - stubs replaced by the overloads below
    raise NotImplementedError


def _gelu_tanh(h: Any) -> Any:  # pragma: no cover
    raise NotImplementedError


def _silu(h: Any) -> Any:  # pragma: no cover
    raise NotImplementedError


def _gelu_backward(g: Any, h: Any) -> Any:  # pragma: no cover
    raise NotImplementedError


def _gelu_tanh_backward(g: Any, h: Any) -> Any:  # pragma: no cover
    raise NotImplementedError


def _silu_backward(g: Any, h: Any) -> Any:  # pragma: no cover
    raise NotImplementedError


# Each activation and its backward, with PyTorch's operation order: float32 as PyTorch's
# vectorised CPU kernels compute it, float64 with the C library's erf/exp/tanh.


@overload(_gelu, inline="always")
def _gelu_overload(h: Any) -> Any:
    if h == types.float32:

        def gelu32(h: Any) -> Any:
            return h * _HALF * (_ONE + _erf_as(h * _SQRT_HALF32))

        return gelu32

    def gelu64(h: Any) -> Any:
        return h * 0.5 * (1.0 + math.erf(h * _SQRT_HALF64))

    return gelu64


@overload(_gelu_tanh, inline="always")
def _gelu_tanh_overload(h: Any) -> Any:
    if h == types.float32:

        def gelu_tanh32(h: Any) -> Any:
            # h + kappa * h^3 contracted to one FMA, as in PyTorch's build
            inner = _TANH_BETA32 * _fma(_TANH_KAPPA32, h * h * h, h)  # type: ignore[call-arg]
            return _HALF * h * (_ONE + _sleef_tanhf(inner))

        return gelu_tanh32

    def gelu_tanh64(h: Any) -> Any:
        inner = _TANH_BETA64 * (h + _TANH_KAPPA64 * (h * h * h))
        return 0.5 * h * (1.0 + math.tanh(inner))

    return gelu_tanh64


@overload(_silu, inline="always")
def _silu_overload(h: Any) -> Any:
    if h == types.float32:

        def silu32(h: Any) -> Any:
            return h / (_ONE + _sleef_expf(-h))

        return silu32

    def silu64(h: Any) -> Any:
        return h / (1.0 + math.exp(-h))

    return silu64


@njit(inline="always")
def _relu(h: Any) -> Any:
    """``torch.relu``: negative to +0; -0.0 and NaN pass through."""
    return _select(h < 0, _ZERO, h)  # type: ignore[call-arg]


@overload(_gelu_backward, inline="always")
def _gelu_backward_overload(g: Any, h: Any) -> Any:
    if h == types.float32:

        def gelu_backward32(g: Any, h: Any) -> Any:
            cdf = _HALF * (_ONE + _erf_as(h * _SQRT_HALF32))
            pdf = _GELU_PDF32 * _sleef_expf(h * h * np.float32(-0.5))
            # cdf + h * pdf, contracted to one FMA as in PyTorch's build
            return g * _fma(h, pdf, cdf)  # type: ignore[call-arg]

        return gelu_backward32

    def gelu_backward64(g: Any, h: Any) -> Any:
        cdf = 0.5 * (1.0 + math.erf(h * _SQRT_HALF64))
        pdf = _GELU_PDF64 * math.exp(h * h * -0.5)
        return g * (cdf + h * pdf)

    return gelu_backward64


@overload(_gelu_tanh_backward, inline="always")
def _gelu_tanh_backward_overload(g: Any, h: Any) -> Any:
    if h == types.float32:

        def gelu_tanh_backward32(g: Any, h: Any) -> Any:
            # PyTorch's formula with its build's three FMA contractions (measured bit-equal).
            h_squared = h * h
            inner = _TANH_BETA32 * _fma(_TANH_KAPPA32, h * h * h, h)  # type: ignore[call-arg]
            tanh_inner = _sleef_tanhf(inner)
            left = _HALF * h
            right = _ONE + tanh_inner
            left_derivative = _HALF * right
            tanh_derivative = _fma(-tanh_inner, tanh_inner, _ONE)
            inner_derivative = _TANH_BETA32 * _fma(_THREE_KAPPA32, h_squared, _ONE)
            right_derivative = left * tanh_derivative * inner_derivative
            return g * (left_derivative + right_derivative)

        return gelu_tanh_backward32

    def gelu_tanh_backward64(g: Any, h: Any) -> Any:
        h_squared = h * h
        inner = _TANH_BETA64 * (h + _TANH_KAPPA64 * (h * h * h))
        tanh_inner = math.tanh(inner)
        left = 0.5 * h
        right = 1.0 + tanh_inner
        left_derivative = 0.5 * right
        tanh_derivative = 1.0 - tanh_inner * tanh_inner
        inner_derivative = _TANH_BETA64 * (1.0 + 3.0 * _TANH_KAPPA64 * h_squared)
        right_derivative = left * tanh_derivative * inner_derivative
        return g * (left_derivative + right_derivative)

    return gelu_tanh_backward64


@overload(_silu_backward, inline="always")
def _silu_backward_overload(g: Any, h: Any) -> Any:
    if h == types.float32:

        def silu_backward32(g: Any, h: Any) -> Any:
            sigmoid = _ONE / (_ONE + _sleef_expf(-h))
            # PyTorch's build contracts ``1 + h * (1 - sigmoid)`` into one FMA (measured: bit
            # equal with it, 2e5 of 1M elements off by an ulp without).
            return g * sigmoid * _fma(h, _ONE - sigmoid, _ONE)  # type: ignore[call-arg]

        return silu_backward32

    def silu_backward64(g: Any, h: Any) -> Any:
        sigmoid = 1.0 / (1.0 + math.exp(-h))
        return g * sigmoid * (1.0 + h * (1.0 - sigmoid))

    return silu_backward64


@njit(inline="always")
def _relu_backward(g: Any, h: Any) -> Any:
    """``threshold_backward(g, h, 0)``: 0 where ``h <= 0`` (NaN passes ``g``)."""
    return _select(h <= 0, _ZERO, g)  # type: ignore[call-arg]


@njit(inline="always")
def _gelu_scalar(h: Any) -> Any:
    return h * _HALF * (_ONE + math.erf(h * _SQRT_HALF32))


@njit(inline="always")
def _gelu_tanh_scalar(h: Any) -> Any:
    inner = _TANH_BETA32 * _fma(_TANH_KAPPA32, h * h * h, h)  # type: ignore[call-arg]
    return _HALF * h * (_ONE + math.tanh(inner))


@njit(inline="always")
def _silu_scalar(h: Any) -> Any:
    return h / (_ONE + math.exp(-h))


@njit(inline="always")
def _gelu_scalar_backward(g: Any, h: Any) -> Any:
    cdf = _HALF * (_ONE + math.erf(h * _SQRT_HALF32))
    pdf = _GELU_PDF32 * math.exp(h * h * np.float32(-0.5))
    return g * _fma(h, pdf, cdf)  # type: ignore[call-arg]


@njit(inline="always")
def _gelu_tanh_scalar_backward(g: Any, h: Any) -> Any:
    h_squared = h * h
    inner = _TANH_BETA32 * _fma(_TANH_KAPPA32, h_squared * h, h)  # type: ignore[call-arg]
    tanh_inner = math.tanh(inner)
    left = _HALF * h
    left_derivative = _HALF * (_ONE + tanh_inner)
    tanh_derivative = _fma(-tanh_inner, tanh_inner, _ONE)
    inner_derivative = _TANH_BETA32 * _fma(_THREE_KAPPA32, h_squared, _ONE)
    return g * (left_derivative + left * tanh_derivative * inner_derivative)


@njit(inline="always")
def _silu_scalar_backward(g: Any, h: Any) -> Any:
    sigmoid = _ONE / (_ONE + math.exp(-h))
    return g * sigmoid * _fma(h, _ONE - sigmoid, _ONE)  # type: ignore[call-arg]


@njit(inline="always")
def _tail_code(activation: int) -> int:
    """The code of ``activation`` in PyTorch's scalar tail (itself where nothing differs)."""
    if activation == GELU:
        return GELU_SCALAR
    if activation == GELU_TANH:
        return GELU_TANH_SCALAR
    if activation == SILU:
        return SILU_SCALAR
    return activation


@njit(inline="always")
def _forward_segment(
    xs: Any, bs: Any, rs: Any, outs: Any, draws: Any, threshold: Any, scale: Any, activation: int
) -> None:
    """``out = r + (keep ? act(x + b) * scale : 0)`` over one contiguous segment; one loop per
    activation so that each is a straight-line, vectorisable body."""
    zero = scale - scale
    if activation == GELU:
        for k in range(xs.size):
            kept = _gelu(_load(xs[k]) + bs[k]) * scale
            dropped = kept if np.uint32(draws[k]) >= threshold else zero
            outs[k] = _to_storage(_load(rs[k]) + dropped, outs)
    elif activation == GELU_TANH:
        for k in range(xs.size):
            kept = _gelu_tanh(_load(xs[k]) + bs[k]) * scale
            dropped = kept if np.uint32(draws[k]) >= threshold else zero
            outs[k] = _to_storage(_load(rs[k]) + dropped, outs)
    elif activation == RELU:
        for k in range(xs.size):
            kept = _relu(_load(xs[k]) + bs[k]) * scale
            dropped = kept if np.uint32(draws[k]) >= threshold else zero
            outs[k] = _to_storage(_load(rs[k]) + dropped, outs)
    elif activation == SILU:
        for k in range(xs.size):
            kept = _silu(_load(xs[k]) + bs[k]) * scale
            dropped = kept if np.uint32(draws[k]) >= threshold else zero
            outs[k] = _to_storage(_load(rs[k]) + dropped, outs)
    elif activation == GELU_SCALAR:
        for k in range(xs.size):
            kept = _gelu_scalar(_load(xs[k]) + bs[k]) * scale
            dropped = kept if np.uint32(draws[k]) >= threshold else zero
            outs[k] = _to_storage(_load(rs[k]) + dropped, outs)
    elif activation == GELU_TANH_SCALAR:
        for k in range(xs.size):
            kept = _gelu_tanh_scalar(_load(xs[k]) + bs[k]) * scale
            dropped = kept if np.uint32(draws[k]) >= threshold else zero
            outs[k] = _to_storage(_load(rs[k]) + dropped, outs)
    elif activation == SILU_SCALAR:
        for k in range(xs.size):
            kept = _silu_scalar(_load(xs[k]) + bs[k]) * scale
            dropped = kept if np.uint32(draws[k]) >= threshold else zero
            outs[k] = _to_storage(_load(rs[k]) + dropped, outs)
    else:
        for k in range(xs.size):
            kept = (_load(xs[k]) + bs[k]) * scale
            dropped = kept if np.uint32(draws[k]) >= threshold else zero
            outs[k] = _to_storage(_load(rs[k]) + dropped, outs)


@njit(**_JIT)
def forward_span(
    x: Any,
    bias: Any,
    residual: Any,
    out: Any,
    start: int,
    stop: int,
    offset: int,
    key: Any,
    threshold: Any,
    scale: Any,
    activation: int,
    vector_end: int,
) -> None:
    """:func:`_forward_segment` over flat elements ``start .. stop`` (mask index ``offset + i``);
    elements from ``vector_end`` on take PyTorch's scalar-tail code (:func:`_tail_code`).

    ``bias`` and ``residual`` are read periodically (element ``i`` uses ``bias[i % bias.size]``);
    a missing operand is a tile of ``-0.0``, the exact identity of IEEE addition."""
    words = np.empty(WORDS_PER_BLOCK * CHUNK_BLOCKS, np.uint32)
    halves = words.view(np.uint16)
    last_block = (offset + stop - 1) // BERNOULLI_PER_BLOCK
    i = start
    while i < stop:
        block = (offset + i) // BERNOULLI_PER_BLOCK
        num_blocks = min(CHUNK_BLOCKS, last_block - block + 1)
        _philox_blocks(words, np.uint64(block), num_blocks, key[0], key[1], key[2], key[3])
        skip = offset + i - block * BERNOULLI_PER_BLOCK
        count = min(num_blocks * BERNOULLI_PER_BLOCK - skip, stop - i)
        done = 0
        while done < count:
            at = i + done
            bias_at = at % bias.size
            residual_at = at % residual.size
            length = min(count - done, bias.size - bias_at, residual.size - residual_at)
            code = activation if at < vector_end else _tail_code(activation)
            if at < vector_end:
                length = min(length, vector_end - at)
            _forward_segment(
                x[at : at + length], bias[bias_at : bias_at + length],
                residual[residual_at : residual_at + length], out[at : at + length],
                halves[skip + done : skip + done + length], threshold, scale, code,
            )  # fmt: skip
            done += length
        i += count


@njit(parallel=True, **_JIT)
def forward(
    x: Any,
    bias: Any,
    residual: Any,
    out: Any,
    offset: int,
    key: Any,
    threshold: Any,
    scale: Any,
    activation: int,
    vector_end: int,
    parts: int,
) -> None:
    """:func:`forward_span` over flat ``x`` in ``parts`` parallel pieces (any split: same bits)."""
    n = x.size
    for part in prange(parts):
        lo = part * n // parts
        hi = (part + 1) * n // parts
        if hi > lo:
            forward_span(
                x, bias, residual, out, lo, hi, offset, key, threshold, scale, activation,
                vector_end,
            )  # fmt: skip


@njit(inline="always")
def _backward_segment(
    gs: Any,
    xs: Any,
    bs: Any,
    grad_xs: Any,
    sums: Any,
    draws: Any,
    threshold: Any,
    scale: Any,
    activation: int,
    accumulate: bool,
) -> None:
    """``gh = act'(x + b) * (keep ? g * scale : 0)`` into ``grad_xs`` (rounded) and, if
    ``accumulate``, ``sums[k] += gh`` (unrounded)."""
    zero = scale - scale
    if activation == GELU:
        for k in range(gs.size):
            kept = _load(gs[k]) * scale
            gh = _gelu_backward(
                kept if np.uint32(draws[k]) >= threshold else zero, _load(xs[k]) + bs[k]
            )
            grad_xs[k] = _to_storage(gh, grad_xs)
            if accumulate:
                sums[k] += gh
    elif activation == GELU_TANH:
        for k in range(gs.size):
            kept = _load(gs[k]) * scale
            gh = _gelu_tanh_backward(
                kept if np.uint32(draws[k]) >= threshold else zero, _load(xs[k]) + bs[k]
            )
            grad_xs[k] = _to_storage(gh, grad_xs)
            if accumulate:
                sums[k] += gh
    elif activation == RELU:
        for k in range(gs.size):
            kept = _load(gs[k]) * scale
            gh = _relu_backward(
                kept if np.uint32(draws[k]) >= threshold else zero, _load(xs[k]) + bs[k]
            )
            grad_xs[k] = _to_storage(gh, grad_xs)
            if accumulate:
                sums[k] += gh
    elif activation == SILU:
        for k in range(gs.size):
            kept = _load(gs[k]) * scale
            gh = _silu_backward(
                kept if np.uint32(draws[k]) >= threshold else zero, _load(xs[k]) + bs[k]
            )
            grad_xs[k] = _to_storage(gh, grad_xs)
            if accumulate:
                sums[k] += gh
    elif activation == GELU_SCALAR:
        for k in range(gs.size):
            kept = _load(gs[k]) * scale
            gh = _gelu_scalar_backward(
                kept if np.uint32(draws[k]) >= threshold else zero, _load(xs[k]) + bs[k]
            )
            grad_xs[k] = _to_storage(gh, grad_xs)
            if accumulate:
                sums[k] += gh
    elif activation == GELU_TANH_SCALAR:
        for k in range(gs.size):
            kept = _load(gs[k]) * scale
            gh = _gelu_tanh_scalar_backward(
                kept if np.uint32(draws[k]) >= threshold else zero, _load(xs[k]) + bs[k]
            )
            grad_xs[k] = _to_storage(gh, grad_xs)
            if accumulate:
                sums[k] += gh
    elif activation == SILU_SCALAR:
        for k in range(gs.size):
            kept = _load(gs[k]) * scale
            gh = _silu_scalar_backward(
                kept if np.uint32(draws[k]) >= threshold else zero, _load(xs[k]) + bs[k]
            )
            grad_xs[k] = _to_storage(gh, grad_xs)
            if accumulate:
                sums[k] += gh
    else:
        for k in range(gs.size):
            kept = _load(gs[k]) * scale
            gh = kept if np.uint32(draws[k]) >= threshold else zero
            grad_xs[k] = _to_storage(gh, grad_xs)
            if accumulate:
                sums[k] += gh


@njit(**_JIT)
def backward_span(
    grad: Any,
    x: Any,
    bias: Any,
    grad_x: Any,
    sums: Any,
    start: int,
    stop: int,
    offset: int,
    key: Any,
    threshold: Any,
    scale: Any,
    activation: int,
    accumulate: bool,
    vector_end: int,
) -> None:
    """:func:`_backward_segment` over flat elements ``start .. stop`` (the tail from
    ``vector_end`` as :func:`forward_span`); element ``i`` adds its
    gradient to ``sums[i % bias.size]`` (``start`` is a multiple of ``bias.size``), so rows are
    summed in order."""
    words = np.empty(WORDS_PER_BLOCK * CHUNK_BLOCKS, np.uint32)
    halves = words.view(np.uint16)
    last_block = (offset + stop - 1) // BERNOULLI_PER_BLOCK
    i = start
    while i < stop:
        block = (offset + i) // BERNOULLI_PER_BLOCK
        num_blocks = min(CHUNK_BLOCKS, last_block - block + 1)
        _philox_blocks(words, np.uint64(block), num_blocks, key[0], key[1], key[2], key[3])
        skip = offset + i - block * BERNOULLI_PER_BLOCK
        count = min(num_blocks * BERNOULLI_PER_BLOCK - skip, stop - i)
        done = 0
        while done < count:
            at = i + done
            bias_at = at % bias.size
            length = min(count - done, bias.size - bias_at)
            code = activation if at < vector_end else _tail_code(activation)
            if at < vector_end:
                length = min(length, vector_end - at)
            _backward_segment(
                grad[at : at + length], x[at : at + length], bias[bias_at : bias_at + length],
                grad_x[at : at + length], sums[bias_at : bias_at + length],
                halves[skip + done : skip + done + length], threshold, scale, code, accumulate,
            )  # fmt: skip
            done += length
        i += count


@njit(inline="always")
def _backward_group(
    grad: Any,
    x: Any,
    bias: Any,
    grad_x: Any,
    partial_sums: Any,
    offset: int,
    key: Any,
    threshold: Any,
    scale: Any,
    activation: int,
    accumulate: bool,
    vector_end: int,
    group: int,
) -> None:
    n = grad.size
    period = bias.size
    rows = (n + period - 1) // period
    groups = partial_sums.shape[0]
    lo = min(group * rows // groups * period, n)
    hi = min((group + 1) * rows // groups * period, n)
    if hi > lo:
        backward_span(
            grad, x, bias, grad_x, partial_sums[group], lo, hi, offset, key, threshold, scale,
            activation, accumulate, vector_end,
        )  # fmt: skip


@njit(**_JIT)
def backward_serial(
    grad: Any,
    x: Any,
    bias: Any,
    grad_x: Any,
    partial_sums: Any,
    offset: int,
    key: Any,
    threshold: Any,
    scale: Any,
    activation: int,
    accumulate: bool,
    vector_end: int,
) -> None:
    """:func:`backward` on the calling thread (the same groups, so the same bits)."""
    for group in range(partial_sums.shape[0]):
        _backward_group(
            grad, x, bias, grad_x, partial_sums, offset, key, threshold, scale, activation,
            accumulate, vector_end, group,
        )  # fmt: skip


@njit(parallel=True, **_JIT)
def backward(
    grad: Any,
    x: Any,
    bias: Any,
    grad_x: Any,
    partial_sums: Any,
    offset: int,
    key: Any,
    threshold: Any,
    scale: Any,
    activation: int,
    accumulate: bool,
    vector_end: int,
) -> None:
    """:func:`backward_span` over ``partial_sums.shape[0]`` groups of whole rows (a row is
    ``bias.size`` elements), in parallel; group ``g`` sums its rows, in order, into
    ``partial_sums[g]``. The groups depend on the row count only, never on the thread count."""
    for group in prange(partial_sums.shape[0]):
        _backward_group(
            grad, x, bias, grad_x, partial_sums, offset, key, threshold, scale, activation,
            accumulate, vector_end, group,
        )  # fmt: skip


@njit(**_JIT)
def sum_groups(partial_sums: Any, period: int, out: Any) -> None:
    """``out[c] = sum over g, then over tiles t, of partial_sums[g, t * period + c]``, in that
    fixed order (the bias was tiled to ``partial_sums.shape[1]`` elements)."""
    tiles = partial_sums.shape[1] // period
    for c in range(period):
        out[c] = 0
    for t in range(tiles):
        for c in range(period):
            total = partial_sums[0, t * period + c]
            for g in range(1, partial_sums.shape[0]):
                total += partial_sums[g, t * period + c]
            if t == 0:
                out[c] = total
            else:
                out[c] += total
