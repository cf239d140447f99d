"""Attention dropout as functions: dropout of attention probabilities, DropHead and DropKey.
Modules in :mod:`dropkit.nn` wrap them; their docstrings carry the math and references."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from dropkit import rng
from dropkit.functional._checks import (
    as_rate,
    check_dim,
    check_draw_args,
    check_floating,
    check_offset,
    resolve_seed_step,
)
from dropkit.kernels import _ops
from dropkit.kernels._spec import compute_dtype, dropout_scale

__all__ = ["attention", "drop_head", "drop_key"]

HeadScale = Literal["kept", "rate"]


def _check_attn_mask(attn_mask: Tensor, scores_shape: tuple[int, ...]) -> None:
    try:
        torch.broadcast_shapes(tuple(attn_mask.shape), scores_shape)
    except RuntimeError:
        raise ValueError(
            f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to the attention "
            f"scores' shape {scores_shape} (..., L, S)"
        ) from None
    if attn_mask.dim() > len(scores_shape):
        raise ValueError(
            f"attn_mask has {attn_mask.dim()} dims, more than the scores' {len(scores_shape)}"
        )


def attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    p: float | Tensor = 0.0,
    training: bool = True,
    *,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    use_sdpa: bool = False,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Tensor:
    """Scaled dot-product attention with dropout on the attention probabilities (see
    :class:`dropkit.nn.AttentionDropout`).

    ``softmax(q k^T * scale + mask) `` with inverted dropout (counter-based, no stored mask),
    times ``v``. ``attn_mask`` follows ``scaled_dot_product_attention``: boolean (True = may
    attend) or additive float, broadcastable to ``(..., L, S)``. ``use_sdpa=True`` calls
    PyTorch's fused ``scaled_dot_product_attention`` with its own dropout: fast, but its mask
    comes from PyTorch's generator, not from ``seed``/``step``.

    Example:
        >>> q = torch.randn(1, 2, 4, 8)
        >>> y = attention(q, q, q, 0.1, seed=0)
    """
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        check_floating(tensor, name)
    offset = check_draw_args(training, seed, step, offset)
    if query.dim() < 2 or key.dim() != query.dim() or value.dim() != query.dim():
        raise ValueError(
            f"query, key and value must have the same number (>= 2) of dims (..., L, E), got "
            f"{tuple(query.shape)}, {tuple(key.shape)} and {tuple(value.shape)}"
        )
    scores_shape = (*torch.broadcast_shapes(query.shape[:-2], key.shape[:-2]),
                    query.shape[-2], key.shape[-2])  # fmt: skip
    if attn_mask is not None:
        _check_attn_mask(attn_mask, tuple([int(s) for s in scores_shape]))
        if is_causal:
            raise ValueError("attn_mask and is_causal=True are exclusive; pass one of them")
    rate = as_rate(p, query)
    if use_sdpa:
        return torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=attn_mask, is_causal=is_causal,
            dropout_p=float(rate) if training else 0.0, scale=scale,
        )  # fmt: skip
    factor = scale if scale is not None else 1.0 / math.sqrt(query.shape[-1])
    scores = torch.matmul(query, key.transpose(-2, -1)) * factor
    if is_causal:
        length, source = scores.shape[-2], scores.shape[-1]
        allowed = torch.ones(length, source, dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~allowed, float("-inf"))
    elif attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    probs = torch.softmax(scores, dim=-1)
    if training and (isinstance(p, Tensor) or p > 0):
        seed_t, step_t = resolve_seed_step(seed, step, query.device)
        probs = _ops.dropout(
            probs, rate, seed_t, step_t, check_offset(offset), list(probs.shape), True
        )
    return torch.matmul(probs, value)


def drop_head(
    x: Tensor,
    p: float | Tensor = 0.1,
    training: bool = True,
    *,
    head_dim: int = 1,
    scale: HeadScale = "kept",
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Tensor:
    """DropHead: zero whole attention heads per sample of ``(B, H, ...)`` (see
    :class:`dropkit.nn.DropHead`); ``scale="kept"`` rescales each sample by
    ``H / kept heads`` (the paper), ``"rate"`` by ``1 / (1 - p)``.

    Example:
        >>> y = drop_head(torch.ones(2, 4, 3, 5), 0.5, seed=0)
    """
    check_floating(x)
    if x.dim() < 2:
        raise ValueError(f"input must be (B, H, ...) with a head dim, got {tuple(x.shape)}")
    if check_dim(head_dim, x.dim(), "head_dim") == 0:
        raise ValueError(f"head_dim must not be the batch dim 0, got {head_dim}")
    if scale not in ("kept", "rate"):
        raise ValueError(f"scale must be 'kept' or 'rate', got {scale!r}")
    head_dim %= x.dim()
    offset = check_draw_args(training, seed, step, offset)
    rate = as_rate(p, x)
    if not training or (not isinstance(p, Tensor) and p == 0):
        return x
    batch, heads = int(x.shape[0]), int(x.shape[head_dim])
    seed_t, step_t = resolve_seed_step(seed, step, x.device)
    keep = _ops.keep_mask(rate, seed_t, step_t, check_offset(offset), [batch, heads])
    cd = compute_dtype(x.dtype)
    if scale == "kept":
        kept_heads = keep.sum(dim=1, keepdim=True).to(cd)
        factor = torch.where(kept_heads > 0, heads / kept_heads.clamp_min(1), 0.0)
    else:
        factor = dropout_scale(rng.threshold_tensor(rate), cd).expand(batch, 1)
    shape = [1] * x.dim()
    shape[0], shape[head_dim] = batch, heads
    multiplier = (keep.to(cd) * factor).reshape(shape).to(x.dtype)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    return torch.where(keep.reshape(shape), x * multiplier, zero)


def drop_key(
    scores: Tensor,
    p: float | Tensor = 0.1,
    training: bool = True,
    *,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Tensor:
    """DropKey: before the softmax, each query ignores each key with probability ``p``
    (see :class:`dropkit.nn.DropKey`). Dropped logits become the dtype's lowest finite value,
    so the softmax renormalises over the kept keys; no rescaling; identity at inference.

    Example:
        >>> logits = drop_key(torch.randn(1, 2, 4, 4), 0.2, seed=0)
    """
    check_floating(scores, "scores")
    if scores.dim() < 2:
        raise ValueError(f"scores must be (..., L, S), got shape {tuple(scores.shape)}")
    offset = check_draw_args(training, seed, step, offset)
    rate = as_rate(p, scores)
    if not training or (not isinstance(p, Tensor) and p == 0):
        return scores
    seed_t, step_t = resolve_seed_step(seed, step, scores.device)
    # The keep mask is regenerated in backward from (seed, step, offset): none is saved.
    return _ops.drop_key(scores, rate, seed_t, step_t, check_offset(offset))
