"""Fused dropout blocks registered with ``torch.library``: one op for
``residual + dropout(act(x + bias))`` and one for its backward.

The mask is the one ``dropkit::dropout`` draws for ``x``'s shape. Autograd saves the 0-d
``rate``, ``seed`` and ``step`` (cloned), the bias (a parameter-sized tensor: its shape sets the
bias gradient's reduction) and ``x`` only where the activation's derivative needs it (the
pre-activation is recomputed from ``x`` and ``bias``). No mask and no intermediate of ``x``'s size
is ever stored.

As in :mod:`dropkit.kernels._ops`, plain eager calls run the same bodies without
``torch.library``'s dispatch (:func:`~dropkit.kernels._eager.plain_eager`), under an equivalent
:class:`torch.autograd.Function`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dropkit.kernels import backend_for
from dropkit.kernels._eager import plain_eager, records_grad

__all__ = ["bias_act_dropout_add", "bias_act_dropout_backward"]


def _forward_body(
    x: Tensor,
    bias: Tensor | None,
    residual: Tensor | None,
    rate: Tensor,
    seed: Tensor,
    step: Tensor,
    offset: int,
    activation: str,
) -> Tensor:
    return backend_for(x, "bias_act_dropout_add").bias_act_dropout_add(
        x, bias, residual, rate, seed, step, offset, activation
    )


def _backward_body(
    grad: Tensor,
    x: Tensor | None,
    bias: Tensor | None,
    rate: Tensor,
    seed: Tensor,
    step: Tensor,
    offset: int,
    activation: str,
) -> tuple[Tensor, Tensor]:
    return backend_for(grad, "bias_act_dropout_backward").bias_act_dropout_backward(
        grad, x, bias, rate, seed, step, offset, activation
    )


@torch.library.custom_op("dropkit::bias_act_dropout_add", mutates_args=())
def _bias_act_dropout_add_op(
    x: Tensor,
    bias: Tensor | None,
    residual: Tensor | None,
    rate: Tensor,
    seed: Tensor,
    step: Tensor,
    offset: int,
    activation: str,
) -> Tensor:
    """``residual + where(keep, act(x + bias) * s, 0)``, intermediates in float32."""
    return _forward_body(x, bias, residual, rate, seed, step, offset, activation)


@_bias_act_dropout_add_op.register_fake
def _(x: Tensor, *args: Any) -> Tensor:
    return torch.empty_like(x)


@torch.library.custom_op("dropkit::bias_act_dropout_backward", mutates_args=())
def _bias_act_dropout_backward_op(
    grad: Tensor,
    x: Tensor | None,
    bias: Tensor | None,
    rate: Tensor,
    seed: Tensor,
    step: Tensor,
    offset: int,
    activation: str,
) -> tuple[Tensor, Tensor]:
    """Gradients with respect to the pre-activation, ``where(keep, grad * s, 0) * act'(x + b)``,
    and to the bias (float32 or float64, summed to ``bias``'s shape; empty without a bias)."""
    return _backward_body(grad, x, bias, rate, seed, step, offset, activation)


@_bias_act_dropout_backward_op.register_fake
def _(grad: Tensor, x: Tensor | None, bias: Tensor | None, *args: Any) -> tuple[Tensor, Tensor]:
    accumulate = torch.float64 if grad.dtype == torch.float64 else torch.float32
    bias_shape = (0,) if bias is None else bias.shape
    return torch.empty_like(grad), grad.new_empty(bias_shape, dtype=accumulate)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, bias, residual, rate, seed, step, offset, activation = inputs
    needs_input = activation != "identity"
    ctx.save_for_backward(
        x if needs_input else None,
        bias,
        rate.detach().clone(),
        seed.detach().clone(),
        step.detach().clone(),
    )
    ctx.offset = offset
    ctx.activation = activation
    ctx.bias_meta = None if bias is None else (bias.shape, bias.dtype)
    ctx.residual_meta = None if residual is None else (residual.shape, residual.dtype)


def _reduce_to(grad: Tensor, meta: tuple[torch.Size, torch.dtype]) -> Tensor:
    shape, dtype = meta
    return grad.sum_to_size(shape).to(dtype)


def _backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
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
        grad_residual = _reduce_to(grad, ctx.residual_meta)
    return grad_x, grad_bias, grad_residual, None, None, None, None, None


_bias_act_dropout_add_op.register_autograd(_backward, setup_context=_setup_context)


class _EagerBiasActDropoutAdd(torch.autograd.Function):
    """The eager twin of ``dropkit::bias_act_dropout_add``'s autograd."""

    @staticmethod
    def forward(ctx: Any, *inputs: Any) -> Tensor:
        output = _forward_body(*inputs)
        _setup_context(ctx, inputs, output)
        return output

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:
        return _backward(ctx, grads[0])


def bias_act_dropout_add(
    x: Tensor,
    bias: Tensor | None,
    residual: Tensor | None,
    rate: Tensor,
    seed: Tensor,
    step: Tensor,
    offset: int,
    activation: str,
) -> Tensor:
    """``residual + where(keep, act(x + bias) * s, 0)``: ``dropkit::bias_act_dropout_add``, or
    its eager twin where :func:`~dropkit.kernels._eager.plain_eager` allows."""
    args = (x, bias, residual, rate, seed, step, offset, activation)
    if not plain_eager(x, bias, residual, rate, seed, step):
        return _bias_act_dropout_add_op(*args)
    if records_grad(x, bias, residual):
        return _EagerBiasActDropoutAdd.apply(*args)
    return _forward_body(*args)


def bias_act_dropout_backward(
    grad: Tensor,
    x: Tensor | None,
    bias: Tensor | None,
    rate: Tensor,
    seed: Tensor,
    step: Tensor,
    offset: int,
    activation: str,
) -> tuple[Tensor, Tensor]:
    """The fused backward: ``dropkit::bias_act_dropout_backward`` or its body directly where
    :func:`~dropkit.kernels._eager.plain_eager` allows (it is not differentiable itself)."""
    args = (grad, x, bias, rate, seed, step, offset, activation)
    if plain_eager(grad, x, bias, rate, seed, step):
        return _backward_body(*args)
    return _bias_act_dropout_backward_op(*args)
