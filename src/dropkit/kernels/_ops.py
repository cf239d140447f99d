"""dropkit's primitive ops, declared once each and built by :mod:`._registry`.

The elementwise ops take ``(x, rate, seed, step, offset, mask_shape, *params)`` and run the
:class:`~dropkit.kernels._spec.OpSpec` their params select; ``step`` is 0-d, or 1-D of length
``k`` (MC sampling, :mod:`dropkit._mc_context`): then ``x`` is ``k`` equal groups along dim 0,
group ``j`` drawn with ``step[j]`` exactly as a separate call on that group would draw it, and
``mask_shape`` is one group's mask shape (see :func:`dropkit.kernels._dispatch.run`).

The fused ops compute ``residual + dropout(act(x + bias))`` and its backward with the mask
``dropout`` draws for ``x``'s shape. Autograd saves the 0-d ``rate``, ``seed`` and ``step``
(cloned), the bias (a parameter-sized tensor: its shape sets the bias gradient's reduction) and
``x`` only where the activation's derivative needs it (the pre-activation is recomputed from
``x`` and ``bias``). No mask and no intermediate of ``x``'s size is ever stored.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dropkit.kernels import _dispatch
from dropkit.kernels._dispatch import Epilogue
from dropkit.kernels._registry import (
    elementwise_op,
    elementwise_out_op,
    register_op,
)
from dropkit.kernels._spec import (
    ALPHA_DROPOUT,
    ALPHA_DROPOUT_BACKWARD,
    BIAS_ACT_DROPOUT_ADD,
    BIAS_ACT_DROPOUT_BACKWARD,
    DROPOUT,
    DROPOUT_UNSCALED,
    GAUSSIAN_DROPOUT,
    Draw,
)

__all__ = [
    "alpha_dropout",
    "alpha_dropout_backward",
    "bias_act_dropout_add",
    "bias_act_dropout_backward",
    "dropout",
    "dropout_out",
    "gaussian_dropout",
    "snapshot",
]


@torch.library.custom_op("dropkit::snapshot", mutates_args=())
def snapshot(t: Tensor) -> Tensor:
    """A copy of ``t`` that torch.compile keeps as a value of its own.

    A module's ``step`` buffer is advanced in place in the same compiled graph that reads it.
    With a plain ``clone``, AOT autograd drops the copy, saves the buffer itself for backward
    and writes the increment into it at the end of the forward, so the backward drew the next
    step's mask (seen: wrong gradients under torch.compile). A custom op is opaque to that
    rewrite and is never recomputed by the partitioner, so its result is what gets saved.
    """
    return t.clone()


@snapshot.register_fake
def _(t: Tensor) -> Tensor:
    return torch.empty_like(t)


# -- the elementwise family ------------------------------------------------------------------------

_DROPOUT_VARIANTS = {(True,): DROPOUT, (False,): DROPOUT_UNSCALED}
_DROPOUT_DOC = "``where(keep, x * s, 0)`` with ``s = 1 / (1 - p_eff)`` if ``scale`` else 1"

dropout = elementwise_op("dropout", _DROPOUT_DOC, _DROPOUT_VARIANTS, ", bool scale")
dropout_out = elementwise_out_op(
    "dropout_out", f"{_DROPOUT_DOC}, written into ``out``", _DROPOUT_VARIANTS, ", bool scale"
)
gaussian_dropout = elementwise_op(
    "gaussian_dropout",
    "``x * (1 + sqrt(p / (1 - p)) * n)`` with ``n`` standard normal per mask element",
    {(): GAUSSIAN_DROPOUT},
)
alpha_dropout_backward = elementwise_op(
    "alpha_dropout_backward",
    "``where(keep, a * grad, 0)``: the gradient of alpha dropout",
    {(): ALPHA_DROPOUT_BACKWARD},
)
alpha_dropout = elementwise_op(
    "alpha_dropout",
    "``where(keep, a * x + b, a * alpha' + b)`` (Klambauer et al. 2017)",
    {(): ALPHA_DROPOUT},
)


# -- fused: residual + dropout(act(x + bias)) and its backward ------------------------------------

_FUSED_RNG = "Tensor rate, Tensor seed, Tensor step, SymInt offset, str activation"


def _fused_backward_body(
    grad: Tensor,
    x: Tensor | None,
    bias: Tensor | None,
    rate: Tensor,
    seed: Tensor,
    step: Tensor,
    offset: int,
    activation: str,
) -> tuple[Tensor, Tensor]:
    draw = Draw(rate, seed, step, offset, grad.shape)
    epilogue = Epilogue(activation, bias, input=x)
    return _dispatch.run(BIAS_ACT_DROPOUT_BACKWARD, grad, draw, None, epilogue)  # type: ignore[return-value]


def _fused_backward_fake(
    grad: Tensor, x: Tensor | None, bias: Tensor | None, *args: Any
) -> tuple[Tensor, Tensor]:
    accumulate = torch.float64 if grad.dtype == torch.float64 else torch.float32
    bias_shape = (0,) if bias is None else bias.shape
    return torch.empty_like(grad), grad.new_empty(bias_shape, dtype=accumulate)


bias_act_dropout_backward = register_op(
    "bias_act_dropout_backward",
    f"(Tensor grad, Tensor? x, Tensor? bias, {_FUSED_RNG}) -> (Tensor, Tensor)",
    _fused_backward_body,
    doc="Gradients with respect to the pre-activation, ``where(keep, grad * s, 0) * "
    "act'(x + b)``, and to the bias (float32 or float64, summed to ``bias``'s shape; empty "
    "without a bias)",
    fake=_fused_backward_fake,
).public


def _fused_body(
    x: Tensor,
    bias: Tensor | None,
    residual: Tensor | None,
    rate: Tensor,
    seed: Tensor,
    step: Tensor,
    offset: int,
    activation: str,
) -> Tensor:
    draw = Draw(rate, seed, step, offset, x.shape)
    epilogue = Epilogue(activation, bias, residual)
    return _dispatch.run(BIAS_ACT_DROPOUT_ADD, x, draw, None, epilogue)  # type: ignore[return-value]


def _fused_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, bias, residual, rate, seed, step, offset, activation = inputs
    ctx.save_for_backward(
        x if activation != "identity" else None,
        bias,
        rate.detach().clone(),
        seed.detach().clone(),
        step.detach().clone(),
    )
    ctx.offset = offset
    ctx.activation = activation
    ctx.bias_meta = None if bias is None else (bias.shape, bias.dtype)
    ctx.residual_meta = None if residual is None else (residual.shape, residual.dtype)


def _fused_backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    x, bias, rate, seed, step = ctx.saved_tensors
    needs_x, needs_bias, needs_residual = ctx.needs_input_grad[:3]
    grad_x = grad_bias = grad_residual = None
    if needs_x or needs_bias:
        grad_h, grad_bias_wide = bias_act_dropout_backward(
            grad, x, bias, rate, seed, step, ctx.offset, ctx.activation
        )
        grad_x = grad_h if needs_x else None
        if needs_bias and ctx.bias_meta is not None:
            grad_bias = grad_bias_wide.to(ctx.bias_meta[1])
    if needs_residual and ctx.residual_meta is not None:
        shape, dtype = ctx.residual_meta
        grad_residual = grad.sum_to_size(shape).to(dtype)
    return grad_x, grad_bias, grad_residual, None, None, None, None, None


bias_act_dropout_add = register_op(
    "bias_act_dropout_add",
    f"(Tensor x, Tensor? bias, Tensor? residual, {_FUSED_RNG}) -> Tensor",
    _fused_body,
    doc="``residual + where(keep, act(x + bias) * s, 0)``, intermediates in float32",
    setup=_fused_setup,
    backward=_fused_backward,
    differentiable=(0, 1, 2),
).public
