"""Philox4x32-10 and the draws made from it: keep masks, uniforms and normals (numba
functions only; launched from ``backend.py``, inlined into the other kernel files).

Philox runs on ``uint64`` lanes that hold 32-bit words: ``uint32 * uint32`` widened to 64 bits
is one ``vpmuludq`` per lane, so LLVM vectorises the loop over blocks (:func:`philox_blocks`).
A kernel generates each chunk of blocks into a small scratch buffer that stays in L1 and then
reads it in element order: on a little-endian machine the ``uint32`` words of a block, viewed
as ``uint16``, are exactly the eight Bernoulli draws of the spec, in order. Every element
depends only on its mask index, so any split of the work over threads gives the same bits.

Normals (one float32 word per element, Box-Muller on word pairs (0, 1) and (2, 3) of each
block, as :func:`dropkit.rng.words_to_normal`) use branch-free float32 ``log``/``sin``/``cos``
so that the Box-Muller loop vectorises too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from dropkit.kernels.cpu._storage import JIT, bits_from_float32, float32_from_bits

__all__ = [
    "BERNOULLI_PER_BLOCK",
    "CHUNK_BLOCKS",
    "WORDS_PER_BLOCK",
    "keep",
    "keep_span",
    "normals",
    "normals_parallel",
    "normals_span",
    "philox_blocks",
    "uniforms",
    "uniforms_span",
]

MASK32 = np.uint64(0xFFFFFFFF)
SHIFT32 = np.uint64(32)
PHILOX_M0 = np.uint64(0xD2511F53)
PHILOX_M1 = np.uint64(0xCD9E8D57)
PHILOX_W0 = np.uint64(0x9E3779B9)
PHILOX_W1 = np.uint64(0xBB67AE85)
#: Philox blocks per chunk: 512 blocks = 4096 Bernoulli draws, an 8 KiB scratch buffer.
CHUNK_BLOCKS = 512
BERNOULLI_PER_BLOCK = 8
# Triton's uint_to_uniform_float scale, as a float32 constant (as dropkit.rng.UNIFORM_SCALE).
UNIFORM_SCALE = np.float32(4.6566127342e-10)
WORDS_PER_BLOCK = 4
# Box-Muller constants of dropkit.rng, as float32 (the reference computes in float32).
TWO_PI = np.float32(6.283185307179586)
MINUS_TWO = np.float32(-2.0)
NORMAL_U_MIN = np.float32(1.0e-7)


@njit(inline="always")
def philox_blocks(
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


@njit(**JIT)
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
        philox_blocks(words, np.uint64(block), num_blocks, key[0], key[1], key[2], key[3])
        start = first_index + done - block * BERNOULLI_PER_BLOCK
        count = min(num_blocks * BERNOULLI_PER_BLOCK - start, n - done)
        draws = halves[start : start + count]
        outs = out[done : done + count]
        for k in range(count):
            outs[k] = draws[k] >= threshold
        done += count
        block += num_blocks


@njit(parallel=True, **JIT)
def keep(out: Any, offset: int, key: Any, threshold: Any, parts: int) -> None:
    """:func:`keep_span` over flat ``out``, in ``parts`` parallel pieces."""
    n = out.size
    for part in prange(parts):
        lo = part * n // parts
        hi = (part + 1) * n // parts
        if hi > lo:
            keep_span(out[lo:hi], offset + lo, key, threshold)


@njit(**JIT)
def uniforms_span(out: Any, first_block: int, key: Any) -> None:
    """Float32 uniforms of the words of blocks ``first_block ..`` into ``out`` (4 per block),
    converted as Triton's ``uint_to_uniform_float`` (and :func:`dropkit.rng.words_to_uniform`).
    """
    num_blocks = out.size // WORDS_PER_BLOCK
    words = np.empty(WORDS_PER_BLOCK * CHUNK_BLOCKS, np.uint32)
    for chunk in range(0, num_blocks, CHUNK_BLOCKS):
        count = min(CHUNK_BLOCKS, num_blocks - chunk)
        philox_blocks(words, np.uint64(first_block + chunk), count, key[0], key[1], key[2], key[3])
        outs = out[WORDS_PER_BLOCK * chunk : WORDS_PER_BLOCK * (chunk + count)]
        for k in range(WORDS_PER_BLOCK * count):
            signed = np.int64(np.int32(words[k]))
            folded = -signed - 1 if signed < 0 else signed
            outs[k] = np.float32(folded) * UNIFORM_SCALE


@njit(parallel=True, **JIT)
def uniforms(out: Any, first_block: int, key: Any, parts: int) -> None:
    """:func:`uniforms_span` in ``parts`` parallel pieces (split on block boundaries)."""
    num_blocks = out.size // WORDS_PER_BLOCK
    for part in prange(parts):
        lo = part * num_blocks // parts
        hi = (part + 1) * num_blocks // parts
        if hi > lo:
            uniforms_span(out[WORDS_PER_BLOCK * lo : WORDS_PER_BLOCK * hi], first_block + lo, key)


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
    bits: Any = bits_from_float32(x)  # type: ignore[call-arg]
    exponent = np.int32((bits >> np.uint32(23)) & np.uint32(0xFF)) - np.int32(126)
    mantissa = float32_from_bits((bits & np.uint32(0x807FFFFF)) | np.uint32(0x3F000000))
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


@njit(**JIT)
def normals_span(out: Any, first_index: int, key: Any) -> None:
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
        philox_blocks(words, np.uint64(block), num_blocks, key[0], key[1], key[2], key[3])
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


@njit(**JIT)
def normals(out: Any, offset: int, key: Any) -> None:
    """Float32 standard normals of mask indices ``offset ..`` into ``out`` (serial)."""
    normals_span(out, offset, key)


@njit(parallel=True, **JIT)
def normals_parallel(out: Any, offset: int, key: Any, parts: int) -> None:
    """:func:`normals` in ``parts`` parallel pieces."""
    n = out.size
    for part in prange(parts):
        lo = part * n // parts
        hi = (part + 1) * n // parts
        if hi > lo:
            normals_span(out[lo:hi], offset + lo, key)
