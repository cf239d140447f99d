"""Stochastic depth as functions (Huang et al. 2016): whole samples of a residual branch dropped,
the residual add with it, and the per-block rates. :class:`dropkit.nn.DropPath` wraps them."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from dropkit import rng
from dropkit.functional._checks import (
    as_rate,
    check_dim,
    check_floating,
    check_offset,
    check_p,
    resolve_seed_step,
)
from dropkit.kernels import _ops

__all__ = ["depth_rates", "drop_path", "drop_path_add"]

DropPathMode = Literal["row", "batch"]


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
    if branch.shape != x.shape:
        raise ValueError(
            f"branch must have the shape of x {tuple(x.shape)}, got {tuple(branch.shape)}"
        )
    dropped = drop_path(
        branch, p, training, scale_by_keep=scale_by_keep, mode=mode, batch_dim=batch_dim,
        seed=seed, step=step, offset=offset,
    )  # fmt: skip
    return x + dropped


DepthRule = Literal["timm", "huang"]


def depth_rates(
    total: int,
    max_rate: float,
    schedule: Literal["linear", "uniform"] = "linear",
    *,
    rule: DepthRule = "timm",
) -> list[float]:
    r"""Drop rates of ``total`` residual blocks for stochastic depth: dropkit's one depth rule,
    shared by :func:`dropkit.schedules.linear_by_depth` and :func:`~dropkit.schedules.stagewise`.

    ``schedule="linear"`` rises linearly with depth. ``rule="timm"`` (default):
    :math:`p_l = p_{\max}\,l / (L - 1)`, :math:`l = 0..L-1`: block 0 keeps everything, the
    last drops at ``max_rate`` (timm's ``calculate_drop_path_rates``, torchvision, most ViT
    code; one block gets ``max_rate``). ``rule="huang"``: the paper's linear decay rule
    :math:`p_l = p_{\max}\,l / L`, :math:`l = 1..L` (the first block already drops at
    ``max_rate / L``). ``schedule="uniform"`` gives every block ``max_rate``.

    Example:
        >>> depth_rates(5, 0.2)
        [0.0, 0.05, 0.1, 0.15, 0.2]
        >>> depth_rates(4, 0.2, rule="huang")
        [0.05, 0.1, 0.15, 0.2]

    References:
        Huang, Sun, Liu, Sedra & Weinberger, "Deep Networks with Stochastic Depth", ECCV 2016.
    """
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise ValueError(f"total must be a positive int (number of blocks), got {total!r}")
    max_rate = check_p(max_rate, "max_rate")
    if schedule == "uniform":
        return [max_rate] * total
    if schedule != "linear":
        raise ValueError(f"schedule must be 'linear' or 'uniform', got {schedule!r}")
    if rule == "huang":
        return [round(max_rate * layer / total, 12) for layer in range(1, total + 1)]
    if rule != "timm":
        raise ValueError(f"rule must be 'timm' or 'huang', got {rule!r}")
    if total == 1:
        return [max_rate]
    return [round(max_rate * layer / (total - 1), 12) for layer in range(total)]
