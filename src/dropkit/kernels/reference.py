"""The reference backend: one generic lowering of the op table in plain PyTorch, on any device.
The ground truth.

Other backends must produce the same bits for the same ``(seed, step, offset)``. The constants
each op needs come from its :class:`~dropkit.kernels._spec.OpSpec` (computed as tensors, without
a host sync), and other backends use the same functions so that the arithmetic agrees exactly.
The constant helpers are re-exported here for the callers that import them from this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from dropkit import rng
from dropkit.kernels._dispatch import Epilogue, check_step, step_groups
from dropkit.kernels._spec import (
    ALPHA_PRIME,
    Draw,
    OpSpec,
    alpha_constants,
    compute_dtype,
    dropout_scale,
    gaussian_std,
    keep_probability,
)

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
    "keep_probability",
    "step_groups",
]


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


class ReferenceBackend:
    """The op table lowered to PyTorch ops; runs every spec on every device and dtype.

    ``keep`` and ``normal`` are the draws; a subclass may override them (the CPU backend draws
    with its kernels where its fused passes do not apply).
    """

    name = "reference"
    #: A 1-D step is run group by group by :func:`dropkit.kernels._dispatch.run`.
    grouped_step_ops: frozenset[str] = frozenset()

    def supports(self, spec: OpSpec, x: Tensor) -> bool:
        return True

    @staticmethod
    def keep(
        rate: Tensor, seed: Tensor, step: Tensor, offset: int, mask_shape: Sequence[int]
    ) -> Tensor:
        """The boolean keep mask of ``mask_shape``: 16-bit halves at least the threshold."""
        return ReferenceBackend.keep_at(rng.threshold_tensor(rate), seed, step, offset, mask_shape)

    @staticmethod
    def keep_at(
        threshold: Tensor, seed: Tensor, step: Tensor, offset: int, mask_shape: Sequence[int]
    ) -> Tensor:
        """:meth:`keep` for an integer threshold tensor."""
        halves = rng._element_words(
            seed, step, math.prod(mask_shape), offset, rng.BERNOULLI_PER_BLOCK, seed.device
        )
        return (halves >= threshold).reshape(tuple(mask_shape))

    def _keep(self, draw: Draw, threshold: Tensor, mask_shape: Sequence[int]) -> Tensor:
        return self.keep_at(threshold, draw.seed, draw.step, draw.offset, mask_shape)

    @staticmethod
    def normal(seed: Tensor, step: Tensor, offset: int, mask_shape: Sequence[int]) -> Tensor:
        return rng.normal(mask_shape, seed=seed, step=step, offset=offset, device=seed.device)

    def run(
        self,
        spec: OpSpec,
        x: Tensor,
        draw: Draw,
        out: Tensor | None = None,
        epilogue: Epilogue | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """``spec`` on ``x`` into ``out`` (a new tensor if None; may be ``x`` itself)."""
        if epilogue is not None:
            if spec.epilogue == "bias_act_backward":
                return self._bias_act_dropout_backward(spec, x, draw, epilogue)
            return self._bias_act_dropout_add(spec, x, draw, epilogue)
        return self.elementwise(spec, x, draw, out)

    def elementwise(self, spec: OpSpec, x: Tensor, draw: Draw, out: Tensor | None) -> Tensor:
        """``out = keep ? x * a (+ b) : dropped`` (Bernoulli) or ``x * (1 + a * n)`` (normal)
        in the compute dtype, rounded once to ``x``'s dtype."""
        if out is None:
            out = torch.empty_like(x)
        cd = compute_dtype(x.dtype)
        if spec.draw == "normal":
            noise = self.normal(draw.seed, draw.step, draw.offset, draw.mask_shape)
            factor = 1.0 + spec.constants(draw.rate, cd)[0] * noise.to(cd)
            return out.copy_(x.to(cd) * factor)
        threshold = rng.threshold_tensor(draw.rate)
        keep = self._keep(draw, threshold, draw.mask_shape).expand(x.shape)
        a, b, dropped = spec.constants(threshold, cd)
        kept = x.to(cd) * a
        if spec.affine:
            kept = kept + b
        return torch.where(keep, kept.to(x.dtype), dropped.to(x.dtype), out=out)

    def _bias_act_dropout_add(
        self, spec: OpSpec, x: Tensor, draw: Draw, epilogue: Epilogue
    ) -> Tensor:
        """``residual + where(keep, act(x + bias) * s, 0)`` with float32 (or float64)
        intermediates, rounded once; ``keep`` is the mask dropout draws for ``x``."""
        bias, residual = epilogue.bias, epilogue.residual
        threshold = rng.threshold_tensor(draw.rate)
        keep = self._keep(draw, threshold, x.shape)
        cd = compute_dtype(x.dtype)
        factor = spec.constants(threshold, cd)[0]
        h = x.to(cd) if bias is None else x.to(cd) + bias.to(cd)
        zero = torch.zeros((), dtype=cd, device=x.device)
        y = torch.where(keep, activate(h, epilogue.activation) * factor, zero)
        if residual is not None:
            y = residual.to(cd) + y
        return torch.empty_like(x).copy_(y)

    def _bias_act_dropout_backward(
        self, spec: OpSpec, grad: Tensor, draw: Draw, epilogue: Epilogue
    ) -> tuple[Tensor, Tensor]:
        """Gradients with respect to the pre-activation ``h = x + bias``,
        ``where(keep, grad * s, 0) * act'(h)`` (in ``grad``'s dtype), and to the bias: that
        float32 (or float64) gradient summed to ``bias``'s shape (empty without a bias).
        ``epilogue.input`` may be None for ``"identity"``."""
        x, bias, activation = epilogue.input, epilogue.bias, epilogue.activation
        threshold = rng.threshold_tensor(draw.rate)
        keep = self._keep(draw, threshold, grad.shape)
        cd = compute_dtype(grad.dtype)
        factor = spec.constants(threshold, cd)[0]
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
