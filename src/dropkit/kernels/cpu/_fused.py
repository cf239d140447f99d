"""numba kernels of the fused ops ``residual + dropout(act(x + bias))`` and its backward
(kernels only; launched from ``backend.py``; the activations are :mod:`._activations`).

Every element depends only on its index, and the bias gradient is summed in a fixed tree of row
groups (:data:`BIAS_ROW_GROUPS`), so no result depends on the thread count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from dropkit.kernels.cpu._activations import (
    GELU,
    GELU_SCALAR,
    GELU_TANH,
    GELU_TANH_SCALAR,
    RELU,
    SILU,
    SILU_SCALAR,
    gelu,
    gelu_backward,
    gelu_scalar,
    gelu_scalar_backward,
    gelu_tanh,
    gelu_tanh_backward,
    gelu_tanh_scalar,
    gelu_tanh_scalar_backward,
    relu,
    relu_backward,
    silu,
    silu_backward,
    silu_scalar,
    silu_scalar_backward,
    tail_code,
)
from dropkit.kernels.cpu._philox import (
    BERNOULLI_PER_BLOCK,
    CHUNK_BLOCKS,
    WORDS_PER_BLOCK,
    philox_blocks,
)
from dropkit.kernels.cpu._storage import load, to_storage

__all__ = [
    "BIAS_ROW_GROUPS",
    "backward",
    "backward_serial",
    "backward_span",
    "forward",
    "forward_span",
    "sum_groups",
]

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


@njit(inline="always")
def _forward_segment(
    xs: Any, bs: Any, rs: Any, outs: Any, draws: Any, threshold: Any, scale: Any, activation: int
) -> None:
    """``out = r + (keep ? act(x + b) * scale : 0)`` over one contiguous segment; one loop per
    activation so that each is a straight-line, vectorisable body."""
    zero = scale - scale
    if activation == GELU:
        for k in range(xs.size):
            kept = gelu(load(xs[k]) + bs[k]) * scale
            dropped = kept if np.uint32(draws[k]) >= threshold else zero
            outs[k] = to_storage(load(rs[k]) + dropped, outs)
    elif activation == GELU_TANH:
        for k in range(xs.size):
            kept = gelu_tanh(load(xs[k]) + bs[k]) * scale
            dropped = kept if np.uint32(draws[k]) >= threshold else zero
            outs[k] = to_storage(load(rs[k]) + dropped, outs)
    elif activation == RELU:
        for k in range(xs.size):
            kept = relu(load(xs[k]) + bs[k]) * scale
            dropped = kept if np.uint32(draws[k]) >= threshold else zero
            outs[k] = to_storage(load(rs[k]) + dropped, outs)
    elif activation == SILU:
        for k in range(xs.size):
            kept = silu(load(xs[k]) + bs[k]) * scale
            dropped = kept if np.uint32(draws[k]) >= threshold else zero
            outs[k] = to_storage(load(rs[k]) + dropped, outs)
    elif activation == GELU_SCALAR:
        for k in range(xs.size):
            kept = gelu_scalar(load(xs[k]) + bs[k]) * scale
            dropped = kept if np.uint32(draws[k]) >= threshold else zero
            outs[k] = to_storage(load(rs[k]) + dropped, outs)
    elif activation == GELU_TANH_SCALAR:
        for k in range(xs.size):
            kept = gelu_tanh_scalar(load(xs[k]) + bs[k]) * scale
            dropped = kept if np.uint32(draws[k]) >= threshold else zero
            outs[k] = to_storage(load(rs[k]) + dropped, outs)
    elif activation == SILU_SCALAR:
        for k in range(xs.size):
            kept = silu_scalar(load(xs[k]) + bs[k]) * scale
            dropped = kept if np.uint32(draws[k]) >= threshold else zero
            outs[k] = to_storage(load(rs[k]) + dropped, outs)
    else:
        for k in range(xs.size):
            kept = (load(xs[k]) + bs[k]) * scale
            dropped = kept if np.uint32(draws[k]) >= threshold else zero
            outs[k] = to_storage(load(rs[k]) + dropped, outs)


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
    elements from ``vector_end`` on take PyTorch's scalar-tail code (:func:`tail_code`).

    ``bias`` and ``residual`` are read periodically (element ``i`` uses ``bias[i % bias.size]``);
    a missing operand is a tile of ``-0.0``, the exact identity of IEEE addition."""
    words = np.empty(WORDS_PER_BLOCK * CHUNK_BLOCKS, np.uint32)
    halves = words.view(np.uint16)
    last_block = (offset + stop - 1) // BERNOULLI_PER_BLOCK
    i = start
    while i < stop:
        block = (offset + i) // BERNOULLI_PER_BLOCK
        num_blocks = min(CHUNK_BLOCKS, last_block - block + 1)
        philox_blocks(words, np.uint64(block), num_blocks, key[0], key[1], key[2], key[3])
        skip = offset + i - block * BERNOULLI_PER_BLOCK
        count = min(num_blocks * BERNOULLI_PER_BLOCK - skip, stop - i)
        done = 0
        while done < count:
            at = i + done
            bias_at = at % bias.size
            residual_at = at % residual.size
            length = min(count - done, bias.size - bias_at, residual.size - residual_at)
            code = activation if at < vector_end else tail_code(activation)
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
            kept = load(gs[k]) * scale
            gh = gelu_backward(
                kept if np.uint32(draws[k]) >= threshold else zero, load(xs[k]) + bs[k]
            )
            grad_xs[k] = to_storage(gh, grad_xs)
            if accumulate:
                sums[k] += gh
    elif activation == GELU_TANH:
        for k in range(gs.size):
            kept = load(gs[k]) * scale
            gh = gelu_tanh_backward(
                kept if np.uint32(draws[k]) >= threshold else zero, load(xs[k]) + bs[k]
            )
            grad_xs[k] = to_storage(gh, grad_xs)
            if accumulate:
                sums[k] += gh
    elif activation == RELU:
        for k in range(gs.size):
            kept = load(gs[k]) * scale
            gh = relu_backward(
                kept if np.uint32(draws[k]) >= threshold else zero, load(xs[k]) + bs[k]
            )
            grad_xs[k] = to_storage(gh, grad_xs)
            if accumulate:
                sums[k] += gh
    elif activation == SILU:
        for k in range(gs.size):
            kept = load(gs[k]) * scale
            gh = silu_backward(
                kept if np.uint32(draws[k]) >= threshold else zero, load(xs[k]) + bs[k]
            )
            grad_xs[k] = to_storage(gh, grad_xs)
            if accumulate:
                sums[k] += gh
    elif activation == GELU_SCALAR:
        for k in range(gs.size):
            kept = load(gs[k]) * scale
            gh = gelu_scalar_backward(
                kept if np.uint32(draws[k]) >= threshold else zero, load(xs[k]) + bs[k]
            )
            grad_xs[k] = to_storage(gh, grad_xs)
            if accumulate:
                sums[k] += gh
    elif activation == GELU_TANH_SCALAR:
        for k in range(gs.size):
            kept = load(gs[k]) * scale
            gh = gelu_tanh_scalar_backward(
                kept if np.uint32(draws[k]) >= threshold else zero, load(xs[k]) + bs[k]
            )
            grad_xs[k] = to_storage(gh, grad_xs)
            if accumulate:
                sums[k] += gh
    elif activation == SILU_SCALAR:
        for k in range(gs.size):
            kept = load(gs[k]) * scale
            gh = silu_scalar_backward(
                kept if np.uint32(draws[k]) >= threshold else zero, load(xs[k]) + bs[k]
            )
            grad_xs[k] = to_storage(gh, grad_xs)
            if accumulate:
                sums[k] += gh
    else:
        for k in range(gs.size):
            kept = load(gs[k]) * scale
            gh = kept if np.uint32(draws[k]) >= threshold else zero
            grad_xs[k] = to_storage(gh, grad_xs)
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
        philox_blocks(words, np.uint64(block), num_blocks, key[0], key[1], key[2], key[3])
        skip = offset + i - block * BERNOULLI_PER_BLOCK
        count = min(num_blocks * BERNOULLI_PER_BLOCK - skip, stop - i)
        done = 0
        while done < count:
            at = i + done
            bias_at = at % bias.size
            length = min(count - done, bias.size - bias_at)
            code = activation if at < vector_end else tail_code(activation)
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
