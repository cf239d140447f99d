"""The activations of the fused ops and their backward, as PyTorch's x86 CPU kernels compute
them (numba functions only, inlined into :mod:`._fused`).

They reproduce PyTorch's own kernels operation for operation
(``aten/src/ATen/native/cpu/Activation.cpp`` on ``Vectorized<float>``), so the fused pass gives
the reference's bits: SLEEF's ``expf_u10`` and ``tanhf_u10`` are ported (:func:`_sleef_expf`,
:func:`_sleef_tanhf`), ``erf`` is PyTorch's Abramowitz-Stegun polynomial (:func:`_erf_as`), the
``a * b + c`` that PyTorch's build contracts into FMAs are FMAs here too, and the last elements
of a tensor take PyTorch's scalar code (C library ``expf``/``erff``/``tanhf``). Not reproduced:
oneDNN's gelu, which PyTorch runs for float32 gelu when oneDNN is on, and SLEEF's float64
functions (the C library's are used); ``docs/cpu.md`` gives the measured bounds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core.extending import intrinsic, overload

from dropkit.kernels.cpu._storage import bits_from_float32, float32_from_bits

__all__ = [
    "GELU",
    "GELU_SCALAR",
    "GELU_TANH",
    "GELU_TANH_SCALAR",
    "IDENTITY",
    "RELU",
    "SILU",
    "SILU_SCALAR",
    "gelu",
    "gelu_backward",
    "gelu_scalar",
    "gelu_scalar_backward",
    "gelu_tanh",
    "gelu_tanh_backward",
    "gelu_tanh_scalar",
    "gelu_tanh_scalar_backward",
    "relu",
    "relu_backward",
    "silu",
    "silu_backward",
    "silu_scalar",
    "silu_scalar_backward",
    "tail_code",
]

#: Activation codes (the order of :data:`dropkit.kernels.reference.ACTIVATIONS`).
IDENTITY, GELU, GELU_TANH, RELU, SILU = range(5)
#: PyTorch computes the last ``n % (2 * vector width)`` elements of a tensor with its scalar code
#: (C library ``erff``/``expf``): these codes reproduce it for the tail (float32 only).
GELU_SCALAR, GELU_TANH_SCALAR, SILU_SCALAR = 5, 6, 7


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
    return float32_from_bits(np.uint32(q + np.int32(0x7F)) << np.uint32(23))  # type: ignore[call-arg]


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
    sign = bits_from_float32(x) & _SIGN32  # type: ignore[call-arg]
    magnitude = abs(x)
    t = _ONE / _fma(_ERF_P, magnitude, _ONE)
    r = _fma(_ERF_A[4], t, _ERF_A[3])
    r = _fma(r, t, _ERF_A[2])
    r = _fma(r, t, _ERF_A[1])
    r = _fma(r, t, _ERF_A[0])
    negative_exp = -_sleef_expf(-(x * x))
    value = _fma(negative_exp * t, r, _ONE)
    return float32_from_bits(bits_from_float32(value) ^ sign)


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
    r = float32_from_bits(bits_from_float32(r) ^ (bits_from_float32(x) & _SIGN32))
    return _select(x != x, x, r)


def gelu(h: Any) -> Any:  # pragma: no cover - stubs replaced by the overloads below
    raise NotImplementedError


def gelu_tanh(h: Any) -> Any:  # pragma: no cover
    raise NotImplementedError


def silu(h: Any) -> Any:  # pragma: no cover
    raise NotImplementedError


def gelu_backward(g: Any, h: Any) -> Any:  # pragma: no cover
    raise NotImplementedError


def gelu_tanh_backward(g: Any, h: Any) -> Any:  # pragma: no cover
    raise NotImplementedError


def silu_backward(g: Any, h: Any) -> Any:  # pragma: no cover
    raise NotImplementedError


# Each activation and its backward, with PyTorch's operation order: float32 as PyTorch's
# vectorised CPU kernels compute it, float64 with the C library's erf/exp/tanh.


@overload(gelu, inline="always")
def _gelu_overload(h: Any) -> Any:
    if h == types.float32:

        def gelu32(h: Any) -> Any:
            return h * _HALF * (_ONE + _erf_as(h * _SQRT_HALF32))

        return gelu32

    def gelu64(h: Any) -> Any:
        return h * 0.5 * (1.0 + math.erf(h * _SQRT_HALF64))

    return gelu64


@overload(gelu_tanh, inline="always")
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


@overload(silu, inline="always")
def _silu_overload(h: Any) -> Any:
    if h == types.float32:

        def silu32(h: Any) -> Any:
            return h / (_ONE + _sleef_expf(-h))

        return silu32

    def silu64(h: Any) -> Any:
        return h / (1.0 + math.exp(-h))

    return silu64


@njit(inline="always")
def relu(h: Any) -> Any:
    """``torch.relu``: negative to +0; -0.0 and NaN pass through."""
    return _select(h < 0, _ZERO, h)  # type: ignore[call-arg]


@overload(gelu_backward, inline="always")
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


@overload(gelu_tanh_backward, inline="always")
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


@overload(silu_backward, inline="always")
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
def relu_backward(g: Any, h: Any) -> Any:
    """``threshold_backward(g, h, 0)``: 0 where ``h <= 0`` (NaN passes ``g``)."""
    return _select(h <= 0, _ZERO, g)  # type: ignore[call-arg]


@njit(inline="always")
def gelu_scalar(h: Any) -> Any:
    return h * _HALF * (_ONE + math.erf(h * _SQRT_HALF32))


@njit(inline="always")
def gelu_tanh_scalar(h: Any) -> Any:
    inner = _TANH_BETA32 * _fma(_TANH_KAPPA32, h * h * h, h)  # type: ignore[call-arg]
    return _HALF * h * (_ONE + math.tanh(inner))


@njit(inline="always")
def silu_scalar(h: Any) -> Any:
    return h / (_ONE + math.exp(-h))


@njit(inline="always")
def gelu_scalar_backward(g: Any, h: Any) -> Any:
    cdf = _HALF * (_ONE + math.erf(h * _SQRT_HALF32))
    pdf = _GELU_PDF32 * math.exp(h * h * np.float32(-0.5))
    return g * _fma(h, pdf, cdf)  # type: ignore[call-arg]


@njit(inline="always")
def gelu_tanh_scalar_backward(g: Any, h: Any) -> Any:
    h_squared = h * h
    inner = _TANH_BETA32 * _fma(_TANH_KAPPA32, h_squared * h, h)  # type: ignore[call-arg]
    tanh_inner = math.tanh(inner)
    left = _HALF * h
    left_derivative = _HALF * (_ONE + tanh_inner)
    tanh_derivative = _fma(-tanh_inner, tanh_inner, _ONE)
    inner_derivative = _TANH_BETA32 * _fma(_THREE_KAPPA32, h_squared, _ONE)
    return g * (left_derivative + left * tanh_derivative * inner_derivative)


@njit(inline="always")
def silu_scalar_backward(g: Any, h: Any) -> Any:
    sigmoid = _ONE / (_ONE + math.exp(-h))
    return g * sigmoid * _fma(h, _ONE - sigmoid, _ONE)  # type: ignore[call-arg]


@njit(inline="always")
def tail_code(activation: int) -> int:
    """The code of ``activation`` in PyTorch's scalar tail (itself where nothing differs)."""
    if activation == GELU:
        return GELU_SCALAR
    if activation == GELU_TANH:
        return GELU_TANH_SCALAR
    if activation == SILU:
        return SILU_SCALAR
    return activation
