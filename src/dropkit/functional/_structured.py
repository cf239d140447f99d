"""Structured dropout as functions: DropBlock, DropPath, DropConnect, embedding dropout, ADL and
patch dropout. Modules in :mod:`dropkit.nn` wrap them; their docstrings carry the full math,
shapes and references."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as torch_f
from torch import Tensor

from dropkit import rng
from dropkit.functional._checks import (
    as_rate,
    check_bool,
    check_dim,
    check_draw_args,
    check_floating,
    check_offset,
    check_p,
    check_positive_finite,
    resolve_seed_step,
)
from dropkit.kernels import _ops
from dropkit.kernels.reference import compute_dtype, dropout_scale, keep_probability

__all__ = [
    "adl",
    "depth_rates",
    "drop_block",
    "drop_block2d",
    "drop_block3d",
    "drop_connect_conv",
    "drop_connect_linear",
    "drop_path",
    "drop_path_add",
    "embedding_dropout",
    "patch_dropout",
]

BlockScale = Literal["kept", "rate", "none"]
_BLOCK_SCALES = ("kept", "rate", "none")
DropPathMode = Literal["row", "batch"]
DropConnectInference = Literal["mean", "gaussian"]


def check_block_size(block_size: object, spatial_dims: int) -> tuple[int, ...]:
    """``block_size`` as one positive int per spatial dimension; raise naming it otherwise."""
    raw = block_size if isinstance(block_size, (tuple, list)) else (block_size,) * spatial_dims
    sizes = [s for s in raw if isinstance(s, int) and not isinstance(s, bool)]
    if len(sizes) != len(raw) or len(sizes) != spatial_dims:
        raise TypeError(
            f"block_size must be an int or a tuple of {spatial_dims} ints, got {block_size!r}"
        )
    if min(sizes) < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size!r}")
    return tuple(sizes)


def _drop_block_gamma(
    rate: Tensor, spatial: tuple[int, ...], block: tuple[int, ...], gamma_scale: float
) -> Tensor:
    # Ghiasi et al., eq. (1): gamma = p / block_area * feat_area / valid_area, with the block
    # clipped to the map so that the valid area is never empty.
    feat_area = math.prod(spatial)
    block_area = math.prod(block)
    valid_area = math.prod([s - b + 1 for s, b in zip(spatial, block, strict=True)])
    factor = gamma_scale * feat_area / (block_area * valid_area)
    return torch.clamp(rate.to(torch.float64) * factor, 0.0, 1.0).to(torch.float32)


def drop_block(
    x: Tensor,
    p: float | Tensor = 0.1,
    training: bool = True,
    *,
    block_size: int | tuple[int, ...] = 7,
    spatial_dims: int = 2,
    gamma_scale: float = 1.0,
    scale: BlockScale = "kept",
    couple_channels: bool = True,
    with_noise: bool = False,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
    inplace: bool = False,
) -> Tensor:
    """DropBlock on the last ``spatial_dims`` dimensions of ``(N, C, *spatial)`` (see
    :class:`dropkit.nn.DropBlock2d`).

    Block seeds are drawn only at positions where the whole block fits (the "valid" region),
    with the paper's rate ``gamma = gamma_scale * p * feat_area / (block_area * valid_area)``;
    each seed zeroes a ``block_size`` block. A block larger than the map is clipped to the map.
    ``scale="kept"`` multiplies by ``numel / kept`` (the paper), ``"rate"`` by ``1 / (1 - p)``,
    ``"none"`` leaves kept units as they are.

    Example:
        >>> y = drop_block(torch.ones(2, 3, 8, 8), 0.2, block_size=3, seed=0)
    """
    check_floating(x)
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}")
    if x.dim() != spatial_dims + 2:
        raise ValueError(
            f"input must be {spatial_dims + 2}-D (N, C, *spatial) for DropBlock with "
            f"spatial_dims={spatial_dims}, got shape {tuple(x.shape)}"
        )
    if scale not in _BLOCK_SCALES:
        raise ValueError(f"scale must be one of {_BLOCK_SCALES}, got {scale!r}")
    requested = check_block_size(block_size, spatial_dims)
    offset = check_draw_args(training, seed, step, offset)
    gamma_scale = check_positive_finite(gamma_scale, "gamma_scale")
    check_bool(inplace, "inplace")
    if min(x.shape[2:]) < 1:
        raise ValueError(
            f"input must have spatial sizes >= 1 for DropBlock, got shape {tuple(x.shape)}"
        )
    rate = as_rate(p, x)
    if not training or (not isinstance(p, Tensor) and p == 0):
        return x
    spatial = tuple([int(s) for s in x.shape[2:]])
    block = tuple([min(b, s) for b, s in zip(requested, spatial, strict=True)])
    valid = [s - b + 1 for s, b in zip(spatial, block, strict=True)]
    channels = 1 if couple_channels else int(x.shape[1])
    seed_t, step_t = resolve_seed_step(seed, step, x.device)
    seed_shape = [int(x.shape[0]), channels, *valid]
    gamma = _drop_block_gamma(rate, spatial, block, gamma_scale)
    uniforms = rng.uniform(seed_shape, seed=seed_t, step=step_t, offset=offset, device=x.device)
    seeds = (uniforms < gamma).to(torch.float32)
    # A seed at valid position i drops [i, i + block): a max-pool over the seeds padded by
    # block - 1 on both sides has exactly the input's size, for odd and even blocks alike.
    padding: list[int] = []
    for b in reversed(block):
        padding += [b - 1, b - 1]
    pool: Callable[..., Tensor] = (torch_f.max_pool1d, torch_f.max_pool2d, torch_f.max_pool3d)[
        spatial_dims - 1
    ]
    dropped = pool(torch_f.pad(seeds, padding), kernel_size=block, stride=1)
    keep = dropped == 0
    cd = compute_dtype(x.dtype)
    if scale == "kept":
        factor = keep.numel() / keep.sum().clamp_min(1).to(cd)
    elif scale == "rate":
        factor = dropout_scale(rng.threshold_tensor(rate), cd)
    else:
        factor = torch.ones((), dtype=cd, device=x.device)
    kept = (x.to(cd) * factor).to(x.dtype)
    if with_noise:
        # timm's experimental option: Gaussian noise instead of zeros in the dropped blocks.
        noise_offset = offset + math.prod(seed_shape)
        noise = rng.normal(x.shape, seed=seed_t, step=step_t, offset=noise_offset, device=x.device)
        fill = noise.to(x.dtype)
    else:
        fill = torch.zeros((), dtype=x.dtype, device=x.device)
    y = torch.where(keep, kept, fill)
    return x.copy_(y) if inplace else y


def drop_block2d(
    x: Tensor,
    p: float | Tensor = 0.1,
    training: bool = True,
    *,
    block_size: int | tuple[int, int] = 7,
    gamma_scale: float = 1.0,
    scale: BlockScale = "kept",
    couple_channels: bool = True,
    with_noise: bool = False,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
    inplace: bool = False,
) -> Tensor:
    """DropBlock on ``(N, C, H, W)``; see :func:`drop_block` and :class:`dropkit.nn.DropBlock2d`.

    Example:
        >>> y = drop_block2d(torch.ones(1, 1, 6, 5), 0.2, block_size=2, seed=0)
    """
    return drop_block(
        x, p, training, block_size=block_size, spatial_dims=2, gamma_scale=gamma_scale,
        scale=scale, couple_channels=couple_channels, with_noise=with_noise, seed=seed,
        step=step, offset=offset, inplace=inplace,
    )  # fmt: skip


def drop_block3d(
    x: Tensor,
    p: float | Tensor = 0.1,
    training: bool = True,
    *,
    block_size: int | tuple[int, int, int] = 7,
    gamma_scale: float = 1.0,
    scale: BlockScale = "kept",
    couple_channels: bool = True,
    with_noise: bool = False,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
    inplace: bool = False,
) -> Tensor:
    """DropBlock on ``(N, C, D, H, W)``; see :func:`drop_block` and
    :class:`dropkit.nn.DropBlock3d`.

    Example:
        >>> y = drop_block3d(torch.ones(1, 1, 4, 4, 4), 0.2, block_size=2, seed=0)
    """
    return drop_block(
        x, p, training, block_size=block_size, spatial_dims=3, gamma_scale=gamma_scale,
        scale=scale, couple_channels=couple_channels, with_noise=with_noise, seed=seed,
        step=step, offset=offset, inplace=inplace,
    )  # fmt: skip


def drop_path(
    x: Tensor,
    p: float | Tensor = 0.0,
    training: bool = True,
    *,
    scale_by_keep: bool = True,
    mode: DropPathMode = "row",
    batch_dim: int = 0,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Tensor:
    """Stochastic depth: zero whole samples (``mode="row"``) or the whole batch
    (``mode="batch"``) of a residual branch (see :class:`dropkit.nn.DropPath`).

    Example:
        >>> y = drop_path(torch.ones(4, 3), 0.5, seed=0)
    """
    check_floating(x)
    if x.dim() == 0:
        raise ValueError("input of drop_path must have a batch dimension, got a 0-d tensor")
    if mode not in ("row", "batch"):
        raise ValueError(f"mode must be 'row' or 'batch', got {mode!r}")
    batch_dim = check_dim(batch_dim, x.dim(), "batch_dim")
    offset = check_draw_args(training, seed, step, offset)
    rate = as_rate(p, x)
    if not training or (not isinstance(p, Tensor) and p == 0):
        return x
    mask_shape = [1] * x.dim()
    if mode == "row":
        mask_shape[batch_dim] = int(x.shape[batch_dim])
    seed_t, step_t = resolve_seed_step(seed, step, x.device)
    return _ops.dropout(x, rate, seed_t, step_t, check_offset(offset), mask_shape, scale_by_keep)


def drop_path_add(
    x: Tensor,
    branch: Tensor,
    p: float | Tensor = 0.0,
    training: bool = True,
    *,
    scale_by_keep: bool = True,
    mode: DropPathMode = "row",
    batch_dim: int = 0,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Tensor:
    """``x + drop_path(branch, p)``: a residual add with stochastic depth on the branch.

    This is the reference implementation (a separate add); a fused GPU kernel belongs to the
    kernels package and must give the same bits.

    Example:
        >>> y = drop_path_add(torch.ones(4, 3), torch.ones(4, 3), 0.5, seed=0)
    """
    check_floating(x)
    check_floating(branch, "branch")
    if branch.shape != x.shape:
        raise ValueError(
            f"branch must have the shape of x {tuple(x.shape)}, got {tuple(branch.shape)}"
        )
    dropped = drop_path(
        branch, p, training, scale_by_keep=scale_by_keep, mode=mode, batch_dim=batch_dim,
        seed=seed, step=step, offset=offset,
    )  # fmt: skip
    return x + dropped


def depth_rates(
    total: int, max_rate: float, schedule: Literal["linear", "uniform"] = "linear"
) -> list[float]:
    """Drop rates of ``total`` residual blocks for stochastic depth.

    ``"linear"`` is Huang et al.'s linear decay rule ``p_l = l / L * p_L`` for ``l = 1..L``
    (the first block has ``max_rate / L``, the last ``max_rate``); timm's
    ``calculate_drop_path_rates`` instead starts at 0. ``"uniform"`` gives every block
    ``max_rate``.

    Example:
        >>> depth_rates(4, 0.2)
        [0.05, 0.1, 0.15000000000000002, 0.2]
    """
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise ValueError(f"total must be a positive int (number of blocks), got {total!r}")
    max_rate = check_p(max_rate, "max_rate")
    if schedule == "linear":
        return [max_rate * layer / total for layer in range(1, total + 1)]
    if schedule == "uniform":
        return [max_rate] * total
    raise ValueError(f"schedule must be 'linear' or 'uniform', got {schedule!r}")


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
    offset = check_draw_args(training, seed, step, offset)
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
    check_floating(weight, "weight")
    if weight.dim() not in (3, 4, 5):
        raise ValueError(f"weight must be 3-, 4- or 5-D (a conv weight), got {weight.dim()}-D")
    conv: Callable[..., Tensor] = (torch_f.conv1d, torch_f.conv2d, torch_f.conv3d)[weight.dim() - 3]

    def layer(inp: Tensor, w: Tensor, with_bias: bool) -> Tensor:
        return conv(inp, w, bias if with_bias else None, stride, padding, dilation, groups)

    return _drop_connect(
        x, weight, p, training, layer, activation, inference, num_samples, seed, step, offset
    )


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
    offset = check_draw_args(training, seed, step, offset)
    if padding_idx is not None:
        if isinstance(padding_idx, bool) or not isinstance(padding_idx, int):
            raise TypeError(f"padding_idx must be an int or None, got {padding_idx!r}")
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
    offset = check_draw_args(training, seed, step, offset)
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
    offset = check_draw_args(training, seed, step, offset)
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
