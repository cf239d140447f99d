"""numba kernels of the CPU fast path for every layout and mask shape (jit functions only;
wrappers live in ``backend.py``).

A tensor, its output and its mask are described by merged dims (see
:func:`dropkit.kernels._layout.merged_dims`): an int64 array ``dims`` of rows
``(size, x_stride, out_stride, mask_stride)``, outermost first in the output's memory order, in
elements. Arrays are flat views of each tensor's span of storage. The output is walked in memory
order one *row* (a run of the innermost merged dim) at a time; each element reads its draw (a
boolean keep value or a float32 normal) at its mask index from a ``draws`` array:

* a broadcast mask (spatial, locked, feature-alpha, a ``noise_shape``) is drawn whole first: it
  is small;
* a full mask over another layout (channels_last, a transposed or sliced tensor) is drawn per
  chunk of the outermost merged dim into a small scratch array, when the inner dims cover a
  contiguous range of mask indices (they do for every dense layout whose outermost dim is the
  mask's, e.g. channels_last's batch dim), else whole.

Rows whose mask stride is 0 (a spatial mask: one value for ``H * W`` elements) or 1 and whose
data are contiguous take vectorised loops. Each element depends only on its mask index, so any
split of rows or chunks over threads gives the same bits.

Gaussian noise (one float32 word per element, Box-Muller on word pairs (0, 1) and (2, 3) of each
Philox block, as :func:`dropkit.rng.words_to_normal`) is drawn the same way, and a contiguous
tensor with a full mask takes it chunk by chunk in one pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import carray, njit, prange, types
from numba.core.extending import overload

from dropkit.kernels.cpu._kernels import (
    _JIT,
    BERNOULLI_PER_BLOCK,
    CHUNK_BLOCKS,
    UNIFORM_SCALE,
    WORDS_PER_BLOCK,
    _bits_from_float32,
    _float32_from_bits,
    _load,
    _philox_blocks,
    _to_storage,
    keep_span,
)
from dropkit.kernels.cpu._openmp import _call_int_function, _pointer_from_address

#: Mask elements per chunk of a full mask drawn in the pass (an L1/L2-sized scratch).
CHUNK_ELEMENTS = BERNOULLI_PER_BLOCK * CHUNK_BLOCKS * 4
#: Elements of a tiled periodic draw pattern (see :func:`_periodic_row`).
TILED_ELEMENTS = 2048
#: The most merged dims the walk keeps an index for.
MAX_DIMS = 8
# Box-Muller constants of dropkit.rng, as float32 (the reference computes in float32).
TWO_PI = np.float32(6.283185307179586)
MINUS_TWO = np.float32(-2.0)
NORMAL_U_MIN = np.float32(1.0e-7)


def _apply(value: Any, draw: Any, a: Any, b: Any, dropped: Any, affine: bool) -> Any:
    """One output value in compute precision (replaced by the overload)."""
    raise NotImplementedError  # pragma: no cover


@overload(_apply)
def _apply_overload(value: Any, draw: Any, a: Any, b: Any, dropped: Any, affine: Any) -> Any:
    """A keep draw selects ``value * a (+ b)`` or ``dropped``; a float32 normal ``n`` gives
    ``value * (1 + a * n)`` (Gaussian dropout, ``a`` the std), in ``value``'s precision."""
    if isinstance(draw, types.Boolean):

        def select(value: Any, draw: Any, a: Any, b: Any, dropped: Any, affine: Any) -> Any:
            kept = value * a + b if affine else value * a
            return kept if draw else dropped

        return select
    one = np.float64(1.0) if value == types.float64 else np.float32(1.0)
    cast = np.float64 if value == types.float64 else np.float32

    def scale(value: Any, draw: Any, a: Any, b: Any, dropped: Any, affine: Any) -> Any:
        return value * (one + a * cast(draw))

    return scale


