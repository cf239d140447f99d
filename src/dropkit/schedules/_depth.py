"""Depth schedules: a rate per block for stochastic depth (deeper blocks drop more)."""

from __future__ import annotations

from collections.abc import Sequence

from dropkit.functional._checks import check_p
from dropkit.functional._drop_path import DepthRule, depth_rates

__all__ = ["linear_by_depth", "stagewise"]


def linear_by_depth(max_rate: float, num_blocks: int, *, rule: DepthRule = "timm") -> list[float]:
    r"""Rates rising linearly with depth: :math:`p_l = p_{\max}\,l / (L - 1)`, :math:`l = 0..L-1`.

    The first block keeps everything and the last drops at ``max_rate`` (the "linear decay
    rule" of Huang et al., in timm's convention where block 0 has rate 0). The same rule as
    :func:`dropkit.functional.depth_rates`, which computes it; ``rule="huang"`` gives the
    paper's :math:`p_l = p_{\max}\,l / L`, :math:`l = 1..L`.

    Example:
        >>> linear_by_depth(0.3, 4)
        [0.0, 0.1, 0.2, 0.3]

    References:
        Huang, Sun, Liu, Sedra & Weinberger, "Deep Networks with Stochastic Depth", ECCV 2016.
    """
    max_rate = check_p(max_rate, "max_rate")
    if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 1:
        raise ValueError(f"num_blocks must be a positive int, got {num_blocks!r}")
    return depth_rates(num_blocks, max_rate, rule=rule)


def stagewise(
    max_rate: float, stage_depths: Sequence[int], *, per_block: bool = True
) -> list[list[float]]:
    r"""Depth rates grouped by stage, for hierarchical networks (ResNet, ConvNeXt, Swin).

    ``per_block=True``: the linear rule over all :math:`L = \sum_s d_s` blocks, split into
    stages. ``per_block=False``: one rate per stage, :math:`p_s = p_{\max}\,s / (S - 1)`, shared
    by all blocks of stage :math:`s`.

    Example:
        >>> stagewise(0.3, [1, 3])
        [[0.0], [0.1, 0.2, 0.3]]
        >>> stagewise(0.3, [1, 3], per_block=False)
        [[0.0], [0.3, 0.3, 0.3]]
    """
    depths = list(stage_depths)
    if not depths or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in depths):
        raise ValueError(f"stage_depths must be a non-empty list of positive ints, got {depths}")
    if per_block:
        flat = linear_by_depth(max_rate, sum(depths))
        stages, start = [], 0
        for depth in depths:
            stages.append(flat[start : start + depth])
            start += depth
        return stages
    per_stage = linear_by_depth(max_rate, len(depths))
    return [[rate] * depth for rate, depth in zip(per_stage, depths, strict=True)]
