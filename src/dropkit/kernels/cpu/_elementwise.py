"""The elementwise pass of the CPU fast path: a contiguous tensor with a full Bernoulli mask
in one fused, vectorised pass, no mask tensor (numba kernels only; launched from
``backend.py`` and :mod:`._launch`).

Each chunk of blocks (:data:`CHUNK_INPUT_BYTES` of input) is generated into a small scratch
buffer that stays in L1 (:func:`._philox.philox_blocks`), and a second, branch-free loop reads
the 16-bit halves in element order and selects each output. Every element depends only on its
mask index, so any split of the work over threads gives the same bits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from dropkit.kernels.cpu._philox import BERNOULLI_PER_BLOCK, WORDS_PER_BLOCK, philox_blocks
from dropkit.kernels.cpu._storage import JIT, load, to_storage

__all__ = [
    "bernoulli",
    "bernoulli_groups",
    "bernoulli_groups_parallel",
    "bernoulli_piece",
    "bernoulli_span",
]

#: Bytes of input per chunk of the fused pass (so blocks per chunk depend on the dtype: 128 for
#: float32, 256 for 16-bit types). Measured on one core, 16M elements: float32 4.2-4.4 ms with
#: 128 blocks against 5.0-5.1 ms with 512 (scratch, input and output then overflow L1 and the
#: generator no longer overlaps the memory stream); bfloat16 3.6-3.7 ms with 256 or 512, 3.8-3.9
#: with 128, much slower below 64 (the vector loops' set-up dominates).
CHUNK_INPUT_BYTES = 4096


@njit(**JIT)
def bernoulli_span(
    x: Any,
    out: Any,
    first_index: int,
    key: Any,
    threshold: Any,
    a: Any,
    b: Any,
    dropped: Any,
    affine: bool,
    inplace: bool,
) -> None:
    """``out[k] = keep ? x[k] * a (+ b if affine) : dropped`` for mask index ``first_index + k``.

    ``key`` is ``(k0, k1, step_lo, step_hi)`` as uint64; ``threshold`` a uint16 in [0, 65535].
    ``inplace`` (``out`` is ``x``) stages each chunk of ``x`` through an L1 buffer: with the
    two arrays overlapping, LLVM's runtime alias check would otherwise pick the scalar loop.
    """
    n = x.size
    chunk_blocks = max(1, CHUNK_INPUT_BYTES // (BERNOULLI_PER_BLOCK * x.itemsize))
    words = np.empty(WORDS_PER_BLOCK * chunk_blocks, np.uint32)
    halves = words.view(np.uint16)
    staged = np.empty(BERNOULLI_PER_BLOCK * chunk_blocks if inplace else 0, x.dtype)
    block = first_index // BERNOULLI_PER_BLOCK
    last_block = (first_index + n - 1) // BERNOULLI_PER_BLOCK
    done = 0
    while done < n:
        num_blocks = min(chunk_blocks, last_block - block + 1)
        philox_blocks(words, np.uint64(block), num_blocks, key[0], key[1], key[2], key[3])
        start = first_index + done - block * BERNOULLI_PER_BLOCK
        count = min(num_blocks * BERNOULLI_PER_BLOCK - start, n - done)
        draws = halves[start : start + count]
        xs = x[done : done + count]
        if inplace:
            for k in range(count):
                staged[k] = xs[k]
            xs = staged[:count]
        outs = out[done : done + count]
        if affine:
            for k in range(count):
                kept = load(xs[k]) * a + b
                outs[k] = to_storage(kept if draws[k] >= threshold else dropped, outs)
        else:
            for k in range(count):
                kept = load(xs[k]) * a
                outs[k] = to_storage(kept if draws[k] >= threshold else dropped, outs)
        done += count
        block += num_blocks


@njit(parallel=True, **JIT)
def bernoulli(
    x: Any,
    out: Any,
    offset: int,
    key: Any,
    threshold: Any,
    a: Any,
    b: Any,
    dropped: Any,
    affine: bool,
    inplace: bool,
    parts: int,
) -> None:
    """:func:`bernoulli_span` over flat ``x``, split into ``parts`` contiguous pieces run in
    parallel. The split does not change any bit."""
    n = x.size
    for part in prange(parts):
        lo = part * n // parts
        hi = (part + 1) * n // parts
        if hi > lo:
            bernoulli_span(
                x[lo:hi], out[lo:hi], offset + lo, key, threshold, a, b, dropped, affine, inplace
            )


@njit(**JIT)
def bernoulli_groups(
    x: Any,
    out: Any,
    offset: int,
    keys: Any,
    threshold: Any,
    a: Any,
    b: Any,
    dropped: Any,
    affine: bool,
    inplace: bool,
    parts: int,
) -> None:
    """:func:`bernoulli_span` over ``len(keys)`` equal contiguous groups of flat ``x``: group
    ``g`` uses ``keys[g]`` and mask indices ``offset ..`` (each group is its own draw), each
    split into ``parts`` pieces. Serial; see :func:`bernoulli_groups_parallel`."""
    groups = keys.shape[0]
    n = x.size // groups
    for piece in range(groups * parts):
        bernoulli_piece(
            x, out, offset, keys, threshold, a, b, dropped, affine, inplace, parts, n, piece
        )


@njit(parallel=True, **JIT)
def bernoulli_groups_parallel(
    x: Any,
    out: Any,
    offset: int,
    keys: Any,
    threshold: Any,
    a: Any,
    b: Any,
    dropped: Any,
    affine: bool,
    inplace: bool,
    parts: int,
) -> None:
    """:func:`bernoulli_groups` with its ``groups * parts`` pieces run in parallel."""
    groups = keys.shape[0]
    n = x.size // groups
    for piece in prange(groups * parts):
        bernoulli_piece(
            x, out, offset, keys, threshold, a, b, dropped, affine, inplace, parts, n, piece
        )


@njit(inline="always")
def bernoulli_piece(
    x: Any,
    out: Any,
    offset: int,
    keys: Any,
    threshold: Any,
    a: Any,
    b: Any,
    dropped: Any,
    affine: bool,
    inplace: bool,
    parts: int,
    n: int,
    piece: int,
) -> None:
    group = piece // parts
    part = piece % parts
    lo = part * n // parts
    hi = (part + 1) * n // parts
    if hi > lo:
        start = group * n
        bernoulli_span(
            x[start + lo : start + hi], out[start + lo : start + hi], offset + lo, keys[group],
            threshold, a, b, dropped, affine, inplace,
        )  # fmt: skip