@njit(**_JIT)
def _row(
    x: Any, out: Any, draws: Any, x_at: int, out_at: int, draw_at: int, dim: Any,
    a: Any, b: Any, dropped: Any, affine: bool,
) -> None:  # fmt: skip
    """One run of the innermost merged dim ``dim = (size, x_stride, out_stride, draw_stride)``.
    The common strides take loops over contiguous slices, which LLVM vectorises."""
    n, x_step, out_step, draw_step = dim[0], dim[1], dim[2], dim[3]
    if x_step == 1 and out_step == 1 and draw_step <= 1:
        xs = x[x_at : x_at + n]
        outs = out[out_at : out_at + n]
        if draw_step == 0:
            draw = draws[draw_at]
            for k in range(n):
                outs[k] = _to_storage(_apply(_load(xs[k]), draw, a, b, dropped, affine), outs)
        else:
            ds = draws[draw_at : draw_at + n]
            for k in range(n):
                outs[k] = _to_storage(_apply(_load(xs[k]), ds[k], a, b, dropped, affine), outs)
        return
    for k in range(n):
        value = _load(x[x_at + k * x_step])
        result = _apply(value, draws[draw_at + k * draw_step], a, b, dropped, affine)
        out[out_at + k * out_step] = _to_storage(result, out)


@njit(**_JIT)
def _periodic_row(
    x: Any, out: Any, draws: Any, x_at: int, out_at: int, draw_at: int, n: int, period: int,
    tiled: Any, chunk: Any, a: Any, b: Any, dropped: Any, affine: bool,
) -> None:  # fmt: skip
    """A contiguous run of ``n`` elements whose draws repeat with ``period``
    (``draws[draw_at + k % period]``; channels_last spatial dropout: ``C`` channels per pixel):
    the period is tiled into ``tiled`` once, then the run is long vectorised rows."""
    length = min(tiled.size, n)  # a multiple of the period
    tiled[:period] = draws[draw_at : draw_at + period]
    filled = period
    while filled < length:  # doubling copies
        more = min(filled, length - filled)
        tiled[filled : filled + more] = tiled[:more]
        filled += more
    for done in range(0, n, length):
        chunk[0], chunk[1], chunk[2], chunk[3] = min(length, n - done), 1, 1, 1
        _row(x, out, tiled, x_at + done, out_at + done, 0, chunk, a, b, dropped, affine)


