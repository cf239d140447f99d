"""Patch dropout as a function (Liu et al. 2022): a random subset of a vision transformer's tokens
kept. :class:`dropkit.nn.PatchDropout` wraps it."""

from __future__ import annotations

import torch
from torch import Tensor

from dropkit import rng
from dropkit.functional._checks import (
    as_rate,
    check_floating,
    check_offset,
    resolve_seed_step,
)

__all__ = ["patch_dropout"]


def patch_dropout(
    x: Tensor,
    p: float | Tensor = 0.5,
    training: bool = True,
    *,
    num_prefix_tokens: int = 1,
    ordered: bool = False,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> tuple[Tensor, Tensor | None]:
    """Keep a random subset of ``max(1, int(L * (1 - p)))`` tokens per sample of ``(B, L, D)``
    (prefix tokens always kept, first); returns ``(tokens, keep_indices)``, ``keep_indices``
    ``None`` at inference (see :class:`dropkit.nn.PatchDropout`).

    Example:
        >>> y, idx = patch_dropout(torch.ones(2, 5, 3), 0.5, num_prefix_tokens=1, seed=0)
        >>> tuple(y.shape), tuple(idx.shape)
        ((2, 3, 3), (2, 2))
    """
    check_floating(x)
    if x.dim() < 2:
        raise ValueError(f"input must be (B, L, *), got shape {tuple(x.shape)}")
    if isinstance(num_prefix_tokens, bool) or not isinstance(num_prefix_tokens, int):
        raise TypeError(f"num_prefix_tokens must be an int, got {num_prefix_tokens!r}")
    if not 0 <= num_prefix_tokens <= x.shape[1]:
        raise ValueError(
            f"num_prefix_tokens must be in [0, {x.shape[1]}] (the sequence length), "
            f"got {num_prefix_tokens}"
        )
    rate = as_rate(p, x, allow_one=False)
    if not training:
        return x, None
    prefix, tokens = x[:, :num_prefix_tokens], x[:, num_prefix_tokens:]
    batch, length = int(tokens.shape[0]), int(tokens.shape[1])
    num_keep = max(1, int(length * (1.0 - float(rate))))
    seed_t, step_t = resolve_seed_step(seed, step, x.device)
    scores = rng.uniform(
        (batch, length), seed=seed_t, step=step_t, offset=check_offset(offset), device=x.device
    )
    keep_indices = torch.argsort(scores, dim=-1, stable=True)[:, :num_keep]
    if ordered:
        keep_indices = keep_indices.sort(dim=-1).values
    index = keep_indices.reshape(batch, num_keep, *([1] * (x.dim() - 2)))
    kept = tokens.gather(1, index.expand(batch, num_keep, *tokens.shape[2:]))
    return torch.cat((prefix, kept), dim=1), keep_indices
