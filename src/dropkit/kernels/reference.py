"""The reference backend: every op in plain PyTorch, on any device. The ground truth.

Other backends must produce the same bits for the same ``(seed, step, offset)``. The constants
each op needs (threshold, scale, alpha-dropout affine terms, Gaussian std) are computed by the
helpers here, as tensors and without a host sync, and other backends use the same helpers so
that the arithmetic agrees exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from dropkit import rng

__all__ = [
    "ALPHA_PRIME",
    "ReferenceBackend",
    "alpha_constants",
    "compute_dtype",
    "dropout_scale",
    "gaussian_std",
]

# -lambda * alpha of SELU (Klambauer et al. 2017): the value a dropped SELU unit is set to.
ALPHA_PRIME = -1.7580993408473766


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Arithmetic precision for an input dtype: float64 stays, everything else uses float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def dropout_scale(threshold: Tensor, dtype: torch.dtype) -> Tensor:
    """Inverted-dropout scale ``1 / (1 - p_eff) = 65536 / (65536 - t)`` in ``dtype``.

    Computed in float64 and rounded once; ``t = 65536`` (drop everything) gives 1 (unused).
    """
    kept = torch.clamp_min(rng.THRESHOLD_ONE - threshold, 1).to(torch.float64)
    return (rng.THRESHOLD_ONE / kept).to(dtype)


def keep_probability(threshold: Tensor, dtype: torch.dtype) -> Tensor:
    """``1 - p_eff`` in ``dtype``."""
    return ((rng.THRESHOLD_ONE - threshold).to(torch.float64) / rng.THRESHOLD_ONE).to(dtype)


def alpha_constants(threshold: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Alpha-dropout affine terms ``(a, b, dropped_value)`` in ``dtype`` for ``p_eff = t/65536``.

    ``a = (q + alpha'^2 q p)^(-1/2)``, ``b = -a alpha' p``, with ``q = 1 - p``; a dropped unit
    outputs ``a alpha' + b``. ``p_eff = 1`` gives ``a = 0`` and ``b = 0``: all outputs zero.
    """
    p = threshold.to(torch.float64) / rng.THRESHOLD_ONE
    q = 1.0 - p
    variance_term = q + ALPHA_PRIME**2 * q * p
    a = torch.where(q > 0, torch.rsqrt(torch.clamp_min(variance_term, 1e-300)), 0.0)
    b = -a * ALPHA_PRIME * p
    return a.to(dtype), b.to(dtype), (a * ALPHA_PRIME + b).to(dtype)


def gaussian_std(rate: Tensor, dtype: torch.dtype) -> Tensor:
    """Standard deviation ``sqrt(p / (1 - p))`` of Gaussian dropout's multiplicative noise."""
    p = rate.to(torch.float64)
    return torch.sqrt(p / (1.0 - p)).to(dtype)


def _broadcast_mask(mask: Tensor, x: Tensor) -> Tensor:
    return mask.expand(x.shape)


class ReferenceBackend:
    """Pure-PyTorch implementations of the primitive ops; runs on every device and dtype."""

    name = "reference"

    def supports(self, x: Tensor) -> bool:
        return True

    @staticmethod
    def keep(
        rate: Tensor, seed: Tensor, step: Tensor, offset: int, mask_shape: Sequence[int]
    ) -> Tensor:
        limit = rng.threshold_tensor(rate)
        halves = rng._element_words(
            seed, step, math.prod(mask_shape), offset, rng.BERNOULLI_PER_BLOCK, seed.device
        )
        return (halves >= limit).reshape(tuple(mask_shape))

    @staticmethod
    def normal(seed: Tensor, step: Tensor, offset: int, mask_shape: Sequence[int]) -> Tensor:
        return rng.normal(mask_shape, seed=seed, step=step, offset=offset, device=seed.device)

    def dropout(
        self,
        x: Tensor,
        rate: Tensor,
        seed: Tensor,
        step: Tensor,
        offset: int,
        mask_shape: Sequence[int],
        scale: bool,
    ) -> Tensor:
        return self.dropout_out(x, rate, seed, step, offset, mask_shape, scale, torch.empty_like(x))

    def dropout_out(
        self,
        x: Tensor,
        rate: Tensor,
        seed: Tensor,
        step: Tensor,
        offset: int,
        mask_shape: Sequence[int],
        scale: bool,
        out: Tensor,
    ) -> Tensor:
        """:meth:`dropout` written into ``out`` (which may be ``x`` itself); returns ``out``."""
        keep = _broadcast_mask(self.keep(rate, seed, step, offset, mask_shape), x)
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        if scale:
            cd = compute_dtype(x.dtype)
            factor = dropout_scale(rng.threshold_tensor(rate), cd)
            kept = (x.to(cd) * factor).to(x.dtype)
        else:
            kept = x
        return torch.where(keep, kept, zero, out=out)

    def alpha_dropout(
        self,
        x: Tensor,
        rate: Tensor,
        seed: Tensor,
        step: Tensor,
        offset: int,
        mask_shape: Sequence[int],
    ) -> Tensor:
        keep = _broadcast_mask(self.keep(rate, seed, step, offset, mask_shape), x)
        cd = compute_dtype(x.dtype)
        a, b, dropped = alpha_constants(rng.threshold_tensor(rate), cd)
        kept = x.to(cd) * a + b
        out = torch.empty_like(x)
        return torch.where(keep, kept.to(x.dtype), dropped.to(x.dtype), out=out)

    def alpha_dropout_backward(
        self,
        grad: Tensor,
        rate: Tensor,
        seed: Tensor,
        step: Tensor,
        offset: int,
        mask_shape: Sequence[int],
    ) -> Tensor:
        keep = _broadcast_mask(self.keep(rate, seed, step, offset, mask_shape), grad)
        cd = compute_dtype(grad.dtype)
        a, _, _ = alpha_constants(rng.threshold_tensor(rate), cd)
        out = torch.empty_like(grad)
        zero = torch.zeros((), dtype=grad.dtype, device=grad.device)
        return torch.where(keep, (grad.to(cd) * a).to(grad.dtype), zero, out=out)

    def gaussian_dropout(
        self,
        x: Tensor,
        rate: Tensor,
        seed: Tensor,
        step: Tensor,
        offset: int,
        mask_shape: Sequence[int],
    ) -> Tensor:
        cd = compute_dtype(x.dtype)
        noise = self.normal(seed, step, offset, mask_shape)
        factor = 1.0 + gaussian_std(rate, cd) * noise.to(cd)
        return torch.empty_like(x).copy_(x.to(cd) * factor)
