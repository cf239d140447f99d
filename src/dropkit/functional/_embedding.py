"""Embedding dropout as a function (Gal & Ghahramani 2016): whole rows (words) of the embedding
matrix dropped. :class:`dropkit.nn.EmbeddingDropout` wraps it."""

from __future__ import annotations

import torch
import torch.nn.functional as torch_f
from torch import Tensor

from dropkit import rng
from dropkit.functional._checks import (
    as_rate,
    check_floating,
    check_offset,
    resolve_seed_step,
)
from dropkit.kernels.reference import compute_dtype, dropout_scale

__all__ = ["embedding_dropout"]


def embedding_dropout(
    input: Tensor,
    weight: Tensor,
    p: float | Tensor = 0.1,
    training: bool = True,
    *,
    padding_idx: int | None = None,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Tensor:
    """Embedding lookup with whole rows (words) of ``weight`` dropped (see
    :class:`dropkit.nn.EmbeddingDropout`); the weight itself is never modified.

    Example:
        >>> y = embedding_dropout(torch.tensor([[0, 1, 1]]), torch.ones(3, 2), 0.5, seed=0)
    """
    if not isinstance(input, Tensor) or input.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"input must be an int64 or int32 tensor of indices, got {input!r}")
    check_floating(weight, "weight")
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (num_embeddings, dim), got {tuple(weight.shape)}")
    num_embeddings = int(weight.shape[0])
    if padding_idx is not None:
        if not -num_embeddings <= padding_idx < num_embeddings:
            raise ValueError(
                f"padding_idx must be in [{-num_embeddings}, {num_embeddings - 1}], "
                f"got {padding_idx}"
            )
        padding_idx %= num_embeddings
    rate = as_rate(p, weight)
    embedded = torch_f.embedding(input, weight, padding_idx)
    if not training or (not isinstance(p, Tensor) and p == 0):
        return embedded
    # One draw per vocabulary row (element index = row index): the same word is dropped
    # everywhere in the batch, as dropping rows of the matrix does, without building it.
    seed_t, step_t = resolve_seed_step(seed, step, weight.device)
    row_keep = rng.keep_mask(
        (num_embeddings,), rate, seed=seed_t, step=step_t, offset=check_offset(offset),
        device=weight.device,
    )  # fmt: skip
    cd = compute_dtype(weight.dtype)
    factor = dropout_scale(rng.threshold_tensor(rate), cd).expand(num_embeddings)
    if padding_idx is not None:
        # The padding row is neither dropped nor rescaled (and gets no gradient).
        row_keep[padding_idx] = True
        factor = factor.clone()
        factor[padding_idx] = 1
    token_keep = row_keep[input].unsqueeze(-1)
    token_factor = factor[input].unsqueeze(-1)
    kept = (embedded.to(cd) * token_factor).to(embedded.dtype)
    return torch.where(token_keep, kept, torch.zeros((), dtype=kept.dtype, device=kept.device))