@njit(**_JIT)
def _expanded_row(
    x: Any, out: Any, draws: Any, x_at: int, out_at: int, draw_at: int, dim: Any, repeat: int,
    tiled: Any, chunk: Any, a: Any, b: Any, dropped: Any, affine: bool,
) -> None:  # fmt: skip
    """A contiguous run ``dim = (n, 1, 1, s)`` whose element ``k`` draws
    ``draws[draw_at + (k // repeat) * s]`` (spatial dropout: ``H*W`` elements per channel):
    each tile of whole repeats is filled in ``tiled``, then is one long vectorised row."""
    n, step = dim[0], dim[3]
    length = min(tiled.size // repeat * repeat, n)
    for done in range(0, n, length):
        count = min(length, n - done)
        first = done // repeat
        for r in range(count // repeat):
            tiled[r * repeat : (r + 1) * repeat] = draws[draw_at + (first + r) * step]
        chunk[0], chunk[1], chunk[2], chunk[3] = count, 1, 1, 1
        _row(x, out, tiled, x_at + done, out_at + done, 0, chunk, a, b, dropped, affine)


@njit(**_JIT)
def _rows(
    x: Any, out: Any, draws: Any, dims: Any, first_row: int, last_row: int,
    x_base: int, out_base: int, draw_base: int, a: Any, b: Any, dropped: Any, affine: bool,
    period: int, tiled: Any,
) -> None:  # fmt: skip
    """Rows ``first_row .. last_row - 1`` of ``dims`` (a row: one index of the outer dims,
    row-major), element ``(x_base, out_base, draw_base)`` plus the strides' offsets. With a
    ``period``, each row is a :func:`_periodic_row`."""
    depth = dims.shape[0]
    inner = dims[depth - 1]
    index = np.zeros(MAX_DIMS, np.int64)
    x_at, out_at, draw_at = x_base, out_base, draw_base
    rest = first_row
    for d in range(depth - 2, -1, -1):
        i = rest % dims[d, 0]
        rest //= dims[d, 0]
        index[d] = i
        x_at += i * dims[d, 1]
        out_at += i * dims[d, 2]
        draw_at += i * dims[d, 3]
    chunk = np.empty(4, np.int64)
    for _ in range(first_row, last_row):
        if period < 0:
            _expanded_row(x, out, draws, x_at, out_at, draw_at, inner, -period, tiled, chunk,
                          a, b, dropped, affine)  # fmt: skip
        elif period > 0:
            _periodic_row(x, out, draws, x_at, out_at, draw_at, inner[0], period, tiled, chunk,
                          a, b, dropped, affine)  # fmt: skip
        else:
            _row(x, out, draws, x_at, out_at, draw_at, inner, a, b, dropped, affine)
        d = depth - 2  # advance the outer index like an odometer
        while d >= 0:
            index[d] += 1
            x_at += dims[d, 1]
            out_at += dims[d, 2]
            draw_at += dims[d, 3]
            if index[d] < dims[d, 0]:
                break
            x_at -= dims[d, 0] * dims[d, 1]
            out_at -= dims[d, 0] * dims[d, 2]
            draw_at -= dims[d, 0] * dims[d, 3]
            index[d] = 0
            d -= 1


@njit(inline="always")
def _row_count(dims: Any) -> int:
    rows = 1
    for d in range(dims.shape[0] - 1):
        rows *= dims[d, 0]
    return rows


@njit(**_JIT)
def _drawn_piece(
    x: Any, out: Any, draws: Any, dims: Any, period: int, a: Any, b: Any, dropped: Any,
    affine: bool, parts: int, part: int,
) -> None:  # fmt: skip
    rows = _row_count(dims)
    lo = part * rows // parts
    hi = (part + 1) * rows // parts
    repeat = abs(period)
    tiled = np.empty(repeat * max(1, TILED_ELEMENTS // repeat) if repeat else 0, draws.dtype)
    if hi > lo:
        _rows(x, out, draws, dims, lo, hi, 0, 0, 0, a, b, dropped, affine, period, tiled)


@njit(**_JIT)
def apply_drawn(
    x: Any, out: Any, draws: Any, dims: Any, period: int, a: Any, b: Any, dropped: Any,
    affine: bool,
) -> None:  # fmt: skip
    """``out = f(x, draws[mask index])`` over ``dims`` with a mask drawn beforehand (serial).
    ``period > 0``: the innermost dim is a contiguous run whose draws repeat with that period
    (see :func:`_periodic_row`); ``period < 0``: one whose draws each hold for ``-period``
    elements (see :func:`_expanded_row`)."""
    _drawn_piece(x, out, draws, dims, period, a, b, dropped, affine, 1, 0)


@njit(parallel=True, **_JIT)
def apply_drawn_parallel(
    x: Any, out: Any, draws: Any, dims: Any, period: int, a: Any, b: Any, dropped: Any,
    affine: bool, parts: int,
) -> None:  # fmt: skip
    """:func:`apply_drawn` with its rows split into ``parts`` pieces run in parallel."""
    for part in prange(parts):
        _drawn_piece(x, out, draws, dims, period, a, b, dropped, affine, parts, part)


# Cephes' float32 log, sin and cos (Moshier, Cephes Math Library), written branch-free so that
# LLVM vectorises the Box-Muller loop: numba's math.log/sin/cos call libm one value at a time
# (measured 100 ms per 16M normals on one core). Within 4 ulps of PyTorch's (tested).
_SQRT_HALF = np.float32(0.70710678118654752440)
_LOG_C = (
    np.float32(7.0376836292e-2), np.float32(-1.1514610310e-1), np.float32(1.1676998740e-1),
    np.float32(-1.2420140846e-1), np.float32(1.4249322787e-1), np.float32(-1.6668057665e-1),
    np.float32(2.0000714765e-1), np.float32(-2.4999993993e-1), np.float32(3.3333331174e-1),
)  # fmt: skip
_LOG2_LO = np.float32(-2.12194440e-4)
_LOG2_HI = np.float32(0.693359375)
_FOUR_OVER_PI = np.float32(1.27323954473516)
# pi/4 in four float32 parts; each of the first three has at most 21 significant bits, so
# y * part is exact for the y <= 8 of x < 2 pi (Cody & Waite).
_PI_4 = (np.float32(0.78515625), np.float32(0.00024187564849853516),
         np.float32(3.774891865759855e-08), np.float32(3.111685984834994e-14))  # fmt: skip
_SIN_C = (np.float32(-1.9515295891e-4), np.float32(8.3321608736e-3),
          np.float32(-1.6666654611e-1))  # fmt: skip
_COS_C = (np.float32(2.443315711809948e-5), np.float32(-1.388731625493765e-3),
          np.float32(4.166664568298827e-2))  # fmt: skip
_HALF = np.float32(0.5)
_ONE = np.float32(1.0)


@njit(inline="always")
def _log(x: Any) -> Any:
    """Natural log of a normal positive float32 ``x`` (Cephes ``logf``)."""
    bits: Any = _bits_from_float32(x)  # type: ignore[call-arg]
    exponent = np.int32((bits >> np.uint32(23)) & np.uint32(0xFF)) - np.int32(126)
    mantissa = _float32_from_bits((bits & np.uint32(0x807FFFFF)) | np.uint32(0x3F000000))
    small = mantissa < _SQRT_HALF  # mantissa in [0.5, 1): move it to [sqrt(1/2), sqrt(2))
    exponent = exponent - np.int32(small)
    f = (mantissa + mantissa - _ONE) if small else (mantissa - _ONE)
    z = f * f
    c = _LOG_C
    y = ((((((((c[0] * f + c[1]) * f + c[2]) * f + c[3]) * f + c[4]) * f + c[5]) * f + c[6]) * f
          + c[7]) * f + c[8]) * f * z  # fmt: skip
    e = np.float32(exponent)
    y = y + _LOG2_LO * e
    y = y - _HALF * z
    return (f + y) + _LOG2_HI * e


@njit(inline="always")
def _cos_sin(x: Any) -> tuple[Any, Any]:
    """``(cos x, sin x)`` of a float32 ``x`` in ``[0, 2 pi)`` (Cephes ``cosf``/``sinf``)."""
    j = np.int32(x * _FOUR_OVER_PI)
    j = j + (j & np.int32(1))
    y = np.float32(j)
    # x - j pi/4 (|z| <= pi/4): Cephes' three parts of pi/4 leave a relative error of 1e-6
    # next to the zeros of cos and sin (x = 3 pi/2 in float32 gave 16 ulps).
    z = (((x - y * _PI_4[0]) - y * _PI_4[1]) - y * _PI_4[2]) - y * _PI_4[3]
    zz = z * z
    sin_z = ((_SIN_C[0] * zz + _SIN_C[1]) * zz + _SIN_C[2]) * zz * z + z
    cos_z = ((_COS_C[0] * zz + _COS_C[1]) * zz + _COS_C[2]) * zz * zz - _HALF * zz + _ONE
    quadrant = (j >> np.int32(1)) & np.int32(3)  # x = quadrant * pi/2 + z
    swap = (quadrant & np.int32(1)) != 0
    cos_part = sin_z if swap else cos_z
    sin_part = cos_z if swap else sin_z
    cos_sign = ((quadrant + np.int32(1)) & np.int32(2)) != 0  # quadrants 1 and 2
    sin_sign = quadrant >= np.int32(2)
    return (-cos_part if cos_sign else cos_part), (-sin_part if sin_sign else sin_part)


@njit(**_JIT)
def _normals_span(out: Any, first_index: int, key: Any) -> None:
    """Standard normals of mask indices ``first_index ..`` into float32 ``out``, as
    :func:`dropkit.rng.normal` (Box-Muller on words (0, 1) and (2, 3) of each block)."""
    n = out.size
    words = np.empty(WORDS_PER_BLOCK * CHUNK_BLOCKS, np.uint32)
    normals = np.empty(WORDS_PER_BLOCK * CHUNK_BLOCKS, np.float32)
    block = first_index // WORDS_PER_BLOCK
    last_block = (first_index + n - 1) // WORDS_PER_BLOCK
    done = 0
    while done < n:
        num_blocks = min(CHUNK_BLOCKS, last_block - block + 1)
        _philox_blocks(words, np.uint64(block), num_blocks, key[0], key[1], key[2], key[3])
        for k in range(WORDS_PER_BLOCK * num_blocks):
            signed = np.int64(np.int32(words[k]))
            folded = -signed - 1 if signed < 0 else signed
            normals[k] = np.float32(folded) * UNIFORM_SCALE
        for half in range(WORDS_PER_BLOCK // 2 * num_blocks):
            pair = 2 * half
            radius_u = normals[pair]
            radius_u = radius_u if radius_u > NORMAL_U_MIN else NORMAL_U_MIN
            angle = TWO_PI * normals[pair + 1]
            radius = np.sqrt(MINUS_TWO * _log(radius_u))
            cos_angle, sin_angle = _cos_sin(angle)
            normals[pair] = radius * cos_angle
            normals[pair + 1] = radius * sin_angle
        start = first_index + done - block * WORDS_PER_BLOCK
        count = min(num_blocks * WORDS_PER_BLOCK - start, n - done)
        out[done : done + count] = normals[start : start + count]
        done += count
        block += num_blocks


def _draw_span(out: Any, first_index: int, key: Any, threshold: Any) -> None:
    """Draws of mask indices ``first_index ..`` into ``out`` (replaced by the overload)."""
    raise NotImplementedError  # pragma: no cover


@overload(_draw_span)
def _draw_span_overload(out: Any, first_index: Any, key: Any, threshold: Any) -> Any:
    """Keep values into a boolean ``out``, standard normals into a float32 one."""
    if out.dtype == types.boolean:

        def draw_keep(out: Any, first_index: Any, key: Any, threshold: Any) -> None:
            keep_span(out, first_index, key, threshold)

        return draw_keep

    def draw_normals(out: Any, first_index: Any, key: Any, threshold: Any) -> None:
        _normals_span(out, first_index, key)

    return draw_normals


@njit(**_JIT)
def _to_memory_order(draws: Any, ordered: Any, order: Any) -> None:
    """``ordered[memory position] = draws[mask position]`` over one dense inner block: ``order``
    lists its dims as ``(size, memory stride)``, outermost first in mask order (the last has mask
    stride 1). A scatter of one byte (or float32) per element, in L1/L2."""
    depth = order.shape[0]
    inner, inner_stride = order[depth - 1, 0], order[depth - 1, 1]
    index = np.zeros(MAX_DIMS, np.int64)
    position = 0
    for source in range(0, draws.size, inner):
        for k in range(inner):
            ordered[position + k * inner_stride] = draws[source + k]
        d = depth - 2
        while d >= 0:
            index[d] += 1
            position += order[d, 1]
            if index[d] < order[d, 0]:
                break
            position -= order[d, 0] * order[d, 1]
            index[d] = 0
            d -= 1


@njit(**_JIT)
def _chunked_piece(
    x: Any, out: Any, dims: Any, order: Any, offset: int, key: Any, threshold: Any,
    scratch: Any, ordered: Any, a: Any, b: Any, dropped: Any, affine: bool, parts: int, part: int,
) -> None:  # fmt: skip
    """Outer indices of this piece: each chunk of them draws its mask indices (``dims[0]``'s
    mask stride ``L`` apart, the inner dims covering ``[0, L)``) into ``scratch``, then walks
    its rows. A single merged dim (mask stride 1) is cut into chunks of itself. Where the inner
    dims form a dense block (``order`` not empty: channels_last, a transposed tensor), the draws
    are first put in memory order, so that the pass itself is one contiguous, vectorised row."""
    outer = dims[0]
    chunk = np.empty(4, np.int64)
    if dims.shape[0] == 1:
        n = outer[0]
        lo = part * n // parts
        hi = (part + 1) * n // parts
        for start in range(lo, hi, CHUNK_ELEMENTS):
            count = min(CHUNK_ELEMENTS, hi - start)
            draws = scratch[:count]
            _draw_span(draws, offset + start, key, threshold)
            chunk[0], chunk[1], chunk[2], chunk[3] = count, outer[1], outer[2], 1
            _row(x, out, draws, start * outer[1], start * outer[2], 0, chunk,
                 a, b, dropped, affine)  # fmt: skip
        return
    inner = dims[1:]
    span = outer[3]
    rows = _row_count(inner)
    per_chunk = max(1, CHUNK_ELEMENTS // span)
    lo = part * outer[0] // parts
    hi = (part + 1) * outer[0] // parts
    for first in range(lo, hi, per_chunk):
        last = min(first + per_chunk, hi)
        draws = scratch[: (last - first) * span]
        _draw_span(draws, offset + first * span, key, threshold)
        if order.shape[0] == 0:
            for i in range(first, last):
                _rows(x, out, draws, inner, 0, rows, i * outer[1], i * outer[2],
                      (i - first) * span, a, b, dropped, affine, 0, scratch)  # fmt: skip
            continue
        for i in range(first, last):
            block = slice((i - first) * span, (i - first + 1) * span)
            _to_memory_order(draws[block], ordered[block], order)
        if outer[1] == span and outer[2] == span:  # the chunk is one contiguous run
            chunk[0], chunk[1], chunk[2], chunk[3] = (last - first) * span, 1, 1, 1
            _row(x, out, ordered, first * span, first * span, 0, chunk, a, b, dropped, affine)
            continue
        chunk[0], chunk[1], chunk[2], chunk[3] = span, 1, 1, 1
        for i in range(first, last):
            _row(x, out, ordered, i * outer[1], i * outer[2], (i - first) * span, chunk,
                 a, b, dropped, affine)  # fmt: skip


@njit(inline="always")
def _scratch_size(dims: Any) -> int:
    if dims.shape[0] == 1:
        return min(CHUNK_ELEMENTS, dims[0, 0])
    return max(1, CHUNK_ELEMENTS // dims[0, 3]) * dims[0, 3]


@njit(**_JIT)
def apply_chunked(
    x: Any, out: Any, dims: Any, order: Any, offset: int, key: Any, threshold: Any, like: Any,
    a: Any, b: Any, dropped: Any, affine: bool,
) -> None:  # fmt: skip
    """``out = f(x, draw)`` over ``dims``, the draws (of ``like``'s dtype: boolean keep or
    float32 normal) made chunk by chunk in the pass (serial)."""
    size = _scratch_size(dims)
    scratch = np.empty(size, like.dtype)
    ordered = np.empty(size if order.shape[0] else 0, like.dtype)
    _chunked_piece(x, out, dims, order, offset, key, threshold, scratch, ordered,
                   a, b, dropped, affine, 1, 0)  # fmt: skip


@njit(parallel=True, **_JIT)
def apply_chunked_parallel(
    x: Any, out: Any, dims: Any, order: Any, offset: int, key: Any, threshold: Any, like: Any,
    a: Any, b: Any, dropped: Any, affine: bool, parts: int,
) -> None:  # fmt: skip
    """:func:`apply_chunked` with the outer dim split into ``parts`` pieces run in parallel."""
    for part in prange(parts):
        size = _scratch_size(dims)
        scratch = np.empty(size, like.dtype)
        ordered = np.empty(size if order.shape[0] else 0, like.dtype)
        _chunked_piece(x, out, dims, order, offset, key, threshold, scratch, ordered,
                       a, b, dropped, affine, parts, part)  # fmt: skip


@njit(**_JIT)
def normals(out: Any, offset: int, key: Any) -> None:
    """Float32 standard normals of mask indices ``offset ..`` into ``out`` (serial)."""
    _normals_span(out, offset, key)


@njit(parallel=True, **_JIT)
def normals_parallel(out: Any, offset: int, key: Any, parts: int) -> None:
    """:func:`normals` in ``parts`` parallel pieces."""
    n = out.size
    for part in prange(parts):
        lo = part * n // parts
        hi = (part + 1) * n // parts
        if hi > lo:
            _normals_span(out[lo:hi], offset + lo, key)


# -- the OpenMP bodies (launched by ._layout_launch) --------------------------------------------
# Here, beside the functions they call: numba's disk cache keys a cached function on its own
# file only, so a body in another file would keep running stale copies of these after an edit.

# Layout of the int64 parameter block.
(
    _CHUNKED, _GAUSSIAN, _X, _X_LEN, _OUT, _OUT_LEN, _DRAWS, _DRAWS_LEN, _DIMS, _DEPTH, _ORDER,
    _ORDER_DEPTH, _PERIOD, _OFFSET, _KEY, _THRESHOLD, _AFFINE, _CONSTANTS, _THREAD_NUM,
    _NUM_THREADS,
) = range(20)  # fmt: skip
_PARAMETERS = 20

_int64_pointer = _pointer_from_address(types.int64)
_uint64_pointer = _pointer_from_address(types.uint64)
_uint8_pointer = _pointer_from_address(types.uint8)
_float64_pointer = _pointer_from_address(types.float64)
_float32_pointer = _pointer_from_address(types.float32)
_bfloat16_pointer = _pointer_from_address(types.uint16)
_float16_pointer = _pointer_from_address(types.int16)


@njit(inline="always")
def _run_piece(x: Any, out: Any, p: Any, draws: Any, a: Any, b: Any, dropped: Any) -> None:
    dims = carray(_int64_pointer(p[_DIMS]), (p[_DEPTH], 4))
    affine = p[_AFFINE] != 0
    thread: int = _call_int_function(p[_THREAD_NUM])  # type: ignore[call-arg]
    threads: int = _call_int_function(p[_NUM_THREADS])
    if p[_CHUNKED] == 0:
        _drawn_piece(x, out, draws, dims, p[_PERIOD], a, b, dropped, affine, threads, thread)
        return
    order = carray(_int64_pointer(p[_ORDER]), (p[_ORDER_DEPTH], 2))
    key = carray(_uint64_pointer(p[_KEY]), 4)
    size = _scratch_size(dims)
    scratch = np.empty(size, draws.dtype)
    ordered = np.empty(size if order.shape[0] else 0, draws.dtype)
    _chunked_piece(
        x, out, dims, order, p[_OFFSET], key, np.uint16(p[_THRESHOLD]), scratch, ordered,
        a, b, dropped, affine, threads, thread,
    )  # fmt: skip


@njit(inline="always")
def _run_thread(x: Any, out: Any, p: Any, a: Any, b: Any, dropped: Any) -> None:
    """This OpenMP thread's piece, with boolean keep draws or float32 normals."""
    if p[_GAUSSIAN] == 0:
        keep = carray(_uint8_pointer(p[_DRAWS]), p[_DRAWS_LEN]).view(np.bool_)
        _run_piece(x, out, p, keep, a, b, dropped)
    else:
        normals = carray(_float32_pointer(p[_DRAWS]), p[_DRAWS_LEN])
        _run_piece(x, out, p, normals, a, b, dropped)


# Module-level bodies (no closures), so that numba's disk cache finds them again.
def _body_float32(data: Any) -> None:
    p = carray(data, _PARAMETERS, np.int64)
    x = carray(_float32_pointer(p[_X]), p[_X_LEN])
    out = carray(_float32_pointer(p[_OUT]), p[_OUT_LEN])
    c = carray(_float64_pointer(p[_CONSTANTS]), 3)
    _run_thread(x, out, p, np.float32(c[0]), np.float32(c[1]), np.float32(c[2]))


def _body_float64(data: Any) -> None:
    p = carray(data, _PARAMETERS, np.int64)
    x = carray(_float64_pointer(p[_X]), p[_X_LEN])
    out = carray(_float64_pointer(p[_OUT]), p[_OUT_LEN])
    c = carray(_float64_pointer(p[_CONSTANTS]), 3)
    _run_thread(x, out, p, c[0], c[1], c[2])


def _body_bfloat16(data: Any) -> None:
    p = carray(data, _PARAMETERS, np.int64)
    x = carray(_bfloat16_pointer(p[_X]), p[_X_LEN])
    out = carray(_bfloat16_pointer(p[_OUT]), p[_OUT_LEN])
    c = carray(_float64_pointer(p[_CONSTANTS]), 3)
    _run_thread(x, out, p, np.float32(c[0]), np.float32(c[1]), np.float32(c[2]))


def _body_float16(data: Any) -> None:
    p = carray(data, _PARAMETERS, np.int64)
    x = carray(_float16_pointer(p[_X]), p[_X_LEN])
    out = carray(_float16_pointer(p[_OUT]), p[_OUT_LEN])
    c = carray(_float64_pointer(p[_CONSTANTS]), 3)
    _run_thread(x, out, p, np.float32(c[0]), np.float32(c[1]), np.float32(c[2]))


_BODIES = {
    np.dtype(np.float32): _body_float32,
    np.dtype(np.float64): _body_float64,
    np.dtype(np.uint16): _body_bfloat16,
    np.dtype(np.int16): _body_float16,
}
