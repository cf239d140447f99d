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
    "ACTIVATIONS",
    "ALPHA_PRIME",
    "ReferenceBackend",
    "activate",
    "activation_backward",
    "alpha_constants",
    "check_step",
    "compute_dtype",
    "dropout_scale",
    "gaussian_std",
    "step_groups",
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


#: Activations of the fused ops; ``"identity"`` is bias-dropout-add without an activation.
ACTIVATIONS = ("identity", "gelu", "gelu_tanh", "relu", "silu")


def activate(h: Tensor, activation: str) -> Tensor:
    """PyTorch's own activation ``activation`` (one of :data:`ACTIVATIONS`) applied to ``h``."""
    if activation == "gelu":
        return torch.nn.functional.gelu(h)
    if activation == "gelu_tanh":
        return torch.nn.functional.gelu(h, approximate="tanh")
    if activation == "relu":
        return torch.relu(h)
    if activation == "silu":
        return torch.nn.functional.silu(h)
    return h


def activation_backward(grad: Tensor, h: Tensor, activation: str) -> Tensor:
    """``grad * activation'(h)`` with PyTorch's own backward formulas."""
    if activation == "gelu":
        return torch.ops.aten.gelu_backward(grad, h, approximate="none")
    if activation == "gelu_tanh":
        return torch.ops.aten.gelu_backward(grad, h, approximate="tanh")
    if activation == "relu":
        return torch.ops.aten.threshold_backward(grad, h, 0)
    if activation == "silu":
        return torch.ops.aten.silu_backward(grad, h)
    return grad


def check_step(x: Tensor, step: Tensor) -> None:
    """A primitive op's ``step``: 0-d, or 1-D of length ``k`` dividing ``x``'s leading dim."""
    if step.dim() == 0:
        return
    if step.dim() != 1 or step.numel() == 0 or x.dim() == 0 or x.shape[0] % step.numel() != 0:
        raise ValueError(
            f"step must be 0-d or 1-D with a length that divides the input's leading dim, got "
            f"step of shape {tuple(step.shape)} for an input of shape {tuple(x.shape)}"
        )


def step_groups(t: Tensor, step: Tensor) -> list[Tensor]:
    """The ``k`` equal dim-0 groups of ``t`` (views) for a 1-D ``step`` of length ``k``."""
    return list(t.unflatten(0, (step.numel(), t.shape[0] // step.numel())).unbind(0))


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

    def bias_act_dropout_add(
        self,
        x: Tensor,
        bias: Tensor | None,
        residual: Tensor | None,
        rate: Tensor,
        seed: Tensor,
        step: Tensor,
        offset: int,
        activation: str,
    ) -> Tensor:
        """``residual + where(keep, act(x + bias) * s, 0)`` with float32 (or float64)
        intermediates, rounded once; ``keep`` is the mask :meth:`dropout` draws for ``x``."""
        keep = self.keep(rate, seed, step, offset, x.shape)
        cd = compute_dtype(x.dtype)
        factor = dropout_scale(rng.threshold_tensor(rate), cd)
        h = x.to(cd) if bias is None else x.to(cd) + bias.to(cd)
        zero = torch.zeros((), dtype=cd, device=x.device)
        y = torch.where(keep, activate(h, activation) * factor, zero)
        if residual is not None:
            y = residual.to(cd) + y
        return torch.empty_like(x).copy_(y)

    def bias_act_dropout_backward(
        self,
        grad: Tensor,
        x: Tensor | None,
        bias: Tensor | None,
        rate: Tensor,
        seed: Tensor,
        step: Tensor,
        offset: int,
        activation: str,
    ) -> tuple[Tensor, Tensor]:
        """Gradients with respect to the pre-activation ``h = x + bias``,
        ``where(keep, grad * s, 0) * act'(h)`` (in ``grad``'s dtype), and to the bias: that
        float32 (or float64) gradient summed to ``bias``'s shape (empty without a bias).
        ``x`` may be None for ``"identity"``."""
        keep = self.keep(rate, seed, step, offset, grad.shape)
        cd = compute_dtype(grad.dtype)
        factor = dropout_scale(rng.threshold_tensor(rate), cd)
        zero = torch.zeros((), dtype=cd, device=grad.device)
        grad_h = torch.where(keep, grad.to(cd) * factor, zero)
        if activation != "identity":
            if x is None:
                raise ValueError(f"activation {activation!r} needs the input x in backward")
            h = x.to(cd) if bias is None else x.to(cd) + bias.to(cd)
            grad_h = activation_backward(grad_h, h, activation)
        if bias is None:
            grad_bias = torch.empty(0, dtype=cd, device=grad.device)
        else:
            grad_bias = grad_h.sum_to_size(bias.shape)
        return torch.empty_like(grad).copy_(grad_h), grad_bias
