"""Attention-based dropout layer as a function (Choe & Shim 2019). :class:`dropkit.nn.ADL` wraps
it."""

from __future__ import annotations

import torch
from torch import Tensor

from dropkit import rng
from dropkit.functional._checks import (
    as_rate,
    check_floating,
    check_offset,
    check_p,
    resolve_seed_step,
)

__all__ = ["adl"]


def adl(
    x: Tensor,
    p: float | Tensor = 0.75,
    training: bool = True,
    *,
    gamma: float = 0.9,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Tensor:
    """Attention-based dropout layer (see :class:`dropkit.nn.ADL`): multiply ``x`` by the drop
    mask (with probability ``p``) or by the importance map (otherwise); identity at inference.

    Example:
        >>> y = adl(torch.rand(2, 3, 4, 4), 0.75, seed=0)
    """
    check_floating(x)
    if x.dim() != 4:
        raise ValueError(f"input must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    gamma = check_p(gamma, "gamma")
    rate = as_rate(p, x)
    if not training:
        return x
    attention = x.mean(dim=1, keepdim=True)
    importance = torch.sigmoid(attention)
    peak = attention.amax(dim=(2, 3), keepdim=True)
    drop_mask = (attention < gamma * peak).to(x.dtype)
    seed_t, step_t = resolve_seed_step(seed, step, x.device)
    draw = rng.uniform((1,), seed=seed_t, step=step_t, offset=check_offset(offset), device=x.device)
    use_drop_mask = draw.reshape(()) < rate
    return x * torch.where(use_drop_mask, drop_mask, importance)
