"""Counter-based random numbers: Philox4x32-10 in plain PyTorch integer ops.

Every random number in dropkit is a pure function of ``(seed, step, element index)``:

* key ``(k0, k1)`` = low and high 32 bits of the 64-bit ``seed``;
* counter ``(c0, c1, c2, c3)`` = ``(block_lo, block_hi, step_lo, step_hi)``;
* one Philox call gives four 32-bit words.

This is exactly Triton's ``tl.philox(seed, c0, c1, c2, c3)``, so a Triton kernel and this
reference draw the same bits on any device.

Bernoulli masks use 16-bit halves: element ``i`` belongs to block ``i // 8``; ``j = i % 8`` picks
word ``j // 2`` and half ``j % 2`` (0 = low). Element ``i`` is kept iff ``half >= t`` with the
integer threshold ``t = round(float32(p) * 65536)``; the effective rate is ``p_eff = t / 65536``.

Uniforms and normals use one 32-bit word per element (word ``i % 4`` of block ``i // 4``),
converted exactly as Triton's ``tl.rand4x`` / ``tl.randn4x`` do.

All 32-bit words are held in ``int64`` tensors (values in ``[0, 2**32)``), because PyTorch has no
general unsigned 32-bit arithmetic; a product of two such words is taken modulo ``2**64`` by
int64 multiplication, which keeps the high and low 32 bits exact.

References:
    Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from dropkit.functional._checks import (
    check_nonnegative_int,
    check_offset,
    check_p,
    check_rate_tensor,
    check_seed,
    check_shape,
    check_step,
)

__all__ = [
    "BERNOULLI_PER_BLOCK",
    "WORDS_PER_BLOCK",
    "SeedLike",
    "StepLike",
    "draw_seed",
    "keep_mask",
    "normal",
    "p_eff",
    "philox4x32",
    "random_words",
    "seed_tensor",
    "step_tensor",
    "threshold",
    "uniform",
    "uniforms_to_normal",
    "words_to_normal",
    "words_to_uniform",
]

MASK32 = 0xFFFFFFFF
PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
PHILOX_ROUNDS = 10
#: Bernoulli draws per Philox call (four words, two 16-bit halves each).
BERNOULLI_PER_BLOCK = 8
#: Uniform or normal draws per Philox call (one 32-bit word each).
WORDS_PER_BLOCK = 4
THRESHOLD_ONE = 65536
# Triton's uint_to_uniform_float scale, as a float32 constant.
UNIFORM_SCALE = 4.6566127342e-10
TWO_PI = 6.283185307179586
NORMAL_U_MIN = 1.0e-7

SeedLike = int | Tensor
StepLike = int | Tensor

_INT64_MIN = -(2**63)
_UINT64_END = 2**64


def _mul_hi_lo(multiplier: int, word: Tensor) -> tuple[Tensor, Tensor]:
    """High and low 32 bits of ``multiplier * word`` for 32-bit operands held in int64."""
    product = word * multiplier  # wraps modulo 2**64; the 64 bits are exact
    return (product >> 32) & MASK32, product & MASK32


def philox4x32(
    c0: Tensor, c1: Tensor, c2: Tensor, c3: Tensor, k0: Tensor | int, k1: Tensor | int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Philox4x32-10 on int64 tensors holding 32-bit words; returns the four output words.

    Counters broadcast against each other and against the key (a Python int or an int64
    tensor). Identical to Triton's ``tl.philox`` and Random123's ``philox4x32``.

    Example:
        >>> zero = torch.zeros(1, dtype=torch.int64)
        >>> [hex(int(w)) for w in philox4x32(zero, zero, zero, zero, 0, 0)]
        ['0x6627e8d5', '0xe169c58d', '0xbc57ac4c', '0x9b00dbd8']
    """
    for round_index in range(PHILOX_ROUNDS):
        hi0, lo0 = _mul_hi_lo(PHILOX_M0, c0)
        hi1, lo1 = _mul_hi_lo(PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        if round_index + 1 < PHILOX_ROUNDS:
            k0 = (k0 + PHILOX_W0) & MASK32
            k1 = (k1 + PHILOX_W1) & MASK32
    return c0, c1, c2, c3


def _as_0d(t: Tensor, dtype: torch.dtype, device: torch.device | str | None) -> Tensor:
    """``t`` as a 0-d tensor of ``dtype`` on ``device``; ``t`` itself when it already is one
    (the common case of a module's buffer: no per-call view or conversion)."""
    if t.dim() == 0 and t.dtype == dtype and (device is None or t.device == torch.device(device)):
        return t
    return t.reshape(()).to(dtype=dtype, device=device)


def seed_tensor(seed: SeedLike, device: torch.device | str | None = None) -> Tensor:
    """A 0-d int64 tensor holding a 64-bit seed (two's complement for seeds >= 2**63).

    Accepts a Python int in ``[0, 2**64)`` or an integer tensor with one element.
    """
    check_seed(seed)
    if isinstance(seed, Tensor):
        return _as_0d(seed, torch.int64, device)
    signed = seed - _UINT64_END if seed >= 2**63 else seed
    return torch.tensor(signed, dtype=torch.int64, device=device)


def step_tensor(step: StepLike, device: torch.device | str | None = None) -> Tensor:
    """A 0-d int64 tensor holding a step counter; Python ints must lie in ``[0, 2**63)``."""
    check_step(step)
    if isinstance(step, Tensor):
        return _as_0d(step, torch.int64, device)
    return torch.tensor(step, dtype=torch.int64, device=device)


def draw_seed(generator: torch.Generator | None = None) -> int:
    """Draw a 64-bit seed from PyTorch's default (or the given CPU) generator.

    ``torch.manual_seed(s)`` before building a model therefore makes its dropout reproducible.
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    halves = torch.randint(0, 2**32, (2,), dtype=torch.int64, generator=generator)
    return int(halves[0]) | (int(halves[1]) << 32)


def threshold(p: float) -> int:
    """Integer keep threshold ``t = round(float32(p) * 65536)`` for a drop rate ``p``."""
    p32 = float(torch.tensor(check_p(p), dtype=torch.float32))
    return round(p32 * THRESHOLD_ONE)


def p_eff(p: float) -> float:
    """The effective drop rate ``t / 65536`` that a Bernoulli mask with rate ``p`` realises.

    Within 7.7e-6 of ``p``; inverted dropout scales by ``1 / (1 - p_eff)`` so the expectation is
    exact.

    Example:
        >>> p_eff(0.1)
        0.100006103515625
    """
    return threshold(p) / THRESHOLD_ONE


def threshold_tensor(rate: Tensor) -> Tensor:
    """``round(float32(rate) * 65536)`` as an int64 tensor (no host sync)."""
    return torch.round(rate.to(torch.float32) * THRESHOLD_ONE).to(torch.int64)


def random_words(
    seed: SeedLike,
    step: StepLike,
    first_block: int,
    num_blocks: int,
    *,
    device: torch.device | str | None = None,
) -> Tensor:
    """Philox output words for blocks ``first_block .. first_block + num_blocks - 1``.

    Returns an int64 tensor of shape ``(num_blocks, 4)`` with values in ``[0, 2**32)``.
    """
    check_nonnegative_int(first_block, "first_block")
    check_nonnegative_int(num_blocks, "num_blocks")
    if first_block + num_blocks > 2**63:
        raise ValueError(
            "first_block must be an int >= 0 with first_block + num_blocks <= 2**63, got "
            f"{first_block} and {num_blocks}"
        )
    seed_t = seed_tensor(seed, device)
    step_t = step_tensor(step, seed_t.device)
    blocks = torch.arange(
        first_block, first_block + num_blocks, dtype=torch.int64, device=seed_t.device
    )
    k0, k1 = seed_t & MASK32, (seed_t >> 32) & MASK32
    s0, s1 = step_t & MASK32, (step_t >> 32) & MASK32
    words = philox4x32(blocks & MASK32, (blocks >> 32) & MASK32, s0, s1, k0, k1)
    return torch.stack(torch.broadcast_tensors(*words), dim=-1)


def _element_words(
    seed: SeedLike,
    step: StepLike,
    numel: int,
    offset: int,
    per_block: int,
    device: torch.device | str | None,
) -> Tensor:
    """The per-element draws (16-bit halves or 32-bit words) for elements
    ``offset .. offset + numel - 1``, as a flat int64 tensor."""
    check_offset(offset)
    if numel == 0:
        return torch.empty(0, dtype=torch.int64, device=device)
    first_block = offset // per_block
    last_block = (offset + numel - 1) // per_block
    words = random_words(seed, step, first_block, last_block - first_block + 1, device=device)
    if per_block == BERNOULLI_PER_BLOCK:
        words = torch.stack((words & 0xFFFF, words >> 16), dim=-1)
    start = offset - first_block * per_block
    return words.reshape(-1)[start : start + numel]


def _shape_numel(shape: Sequence[int]) -> int:
    check_shape(shape)
    return math.prod([int(s) for s in shape])  # a list: torch.compile cannot trace a genexpr here


def keep_mask(
    shape: Sequence[int],
    p: float | Tensor,
    *,
    seed: SeedLike,
    step: StepLike = 0,
    offset: int = 0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Boolean keep-mask of ``shape`` for drop rate ``p``: True where the unit is kept.

    Element ``i`` (row-major index in ``shape``, plus ``offset``) is kept iff its 16-bit half
    is ``>= round(float32(p) * 65536)``.

    Example:
        >>> keep_mask((2, 3), 0.5, seed=0).shape
        torch.Size([2, 3])
    """
    halves = _element_words(seed, step, _shape_numel(shape), offset, BERNOULLI_PER_BLOCK, device)
    if isinstance(p, Tensor):
        check_rate_tensor(p)
        limit = threshold_tensor(p.to(halves.device))
    else:
        limit = torch.tensor(threshold(p), dtype=torch.int64, device=halves.device)
    return (halves >= limit).reshape(tuple(shape))


def words_to_uniform(words: Tensor) -> Tensor:
    """Triton's ``uint_to_uniform_float``: 32-bit words (in int64) to float32 in [0, 1)."""
    signed = torch.where(words >= 2**31, words - 2**32, words)
    folded = torch.where(signed < 0, -signed - 1, signed)
    return folded.to(torch.float32) * torch.tensor(UNIFORM_SCALE, dtype=torch.float32)


def words_to_normal(words: Tensor) -> Tensor:
    """Triton's ``pair_uniform_to_normal`` applied to an ``(..., 4)`` tensor of words.

    Words (0, 1) give normals 0 and 1 (cos, sin); words (2, 3) give normals 2 and 3.
    """
    return uniforms_to_normal(words_to_uniform(words))


def uniforms_to_normal(u: Tensor) -> Tensor:
    """The Box-Muller half of :func:`words_to_normal`: float32 uniforms ``(..., 4)`` (as
    :func:`words_to_uniform` gives them) to normals, pairs (0, 1) and (2, 3)."""
    radius_u = torch.clamp_min(u[..., 0::2], NORMAL_U_MIN)
    angle_u = u[..., 1::2]
    angle = torch.tensor(TWO_PI, dtype=torch.float32) * angle_u
    radius = torch.sqrt(torch.tensor(-2.0, dtype=torch.float32) * torch.log(radius_u))
    cos_part = radius * torch.cos(angle)
    sin_part = radius * torch.sin(angle)
    return torch.stack((cos_part, sin_part), dim=-1).reshape(u.shape)


def uniform(
    shape: Sequence[int],
    *,
    seed: SeedLike,
    step: StepLike = 0,
    offset: int = 0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Float32 uniforms in [0, 1) of ``shape``: element ``i`` uses word ``i % 4`` of block
    ``i // 4``, converted as Triton's ``tl.rand4x``."""
    words = _element_words(seed, step, _shape_numel(shape), offset, WORDS_PER_BLOCK, device)
    return words_to_uniform(words).reshape(tuple(shape))


def normal(
    shape: Sequence[int],
    *,
    seed: SeedLike,
    step: StepLike = 0,
    offset: int = 0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Float32 standard normals of ``shape``, as Triton's ``tl.randn4x`` (Box-Muller on word
    pairs (0, 1) and (2, 3) of each block)."""
    numel = _shape_numel(shape)
    check_offset(offset)
    if numel == 0:
        return torch.empty(tuple(shape), dtype=torch.float32, device=device)
    first_block = offset // WORDS_PER_BLOCK
    last_block = (offset + numel - 1) // WORDS_PER_BLOCK
    words = random_words(seed, step, first_block, last_block - first_block + 1, device=device)
    start = offset - first_block * WORDS_PER_BLOCK
    return words_to_normal(words).reshape(-1)[start : start + numel].reshape(tuple(shape))
