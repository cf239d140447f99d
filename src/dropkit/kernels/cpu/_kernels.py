"""numba kernels of the CPU fast path (jit functions only; wrappers live in ``backend.py``).

Philox4x32-10 runs on ``uint64`` lanes that hold 32-bit words: ``uint32 * uint32`` widened to
64 bits is one ``vpmuludq`` per lane, so LLVM vectorises the loop over blocks. Each chunk of
blocks (:data:`CHUNK_INPUT_BYTES` of input) is generated into a small scratch buffer that stays
in L1, and a second, branch-free loop reads the 16-bit halves in element order (on a
little-endian machine the ``uint32`` words of a block, viewed as ``uint16``, are exactly the
eight Bernoulli draws of the spec, in order) and selects each output. Every element depends
only on its mask index, so any split of the work over threads gives the same bits.

Storage: numba has neither ``bfloat16`` nor ``float16``, so those tensors travel as ``uint16``
(bfloat16) and ``int16`` (float16) arrays; :func:`_load` and :func:`_to_storage` convert with the
same rounding as PyTorch (bfloat16: round to nearest even on the bit pattern, as ``c10`` does;
float16: LLVM's ``fptrunc``, IEEE round to nearest even).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core.extending import intrinsic, overload

MASK32 = np.uint64(0xFFFFFFFF)
SHIFT32 = np.uint64(32)
PHILOX_M0 = np.uint64(0xD2511F53)
PHILOX_M1 = np.uint64(0xCD9E8D57)
PHILOX_W0 = np.uint64(0x9E3779B9)
PHILOX_W1 = np.uint64(0xBB67AE85)
#: Philox blocks per chunk: 512 blocks = 4096 Bernoulli draws, an 8 KiB scratch buffer.
CHUNK_BLOCKS = 512
#: Bytes of input per chunk of the fused pass (so blocks per chunk depend on the dtype: 128 for
#: float32, 256 for 16-bit types). Measured on one core, 16M elements: float32 4.2-4.4 ms with
#: 128 blocks against 5.0-5.1 ms with 512 (scratch, input and output then overflow L1 and the
#: generator no longer overlaps the memory stream); bfloat16 3.6-3.7 ms with 256 or 512, 3.8-3.9
#: with 128, much slower below 64 (the vector loops' set-up dominates).
CHUNK_INPUT_BYTES = 4096
BERNOULLI_PER_BLOCK = 8
# Triton's uint_to_uniform_float scale, as a float32 constant (as dropkit.rng.UNIFORM_SCALE).
UNIFORM_SCALE = np.float32(4.6566127342e-10)
WORDS_PER_BLOCK = 4

_JIT: dict[str, Any] = {"cache": True, "nogil": True, "boundscheck": False, "fastmath": False}


@intrinsic
def _float32_from_bits(typingctx: Any, bits: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


@intrinsic
def _bits_from_float32(typingctx: Any, value: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@intrinsic
def _float32_from_half_bits(typingctx: Any, bits: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(types.int16), codegen


@intrinsic
def _half_bits_from_float32(typingctx: Any, value: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return types.int16(types.float32), codegen


def _load(stored: Any) -> Any:  # pragma: no cover - replaced by the overload
    raise NotImplementedError


def _to_storage(value: Any, like: Any) -> Any:  # pragma: no cover - replaced by the overload
    raise NotImplementedError


@overload(_load, inline="always")
def _load_overload(stored: Any) -> Any:
    """A stored element in compute precision (float32, or float64 for float64 storage)."""
    if stored == types.uint16:  # bfloat16 bits: the high half of a float32

        def load_bfloat16(stored: Any) -> Any:
            return _float32_from_bits(np.uint32(stored) << np.uint32(16))  # type: ignore[call-arg]

        return load_bfloat16
    if stored == types.int16:  # float16 bits

        def load_float16(stored: Any) -> Any:
            return _float32_from_half_bits(stored)  # type: ignore[call-arg]

        return load_float16

    def load_native(stored: Any) -> Any:
        return stored

    return load_native


@overload(_to_storage, inline="always")
def _to_storage_overload(value: Any, like: Any) -> Any:
    """``value`` rounded to the storage type of array ``like``, as PyTorch's ``.to`` rounds."""
    if like.dtype == types.uint16:

        def store_bfloat16(value: Any, like: Any) -> Any:
            # Branch-free (the vectoriser wants straight-line code): a NaN gets its quiet bit
            # set and its low half cleared, so rounding keeps it a NaN.
            bits = np.uint64(_bits_from_float32(value))  # type: ignore[call-arg]
            nan = np.uint64((bits & np.uint64(0x7FFFFFFF)) > np.uint64(0x7F800000))
            bits = (bits | (nan * np.uint64(0x400000))) & ~(nan * np.uint64(0xFFFF))
            rounding = ((bits >> np.uint64(16)) & np.uint64(1)) + np.uint64(0x7FFF)
            return np.uint16((bits + rounding) >> np.uint64(16))

        return store_bfloat16
    if like.dtype == types.int16:

        def store_float16(value: Any, like: Any) -> Any:
            return _half_bits_from_float32(value)  # type: ignore[call-arg]

        return store_float16

    def store_native(value: Any, like: Any) -> Any:
        return value

    return store_native


