"""The layout pass of the CPU fast path: every layout and mask shape (numba kernels only;
launched from ``backend.py`` and :mod:`._launch`).

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

Gaussian noise (float32 normals of :func:`._philox.normals_span`) is drawn the same way, and a
contiguous tensor with a full mask takes it chunk by chunk in one pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange, types
from numba.core.extending import overload

from dropkit.kernels.cpu._philox import (
    BERNOULLI_PER_BLOCK,
    CHUNK_BLOCKS,
    keep_span,
    normals_span,
)
from dropkit.kernels.cpu._storage import JIT, load, to_storage

__all__ = [
    "MAX_DIMS",
    "apply_chunked",
    "apply_chunked_parallel",
    "apply_drawn",
    "apply_drawn_parallel",
    "chunked_piece",
    "drawn_piece",
    "scratch_size",
]

#: Mask elements per chunk of a full mask drawn in the pass (an L1/L2-sized scratch).
CHUNK_ELEMENTS = BERNOULLI_PER_BLOCK * CHUNK_BLOCKS * 4
#: Elements of a tiled periodic draw pattern (see :func:`_periodic_row`).
TILED_ELEMENTS = 2048
#: The most merged dims the walk keeps an index for.
MAX_DIMS = 8


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


@njit(**JIT)
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
                outs[k] = to_storage(_apply(load(xs[k]), draw, a, b, dropped, affine), outs)
        else:
            ds = draws[draw_at : draw_at + n]
            for k in range(n):
                outs[k] = to_storage(_apply(load(xs[k]), ds[k], a, b, dropped, affine), outs)
        return
    for k in range(n):
        value = load(x[x_at + k * x_step])
        result = _apply(value, draws[draw_at + k * draw_step], a, b, dropped, affine)
        out[out_at + k * out_step] = to_storage(result, out)


@njit(**JIT)
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


@njit(**JIT)
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


@njit(**JIT)
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


@njit(**JIT)
def drawn_piece(
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


@njit(**JIT)
def apply_drawn(
    x: Any, out: Any, draws: Any, dims: Any, period: int, a: Any, b: Any, dropped: Any,
    affine: bool,
) -> None:  # fmt: skip
    """``out = f(x, draws[mask index])`` over ``dims`` with a mask drawn beforehand (serial).
    ``period > 0``: the innermost dim is a contiguous run whose draws repeat with that period
    (see :func:`_periodic_row`); ``period < 0``: one whose draws each hold for ``-period``
    elements (see :func:`_expanded_row`)."""
    drawn_piece(x, out, draws, dims, period, a, b, dropped, affine, 1, 0)


@njit(parallel=True, **JIT)
def apply_drawn_parallel(
    x: Any, out: Any, draws: Any, dims: Any, period: int, a: Any, b: Any, dropped: Any,
    affine: bool, parts: int,
) -> None:  # fmt: skip
    """:func:`apply_drawn` with its rows split into ``parts`` pieces run in parallel."""
    for part in prange(parts):
        drawn_piece(x, out, draws, dims, period, a, b, dropped, affine, parts, part)


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
        normals_span(out, first_index, key)

    return draw_normals


@njit(**JIT)
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


@njit(**JIT)
def chunked_piece(
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
def scratch_size(dims: Any) -> int:
    if dims.shape[0] == 1:
        return min(CHUNK_ELEMENTS, dims[0, 0])
    return max(1, CHUNK_ELEMENTS // dims[0, 3]) * dims[0, 3]


@njit(**JIT)
def apply_chunked(
    x: Any, out: Any, dims: Any, order: Any, offset: int, key: Any, threshold: Any, like: Any,
    a: Any, b: Any, dropped: Any, affine: bool,
) -> None:  # fmt: skip
    """``out = f(x, draw)`` over ``dims``, the draws (of ``like``'s dtype: boolean keep or
    float32 normal) made chunk by chunk in the pass (serial)."""
    size = scratch_size(dims)
    scratch = np.empty(size, like.dtype)
    ordered = np.empty(size if order.shape[0] else 0, like.dtype)
    chunked_piece(x, out, dims, order, offset, key, threshold, scratch, ordered,
                   a, b, dropped, affine, 1, 0)  # fmt: skip


@njit(parallel=True, **JIT)
def apply_chunked_parallel(
    x: Any, out: Any, dims: Any, order: Any, offset: int, key: Any, threshold: Any, like: Any,
    a: Any, b: Any, dropped: Any, affine: bool, parts: int,
) -> None:  # fmt: skip
    """:func:`apply_chunked` with the outer dim split into ``parts`` pieces run in parallel."""
    for part in prange(parts):
        size = scratch_size(dims)
        scratch = np.empty(size, like.dtype)
        ordered = np.empty(size if order.shape[0] else 0, like.dtype)
        chunked_piece(x, out, dims, order, offset, key, threshold, scratch, ordered,
                       a, b, dropped, affine, parts, part)  # fmt: skip
