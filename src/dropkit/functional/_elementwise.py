"""The elementwise dropout family as functions. Modules in :mod:`dropkit.nn` are thin wrappers;
their docstrings carry the full math, shapes and references."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from dropkit import _mc_context, rng
from dropkit.functional._checks import (
    as_rate,
    check_bool,
    check_dim,
    check_distinct_dims,
    check_draw_args,
    check_floating,
    check_noise_shape,
    check_offset,
    resolve_noise_shape,
    resolve_seed_step,
)
from dropkit.kernels import _ops
from dropkit.kernels.reference import compute_dtype, keep_probability

__all__ = [
    "alpha_dropout",
    "dropout",
    "feature_alpha_dropout",
    "gaussian_dropout",
    "locked_dropout",
    "spatial_dropout",
]

DropoutMode = Literal["inverted", "standard"]
_MODES = ("inverted", "standard")


def _result(x: Tensor, y: Tensor, inplace: bool) -> Tensor:
    return x.copy_(y) if inplace else y


def _check_out(out: object, x: Tensor, inplace: bool) -> Tensor:
    """Validate ``out=``: a tensor like ``x``, not combined with ``inplace``, no autograd."""
    if not isinstance(out, Tensor):
        raise TypeError(f"out must be a torch.Tensor or None, got {type(out).__name__}")
    if inplace:
        raise ValueError("out and inplace=True cannot be combined; pass one of them")
    if out.shape != x.shape or out.dtype != x.dtype or out.device != x.device:
        raise ValueError(
            f"out must have the input's shape, dtype and device {tuple(x.shape)}, {x.dtype}, "
            f"{x.device}; got {tuple(out.shape)}, {out.dtype}, {out.device}"
        )
    if torch.is_grad_enabled() and (x.requires_grad or out.requires_grad):
        raise RuntimeError(
            "dropout(): functions with out=... arguments don't support automatic "
            "differentiation, but one of the arguments requires grad"
        )
    return out


def _prepare(
    x: Tensor, seed: rng.SeedLike | None, step: rng.StepLike, offset: int
) -> tuple[Tensor, Tensor, int]:
    seed_t, step_t = resolve_seed_step(seed, step, x.device)
    return seed_t, step_t, check_offset(offset)


def dropout(
    input: Tensor,
    p: float | Tensor = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    mode: DropoutMode = "inverted",
    noise_shape: Sequence[int | None] | None = None,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
    out: Tensor | None = None,
) -> Tensor:
    """Zero each element of ``x`` with probability ``p`` (see :class:`dropkit.nn.Dropout`).

    ``mode="inverted"`` scales kept units by ``1 / (1 - p_eff)`` in training and is the identity
    at inference; ``mode="standard"`` does not scale in training and multiplies by ``1 - p_eff``
    at inference. ``noise_shape`` (Keras-style, ``None`` = the input's size) shares one mask
    over its size-1 dimensions. ``offset`` is the mask index of this tensor's first element in a
    larger logical tensor.

    ``out=`` writes the result into a preallocated tensor (no autograd, like PyTorch's ``out=``
    variants); ``inplace=True`` overwrites ``x``. Where autograd does not record (inference,
    ``torch.no_grad()``), neither allocates a temporary.

    The signature starts as ``torch.nn.functional.dropout(input, p, training, inplace)``
    (positionally or by keyword); ``p`` may be a Python number or a one-element tensor. As in
    torch, an inverted-mode call with ``training=False`` returns ``input`` unchanged whatever
    its dtype (an integer tensor too); everything else needs a floating-point input.

    Example:
        >>> y = dropout(torch.ones(8), 0.5, seed=0)
    """
    x = input
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    offset = check_draw_args(training, seed, step, offset)
    check_bool(inplace, "inplace")
    check_noise_shape(noise_shape)
    if not training and mode == "inverted" and isinstance(x, Tensor) and out is None:
        # torch passes any input through at inference (an integer tensor too); the arguments
        # are still validated whatever the mode
        as_rate(p, x)
        resolve_noise_shape(noise_shape, x.shape)
        return x
    check_floating(x)
    if out is not None:
        out = _check_out(out, x, inplace)
    rate = as_rate(p, x)
    mask_shape = resolve_noise_shape(noise_shape, x.shape)
    if (not isinstance(p, Tensor) and p == 0 and mode == "inverted") or (
        not training and mode == "inverted"
    ):
        return x if out is None else out.copy_(x)
    if not training:
        cd = compute_dtype(x.dtype)
        keep_prob = keep_probability(rng.threshold_tensor(rate), cd)
        y = (x.to(cd) * keep_prob).to(x.dtype)
        return _result(x, y, inplace) if out is None else out.copy_(y)
    seed_t, step_t, offset = _prepare(x, seed, step, offset)
    inverted = mode == "inverted"
    records_grad = torch.is_grad_enabled() and x.requires_grad
    if _mc_context.active():
        y = _mc_context.per_sample(
            x, step_t, mask_shape,
            lambda part, part_step, part_shape: _ops.dropout(
                part, rate, seed_t, part_step, offset, part_shape, inverted
            ),
        )  # fmt: skip
        return _result(x, y, inplace) if out is None else out.copy_(y)
    if out is not None or (inplace and not records_grad):
        target = x if out is None else out
        _ops.dropout_out(x, rate, seed_t, step_t, offset, mask_shape, inverted, target)
        return target
    y = _ops.dropout(x, rate, seed_t, step_t, offset, mask_shape, inverted)
    return _result(x, y, inplace)


def _channel_mask_shape(
    x: Tensor, keep_dims: Sequence[int | None], names: Sequence[str]
) -> list[int | None]:
    normalised = [
        None if d is None else check_dim(d, x.dim(), n)
        for d, n in zip(keep_dims, names, strict=True)
    ]
    # keep_dims is (batch_dim, channel_dim): the channel must not be the batch.
    check_distinct_dims(normalised[1], normalised[0], (names[1], names[0]))  # type: ignore[arg-type]
    kept = {d for d in normalised if d is not None}
    return [None if d in kept else 1 for d in range(x.dim())]


def spatial_dropout(
    x: Tensor,
    p: float | Tensor = 0.5,
    training: bool = True,
    *,
    channel_dim: int = 1,
    batch_dim: int | None = 0,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
    inplace: bool = False,
) -> Tensor:
    """Zero whole channels (see :class:`dropkit.nn.SpatialDropout2d`): one draw per
    ``(batch, channel)``, shared over every other dimension; any memory layout.

    ``channel_dim`` selects the channel axis (``-1`` for ``(N, L, C)``); ``batch_dim=None`` for
    unbatched input.

    Example:
        >>> y = spatial_dropout(torch.ones(2, 3, 4, 4), 0.5, seed=0)
    """
    check_floating(x)
    noise_shape = _channel_mask_shape(x, (batch_dim, channel_dim), ("batch_dim", "channel_dim"))
    return dropout(
        x,
        p,
        training,
        noise_shape=noise_shape,
        seed=seed,
        step=step,
        offset=offset,
        inplace=inplace,
    )


def locked_dropout(
    x: Tensor,
    p: float | Tensor = 0.5,
    training: bool = True,
    *,
    time_dim: int,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
    inplace: bool = False,
) -> Tensor:
    """Variational (locked) dropout: one mask for all time steps along ``time_dim`` (see
    :class:`dropkit.nn.LockedDropout`).

    Example:
        >>> y = locked_dropout(torch.ones(5, 2, 3), 0.5, time_dim=0, seed=0)
    """
    check_floating(x)
    time_dim = check_dim(time_dim, x.dim(), "time_dim")
    noise_shape: list[int | None] = [1 if d == time_dim else None for d in range(x.dim())]
    return dropout(
        x,
        p,
        training,
        noise_shape=noise_shape,
        seed=seed,
        step=step,
        offset=offset,
        inplace=inplace,
    )


def gaussian_dropout(
    x: Tensor,
    p: float | Tensor = 0.5,
    training: bool = True,
    *,
    noise_shape: Sequence[int | None] | None = None,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Tensor:
    """Multiply ``x`` by noise ``N(1, p / (1 - p))`` in training; identity at inference (see
    :class:`dropkit.nn.GaussianDropout`). ``p`` must lie in ``[0, 1)``.

    Example:
        >>> y = gaussian_dropout(torch.ones(8), 0.2, seed=0)
    """
    check_floating(x)
    offset = check_draw_args(training, seed, step, offset)
    rate = as_rate(p, x, allow_one=False)
    mask_shape = resolve_noise_shape(noise_shape, x.shape)
    if not training:
        return x
    seed_t, step_t, offset = _prepare(x, seed, step, offset)
    return _mc_context.per_sample(
        x, step_t, mask_shape,
        lambda part, part_step, part_shape: _ops.gaussian_dropout(
            part, rate, seed_t, part_step, offset, part_shape
        ),
    )  # fmt: skip


def alpha_dropout(
    input: Tensor,
    p: float | Tensor = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    noise_shape: Sequence[int | None] | None = None,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Tensor:
    """Alpha dropout for SELU networks: keeps mean and variance (see
    :class:`dropkit.nn.AlphaDropout`).

    Example:
        >>> y = alpha_dropout(torch.randn(8), 0.1, seed=0)
    """
    x = input
    offset = check_draw_args(training, seed, step, offset)
    check_bool(inplace, "inplace")
    check_noise_shape(noise_shape)
    if not training and isinstance(x, Tensor):
        # validated in eval too; the input passes through whatever its dtype (as torch)
        as_rate(p, x)
        resolve_noise_shape(noise_shape, x.shape)
        return x
    check_floating(x)
    rate = as_rate(p, x)
    mask_shape = resolve_noise_shape(noise_shape, x.shape)
    seed_t, step_t, offset = _prepare(x, seed, step, offset)
    y = _mc_context.per_sample(
        x, step_t, mask_shape,
        lambda part, part_step, part_shape: _ops.alpha_dropout(
            part, rate, seed_t, part_step, offset, part_shape
        ),
    )  # fmt: skip
    return _result(x, y, inplace)


def feature_alpha_dropout(
    input: Tensor,
    p: float | Tensor = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    channel_dim: int = 1,
    batch_dim: int | None = 0,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Tensor:
    """Alpha dropout of whole channels (see :class:`dropkit.nn.FeatureAlphaDropout`).

    Example:
        >>> y = feature_alpha_dropout(torch.randn(2, 3, 4), 0.1, seed=0)
    """
    x = input
    check_draw_args(training, seed, step, offset)
    check_bool(inplace, "inplace")
    if not training and isinstance(x, Tensor):
        # validated in eval too; the input passes through whatever its dtype (as torch)
        as_rate(p, x)
        _channel_mask_shape(x, (batch_dim, channel_dim), ("batch_dim", "channel_dim"))
        return x
    check_floating(x)
    noise_shape = _channel_mask_shape(x, (batch_dim, channel_dim), ("batch_dim", "channel_dim"))
    return alpha_dropout(
        x,
        p,
        training,
        noise_shape=noise_shape,
        seed=seed,
        step=step,
        offset=offset,
        inplace=inplace,
    )
