"""Fused dropout blocks as functions: ``residual + dropout(act(x + bias))`` in one pass.

The modules in :mod:`dropkit.nn` (``BiasDropoutAdd``, ``BiasActDropout``, ``BiasActDropoutAdd``)
carry the full docstrings.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from dropkit import rng
from dropkit.functional._checks import as_rate, check_floating, check_offset, resolve_seed_step
from dropkit.kernels import _ops

__all__ = ["bias_act_dropout", "bias_act_dropout_add", "bias_dropout_add"]

Activation = Literal["gelu", "gelu_tanh", "relu", "silu"]
ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "silu")


def _check_operand(operand: Tensor | None, name: str, x: Tensor) -> None:
    if operand is None:
        return
    check_floating(operand, name)
    if operand.device != x.device:
        raise ValueError(
            f"{name} is on {operand.device} but input is on {x.device}: all tensors of a fused "
            "op must be on one device"
        )
    try:
        broadcast = torch.broadcast_shapes(operand.shape, x.shape)
    except RuntimeError:
        broadcast = None
    if broadcast != x.shape:
        raise ValueError(
            f"{name} shape {tuple(operand.shape)} does not broadcast to the input shape "
            f"{tuple(x.shape)}"
        )


def _fused(
    x: Tensor,
    bias: Tensor | None,
    residual: Tensor | None,
    p: float | Tensor,
    training: bool,
    activation: str,
    seed: rng.SeedLike | None,
    step: rng.StepLike,
    offset: int,
) -> Tensor:
    check_floating(x)
    _check_operand(bias, "bias", x)
    _check_operand(residual, "residual", x)
    rate = as_rate(p, x)
    if not training:
        # Inference: the same kernel with rate 0 (keeps every unit, scale 1); no seed is drawn.
        rate = torch.zeros((), dtype=torch.float32, device=x.device)
        seed, step = 0, 0
    seed_t, step_t = resolve_seed_step(seed, step, x.device)
    return _ops.bias_act_dropout_add(
        x, bias, residual, rate, seed_t, step_t, check_offset(offset), activation
    )


def _check_activation(activation: object) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    return str(activation)


def bias_dropout_add(
    x: Tensor,
    bias: Tensor | None,
    residual: Tensor,
    p: float | Tensor = 0.5,
    training: bool = True,
    *,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Tensor:
    """``residual + dropout(x + bias)`` in one pass (see :class:`dropkit.nn.BiasDropoutAdd`).

    The mask is bit for bit the one :func:`dropkit.functional.dropout` draws for ``x`` with the
    same ``seed``, ``step`` and ``offset``; ``bias`` (or None) and ``residual`` broadcast to
    ``x``.

    Example:
        >>> y = bias_dropout_add(torch.ones(2, 4), torch.zeros(4), torch.ones(2, 4), 0.5, seed=0)
    """
    return _fused(x, bias, residual, p, training, "identity", seed, step, offset)


def bias_act_dropout(
    x: Tensor,
    bias: Tensor | None,
    p: float | Tensor = 0.5,
    activation: Activation = "gelu",
    training: bool = True,
    *,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Tensor:
    """``dropout(act(x + bias))`` in one pass (see :class:`dropkit.nn.BiasActDropout`).

    Example:
        >>> y = bias_act_dropout(torch.randn(2, 4), torch.zeros(4), 0.1, "gelu", seed=0)
    """
    activation = _check_activation(activation)  # type: ignore[assignment]
    return _fused(x, bias, None, p, training, activation, seed, step, offset)


def bias_act_dropout_add(
    x: Tensor,
    bias: Tensor | None,
    residual: Tensor,
    p: float | Tensor = 0.5,
    activation: Activation = "gelu",
    training: bool = True,
    *,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Tensor:
    """``residual + dropout(act(x + bias))`` in one pass (see
    :class:`dropkit.nn.BiasActDropoutAdd`).

    Example:
        >>> x, r = torch.randn(2, 4), torch.randn(2, 4)
        >>> y = bias_act_dropout_add(x, torch.zeros(4), r, 0.1, "gelu", seed=0)
    """
    activation = _check_activation(activation)  # type: ignore[assignment]
    return _fused(x, bias, residual, p, training, activation, seed, step, offset)