@njit(inline="always")
def _philox_blocks(
    words: Any, first_block: Any, num_blocks: Any, k0: Any, k1: Any, s0: Any, s1: Any
) -> None:
    """Philox4x32-10 of blocks ``first_block ..`` into ``words[4 b + j]`` (all uint64 math)."""
    for b in range(num_blocks):
        block = first_block + np.uint64(b)
        c0 = block & MASK32
        c1 = block >> SHIFT32
        c2 = s0
        c3 = s1
        key0 = k0
        key1 = k1
        for _ in range(10):
            product0 = PHILOX_M0 * c0
            product1 = PHILOX_M1 * c2
            c0, c1, c2, c3 = (
                (product1 >> SHIFT32) ^ c1 ^ key0,
                product1 & MASK32,
                (product0 >> SHIFT32) ^ c3 ^ key1,
                product0 & MASK32,
            )
            key0 = (key0 + PHILOX_W0) & MASK32
            key1 = (key1 + PHILOX_W1) & MASK32
        words[4 * b] = np.uint32(c0)
        words[4 * b + 1] = np.uint32(c1)
        words[4 * b + 2] = np.uint32(c2)
        words[4 * b + 3] = np.uint32(c3)


@njit(**_JIT)
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
        _philox_blocks(words, np.uint64(block), num_blocks, key[0], key[1], key[2], key[3])
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
                kept = _load(xs[k]) * a + b
                outs[k] = _to_storage(kept if draws[k] >= threshold else dropped, outs)
        else:
            for k in range(count):
                kept = _load(xs[k]) * a
                outs[k] = _to_storage(kept if draws[k] >= threshold else dropped, outs)
        done += count
        block += num_blocks


@njit(parallel=True, **_JIT)
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


@njit(**_JIT)
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
        _bernoulli_piece(
            x, out, offset, keys, threshold, a, b, dropped, affine, inplace, parts, n, piece
        )


@njit(parallel=True, **_JIT)
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
        _bernoulli_piece(
            x, out, offset, keys, threshold, a, b, dropped, affine, inplace, parts, n, piece
        )


@njit(inline="always")
def _bernoulli_piece(
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


@njit(**_JIT)
def keep_span(out: Any, first_index: int, key: Any, threshold: Any) -> None:
    """``out[k] = half(first_index + k) >= threshold`` (a boolean keep mask)."""
    n = out.size
    words = np.empty(WORDS_PER_BLOCK * CHUNK_BLOCKS, np.uint32)
    halves = words.view(np.uint16)
    block = first_index // BERNOULLI_PER_BLOCK
    last_block = (first_index + n - 1) // BERNOULLI_PER_BLOCK
    done = 0
    while done < n:
        num_blocks = min(CHUNK_BLOCKS, last_block - block + 1)
        _philox_blocks(words, np.uint64(block), num_blocks, key[0], key[1], key[2], key[3])
        start = first_index + done - block * BERNOULLI_PER_BLOCK
        count = min(num_blocks * BERNOULLI_PER_BLOCK - start, n - done)
        draws = halves[start : start + count]
        outs = out[done : done + count]
        for k in range(count):
            outs[k] = draws[k] >= threshold
        done += count
        block += num_blocks


@njit(parallel=True, **_JIT)
def keep(out: Any, offset: int, key: Any, threshold: Any, parts: int) -> None:
    """:func:`keep_span` over flat ``out``, in ``parts`` parallel pieces."""
    n = out.size
    for part in prange(parts):
        lo = part * n // parts
        hi = (part + 1) * n // parts
        if hi > lo:
            keep_span(out[lo:hi], offset + lo, key, threshold)


@njit(**_JIT)
def uniforms_span(out: Any, first_block: int, key: Any) -> None:
    """Float32 uniforms of the words of blocks ``first_block ..`` into ``out`` (4 per block),
    converted as Triton's ``uint_to_uniform_float`` (and :func:`dropkit.rng.words_to_uniform`).
    """
    num_blocks = out.size // WORDS_PER_BLOCK
    words = np.empty(WORDS_PER_BLOCK * CHUNK_BLOCKS, np.uint32)
    for chunk in range(0, num_blocks, CHUNK_BLOCKS):
        count = min(CHUNK_BLOCKS, num_blocks - chunk)
        _philox_blocks(words, np.uint64(first_block + chunk), count, key[0], key[1], key[2], key[3])
        outs = out[WORDS_PER_BLOCK * chunk : WORDS_PER_BLOCK * (chunk + count)]
        for k in range(WORDS_PER_BLOCK * count):
            signed = np.int64(np.int32(words[k]))
            folded = -signed - 1 if signed < 0 else signed
            outs[k] = np.float32(folded) * UNIFORM_SCALE


@njit(parallel=True, **_JIT)
def uniforms(out: Any, first_block: int, key: Any, parts: int) -> None:
    """:func:`uniforms_span` in ``parts`` parallel pieces (split on block boundaries)."""
    num_blocks = out.size // WORDS_PER_BLOCK
    for part in prange(parts):
        lo = part * num_blocks // parts
        hi = (part + 1) * num_blocks // parts
        if hi > lo:
            uniforms_span(out[WORDS_PER_BLOCK * lo : WORDS_PER_BLOCK * hi], first_block + lo, key)


def set_threads(count: int) -> int:
    """Use ``count`` numba threads (clamped to the pool size); returns the count used."""
    count = max(1, min(count, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    numba.set_num_threads(count)
    return count
