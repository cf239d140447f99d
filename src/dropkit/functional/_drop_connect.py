"""DropConnect as functions (Wan et al. 2013): weights, not activations, dropped in a linear or
convolutional layer, with the paper's mean or Gaussian inference.
:class:`dropkit.nn.DropConnectLinear` and the conv modules wrap them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch.nn.functional as torch_f
from torch import Tensor

from dropkit import rng
from dropkit.functional._checks import (
    as_rate,
    check_floating,
    check_offset,
    resolve_seed_step,
)
from dropkit.kernels import _ops
from dropkit.kernels.reference import compute_dtype, keep_probability

__all__ = ["drop_connect_conv", "drop_connect_linear"]

DropConnectInference = Literal["mean", "gaussian"]


def check_inference(inference: str, num_samples: int) -> None:
    if inference not in ("mean", "gaussian"):
        raise ValueError(f"inference must be 'mean' or 'gaussian', got {inference!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")


def _drop_connect(
    x: Tensor,
    weight: Tensor,
    p: float | Tensor,
    training: bool,
    layer: Callable[[Tensor, Tensor, bool], Tensor],
    activation: Callable[[Tensor], Tensor] | None,
    inference: str,
    num_samples: int,
    seed: rng.SeedLike | None,
    step: rng.StepLike,
    offset: int,
) -> Tensor:
    """``layer(input, weight, with_bias)`` with a dropped weight (training) or the paper's
    inference; the activation (if any) is applied to each sample before averaging."""
    check_floating(x)
    check_floating(weight, "weight")
    check_inference(inference, num_samples)
    act = activation if activation is not None else (lambda t: t)
    rate = as_rate(p, weight)
    if training:
        seed_t, step_t = resolve_seed_step(seed, step, weight.device)
        dropped = _ops.dropout(
            weight, rate, seed_t, step_t, check_offset(offset), list(weight.shape), True
        )
        return act(layer(x, dropped, True))
    mean = layer(x, weight, True)
    if inference == "mean":
        return act(mean)
    # Wan et al. sec. 3: the pre-activation is a sum of many independent terms, so it is
    # close to N(mean, var) with var = p / (1 - p) * (W**2) (x**2) under inverted scaling.
    cd = compute_dtype(weight.dtype)
    threshold = rng.threshold_tensor(rate)
    keep_prob = keep_probability(threshold, cd)
    variance = layer(x * x, weight * weight, False) * ((1 - keep_prob) / keep_prob).to(x.dtype)
    std = variance.clamp_min(0).sqrt()
    seed_t, step_t = resolve_seed_step(seed, step, weight.device)
    noise = rng.normal(
        (num_samples, *mean.shape), seed=seed_t, step=step_t, offset=check_offset(offset),
        device=x.device,
    ).to(mean.dtype)  # fmt: skip
    return act(mean + std * noise).mean(dim=0)


def drop_connect_linear(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    p: float | Tensor = 0.5,
    training: bool = True,
    *,
    activation: Callable[[Tensor], Tensor] | None = None,
    inference: DropConnectInference = "mean",
    num_samples: int = 16,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Tensor:
    """DropConnect on a linear layer: ``act(x (M * W / (1 - p))^T + b)`` in training (see
    :class:`dropkit.nn.DropConnectLinear`).

    Example:
        >>> y = drop_connect_linear(torch.ones(2, 3), torch.ones(4, 3), None, 0.5, seed=0)
    """

    def layer(inp: Tensor, w: Tensor, with_bias: bool) -> Tensor:
        return torch_f.linear(inp, w, bias if with_bias else None)

    return _drop_connect(
        x, weight, p, training, layer, activation, inference, num_samples, seed, step, offset
    )


def drop_connect_conv(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    p: float | Tensor = 0.5,
    training: bool = True,
    *,
    stride: int | tuple[int, ...] = 1,
    padding: int | tuple[int, ...] | str = 0,
    dilation: int | tuple[int, ...] = 1,
    groups: int = 1,
    activation: Callable[[Tensor], Tensor] | None = None,
    inference: DropConnectInference = "mean",
    num_samples: int = 16,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Tensor:
    """DropConnect on a 1-, 2- or 3-D convolution (chosen by ``weight.dim()``); see
    :class:`dropkit.nn.DropConnectConv2d`.

    Example:
        >>> y = drop_connect_conv(torch.ones(1, 2, 5, 5), torch.ones(3, 2, 3, 3), p=0.5, seed=0)
    """
    if weight.dim() not in (3, 4, 5):
        raise ValueError(f"weight must be 3-, 4- or 5-D (a conv weight), got {weight.dim()}-D")
    conv: Callable[..., Tensor] = (torch_f.conv1d, torch_f.conv2d, torch_f.conv3d)[weight.dim() - 3]

    def layer(inp: Tensor, w: Tensor, with_bias: bool) -> Tensor:
        return conv(inp, w, bias if with_bias else None, stride, padding, dilation, groups)

    return _drop_connect(
        x, weight, p, training, layer, activation, inference, num_samples, seed, step, offset
    )
