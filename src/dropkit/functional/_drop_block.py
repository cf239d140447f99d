"""DropBlock as a function (Ghiasi et al. 2018): contiguous blocks of a feature map dropped
together. :class:`dropkit.nn.DropBlock2d` wraps it; its docstring carries the full math, shapes
and references."""

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
    check_floating,
    check_offset,
    resolve_seed_step,
)
from dropkit.kernels.reference import compute_dtype, dropout_scale

__all__ = ["drop_block", "drop_block2d", "drop_block3d"]

BlockScale = Literal["kept", "rate", "none"]

_BLOCK_SCALES = ("kept", "rate", "none")


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
    rate = as_rate(p, x)
    if not training or (not isinstance(p, Tensor) and p == 0):
        return x
    spatial = tuple([int(s) for s in x.shape[2:]])
    block = tuple([min(b, s) for b, s in zip(requested, spatial, strict=True)])
    valid = [s - b + 1 for s, b in zip(spatial, block, strict=True)]
    channels = 1 if couple_channels else int(x.shape[1])
    seed_t, step_t = resolve_seed_step(seed, step, x.device)
    offset = check_offset(offset)
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
