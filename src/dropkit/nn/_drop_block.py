"""DropBlock modules (Ghiasi et al. 2018): :class:`DropBlock2d` and :class:`DropBlock3d`. Each
``forward`` is one call into :func:`dropkit.functional.drop_block`."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from dropkit import functional as F
from dropkit.functional._drop_block import BlockScale, check_block_size
from dropkit.nn._aliases import rate_alias
from dropkit.nn._base import DropoutModule

__all__ = ["DropBlock2d", "DropBlock3d"]

# Arguments timm's DropBlock2d still accepts (and ignores) for backward compatibility.
_TIMM_IGNORED_ARGS = frozenset({"batchwise", "fast"})


class _DropBlockNd(DropoutModule):
    spatial_dims = 2

    def __init__(
        self,
        drop_prob: float = 0.1,
        block_size: int | tuple[int, ...] = 7,
        gamma_scale: float = 1.0,
        with_noise: bool = False,
        inplace: bool = False,
        couple_channels: bool = True,
        scale_by_keep: bool = True,
        *,
        scale: BlockScale | None = None,
        seed: int | None = None,
        p: float | None = None,
        **kwargs: Any,
    ) -> None:
        p = rate_alias(type(self).__name__, drop_prob, 0.1, "p", p)
        unknown = set(kwargs) - _TIMM_IGNORED_ARGS
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unexpected keyword arguments {sorted(unknown)}"
            )
        super().__init__(p, inplace, seed=seed)
        self.block_size = check_block_size(block_size, self.spatial_dims)
        self.gamma_scale = float(gamma_scale)
        self.with_noise = bool(with_noise)
        self.couple_channels = bool(couple_channels)
        if scale is None:
            scale = "kept" if scale_by_keep else "none"
        if scale not in ("kept", "rate", "none"):
            raise ValueError(f"scale must be one of ('kept', 'rate', 'none'), got {scale!r}")
        self.scale: BlockScale = scale

    @property
    def drop_prob(self) -> float:
        """timm's name for the rate (same as ``p``)."""
        return self.p

    @drop_prob.setter
    def drop_prob(self, value: float) -> None:
        self.p = value

    def forward(self, x: Tensor) -> Tensor:
        return F.drop_block(
            x, self.rate, self.training, block_size=self.block_size,
            spatial_dims=self.spatial_dims, gamma_scale=self.gamma_scale, scale=self.scale,
            couple_channels=self.couple_channels, with_noise=self.with_noise, seed=self.seed,
            step=self.next_step(), inplace=self.inplace,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, block_size={self.block_size}, scale={self.scale!r}"


class DropBlock2d(_DropBlockNd):
    r"""DropBlock: drop contiguous square regions of a feature map (Ghiasi et al. 2018).

    Block seeds are Bernoulli(:math:`\gamma`) at the *valid* positions only — those where the
    whole ``block_size`` block fits inside the map — with the paper's eq. (1)

    .. math::
        \gamma = \text{gamma\_scale}\cdot\frac{p}{b_h b_w}\cdot
        \frac{H W}{(H - b_h + 1)(W - b_w + 1)},

    so the expected dropped fraction is close to ``p`` (exactly ``p`` while blocks do not
    overlap; overlaps make it slightly smaller). Each seed zeroes the block it anchors (odd and
    even sizes alike, no off-by-one at the borders). Kept units are scaled by
    ``numel / kept`` (``scale="kept"``, the paper's normalisation, over the whole batch), or by
    ``1 / (1 - p)`` (``scale="rate"``), or not at all (``scale="none"``, or timm's
    ``scale_by_keep=False``). Identity at inference.

    A block larger than the map is clipped to the map in that dimension (as timm does), so a
    seed then drops the whole extent; ``gamma`` uses the clipped block. :math:`\gamma` is
    clipped to 1 when ``p`` is so large that it would exceed it. The paper ramps ``p`` linearly
    from 0 during training: use :class:`dropkit.schedules.LinearRamp`, or set ``module.p``.

    Args:
        drop_prob: target drop rate ``p`` in [0, 1], in timm's name (this is a drop-in for
            timm's ``DropBlock2d``); dropkit's ``p=`` is accepted as a keyword alias, and
            ``module.p`` / ``module.drop_prob`` read and set it.
        block_size: block side (int) or ``(b_h, b_w)``; >= 1.
        gamma_scale: multiplies :math:`\gamma` (timm's argument; 1 is the paper).
        with_noise: fill dropped blocks with N(0, 1) noise instead of zeros (timm's
            experimental option).
        inplace: write the result into the input.
        couple_channels: one mask shared by all channels (the paper); False draws one per
            channel.
        scale_by_keep: timm's switch: True is ``scale="kept"``, False ``scale="none"``.
        scale: ``"kept"``, ``"rate"`` or ``"none"``; overrides ``scale_by_keep``.
        seed: 64-bit seed; drawn from PyTorch's default generator when omitted.
        **kwargs: timm's removed ``batchwise`` and ``fast`` are accepted and ignored.

    Shape:
        - Input: :math:`(N, C, H, W)`. Output: same.

    Example:
        >>> block = dropkit.nn.DropBlock2d(0.1, block_size=3, seed=0)
        >>> block(torch.ones(2, 4, 8, 8)).shape
        torch.Size([2, 4, 8, 8])

    References:
        Ghiasi, Lin & Le, "DropBlock: A regularization method for convolutional networks",
        NeurIPS 2018.
    """

    spatial_dims = 2


class DropBlock3d(_DropBlockNd):
    r"""DropBlock on volumes: the 3-D analogue of :class:`DropBlock2d`.

    :math:`\gamma = \text{gamma\_scale}\cdot p / (b_d b_h b_w) \cdot D H W /
    ((D - b_d + 1)(H - b_h + 1)(W - b_w + 1))`; seeds at valid positions; cubes dropped.

    Shape:
        - Input: :math:`(N, C, D, H, W)`. Output: same.

    Example:
        >>> dropkit.nn.DropBlock3d(0.1, block_size=2, seed=0)(torch.ones(1, 2, 4, 4, 4)).shape
        torch.Size([1, 2, 4, 4, 4])

    References:
        Ghiasi, Lin & Le, "DropBlock: A regularization method for convolutional networks",
        NeurIPS 2018.
    """

    spatial_dims = 3
