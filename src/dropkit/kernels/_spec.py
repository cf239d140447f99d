"""The op table: one :class:`OpSpec` per primitive op, and the arithmetic every backend shares.

A primitive op draws one value per mask element and applies it to ``x``:

* **Bernoulli** ops (``draw == "bernoulli"``) keep element ``i`` iff its 16-bit half is at least
  the integer threshold ``t = round(p * 65536)`` and compute
  ``out = keep ? x * a + b : dropped`` (``b`` only where ``affine``) with
  ``(a, b, dropped) = spec.constants(t, compute dtype)``.
* **Normal** ops (``draw == "normal"``) compute ``out = x * (1 + a * n)`` with ``n`` a standard
  normal per mask element and ``(a, _, _) = spec.constants(rate, compute dtype)``.

The constants are functions of the threshold (or rate) tensor and a dtype, computed in float64
and rounded once, without a host sync: the reference evaluates them per call, the CPU backend
memoises them per integer threshold, Triton tabulates them for all 65537 thresholds. So every
backend's arithmetic is the same, operation for operation.

``draw`` describes one call's randomness: the rate (0-d tensor), the 64-bit seed and step (0-d
int64 tensors; ``step`` may be 1-D, see :func:`dropkit.kernels._dispatch.run`), the mask index
of ``x``'s first element and the mask's shape (broadcast to ``x``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from dropkit import rng

__all__ = [
    "ALPHA_DROPOUT",
    "ALPHA_DROPOUT_BACKWARD",
    "ALPHA_PRIME",
    "BIAS_ACT_DROPOUT_ADD",
    "BIAS_ACT_DROPOUT_BACKWARD",
    "DROPOUT",
    "DROPOUT_UNSCALED",
    "GAUSSIAN_DROPOUT",
    "SPECS",
    "Draw",
    "OpSpec",
    "alpha_constants",
    "compute_dtype",
    "dropout_scale",
    "gaussian_std",
    "keep_probability",
]

# -lambda * alpha of SELU (Klambauer et al. 2017): the value a dropped SELU unit is set to.
ALPHA_PRIME = -1.7580993408473766


class Draw(NamedTuple):
    """One call's randomness: ``(rate, seed, step, offset, mask_shape)``."""

    rate: Tensor
    seed: Tensor
    step: Tensor
    offset: int
    mask_shape: Sequence[int]


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


Constants = Callable[[Tensor, torch.dtype], tuple[Tensor, Tensor, Tensor]]


def _scale_only(factor: Callable[[Tensor, torch.dtype], Tensor]) -> Constants:
    def constants(value: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        zero = torch.zeros_like(value, dtype=dtype)
        return factor(value, dtype), zero, zero

    return constants


def _scaled(threshold: Tensor, dtype: torch.dtype) -> Tensor:
    return dropout_scale(threshold, dtype)


def _unscaled(threshold: Tensor, dtype: torch.dtype) -> Tensor:
    return torch.ones_like(threshold, dtype=dtype)


def _alpha_gradient(threshold: Tensor, dtype: torch.dtype) -> Tensor:
    return alpha_constants(threshold, dtype)[0]


@dataclass(frozen=True)
class OpSpec:
    """One primitive op, as every layer of dropkit sees it.

    Attributes:
        name: the spec's name (backends declare what they run by it).
        draw: ``"bernoulli"`` (16-bit halves against the threshold) or ``"normal"``.
        constants: ``(a, b, dropped)`` from the threshold (Bernoulli) or rate (normal) tensor
            and the compute dtype.
        affine: whether kept units get ``+ b`` (alpha dropout); else ``out = keep ? x * a : 0``.
        backward: the spec whose op is this op's gradient (it is linear in ``x``), or None where
            the op has its own backward (the fused ops).
        grouped: whether the op takes a 1-D ``step`` (dim-0 groups, one step each).
        epilogue: the fused epilogue, or None: ``"bias_act_add"``
            (``residual + dropout(act(x + bias))``) or ``"bias_act_backward"`` (its gradients).
    """

    name: str
    draw: Literal["bernoulli", "normal"]
    constants: Constants
    affine: bool = False
    backward: str | None = None
    grouped: bool = True
    epilogue: Literal["bias_act_add", "bias_act_backward"] | None = None


DROPOUT = OpSpec("dropout", "bernoulli", _scale_only(_scaled), backward="dropout")
DROPOUT_UNSCALED = OpSpec(
    "dropout_unscaled", "bernoulli", _scale_only(_unscaled), backward="dropout_unscaled"
)
# The map grad -> where(keep, a * grad, 0) is linear and self-adjoint: its own backward.
ALPHA_DROPOUT_BACKWARD = OpSpec(
    "alpha_dropout_backward",
    "bernoulli",
    _scale_only(_alpha_gradient),
    backward="alpha_dropout_backward",
)
ALPHA_DROPOUT = OpSpec(
    "alpha_dropout", "bernoulli", alpha_constants, affine=True, backward="alpha_dropout_backward"
)
GAUSSIAN_DROPOUT = OpSpec(
    "gaussian_dropout", "normal", _scale_only(gaussian_std), backward="gaussian_dropout"
)
BIAS_ACT_DROPOUT_ADD = OpSpec(
    "bias_act_dropout_add",
    "bernoulli",
    _scale_only(_scaled),
    grouped=False,
    epilogue="bias_act_add",
)
BIAS_ACT_DROPOUT_BACKWARD = OpSpec(
    "bias_act_dropout_backward",
    "bernoulli",
    _scale_only(_scaled),
    grouped=False,
    epilogue="bias_act_backward",
)

#: Every primitive op by name.
SPECS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        DROPOUT,
        DROPOUT_UNSCALED,
        ALPHA_DROPOUT,
        ALPHA_DROPOUT_BACKWARD,
        GAUSSIAN_DROPOUT,
        BIAS_ACT_DROPOUT_ADD,
        BIAS_ACT_DROPOUT_BACKWARD,
    )
}
