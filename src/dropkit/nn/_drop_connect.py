"""DropConnect modules (Wan et al. 2013): :class:`DropConnectLinear` and the 1-, 2- and 3-D
convolutions. Each ``forward`` is one call into :mod:`dropkit.functional`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _ntuple

from dropkit import functional as F
from dropkit.functional._drop_connect import DropConnectInference, check_inference
from dropkit.nn._base import DropoutModule

__all__ = ["DropConnectConv1d", "DropConnectConv2d", "DropConnectConv3d", "DropConnectLinear"]


class DropConnectLinear(DropoutModule):
    r"""A linear layer with DropConnect: each weight is dropped independently (Wan et al. 2013).

    Training: :math:`y = a\big(x\,(M \odot W)^\top / (1 - p_{\mathrm{eff}}) + b\big)`,
    :math:`M_{ij} \sim \mathrm{Bernoulli}(1 - p)`, a fresh mask per call; the mask is applied to
    the real parameter, so gradients reach ``weight``. Inference:

    * ``inference="mean"``: :math:`a(x W^\top + b)` (the mean network);
    * ``inference="gaussian"`` (the paper's sec. 3): moment matching — the pre-activation is
      :math:`u \sim N(x W^\top + b,\; \tfrac{p}{1-p} (x \odot x)(W \odot W)^\top)`, and the output
      is the mean of :math:`a(u)` over ``num_samples`` counter-based draws.

    Deliberate differences from the paper: one mask per call shared by the mini-batch (the paper
    draws one per example), inverted scaling (so the mean network needs no rescaling), and the
    bias is not dropped.

    Args:
        in_features, out_features, bias: as ``torch.nn.Linear``.
        p: drop rate of each weight in [0, 1].
        activation: applied inside, so that the Gaussian inference averages :math:`a(u)`.
        inference: ``"mean"`` or ``"gaussian"``.
        num_samples: samples for the Gaussian inference.
        seed: 64-bit seed.

    Shape:
        - Input: :math:`(*, H_{in})`. Output: :math:`(*, H_{out})`.

    Example:
        >>> layer = dropkit.nn.DropConnectLinear(4, 3, p=0.5, seed=0)
        >>> layer(torch.ones(2, 4)).shape
        torch.Size([2, 3])

    References:
        Wan, Zeiler, Zhang, LeCun & Fergus, "Regularization of Neural Networks using
        DropConnect", ICML 2013.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        p: float = 0.5,
        *,
        activation: Callable[[Tensor], Tensor] | None = None,
        inference: DropConnectInference = "mean",
        num_samples: int = 16,
        seed: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(p, seed=seed)
        template = nn.Linear(in_features, out_features, bias, device=device, dtype=dtype)
        self.in_features, self.out_features = in_features, out_features
        self.weight = template.weight
        self.bias = template.bias
        check_inference(inference, num_samples)
        self.activation = activation
        self.inference: DropConnectInference = inference
        self.num_samples = num_samples

    @classmethod
    def from_linear(cls, linear: nn.Linear, p: float = 0.5, **kwargs: Any) -> DropConnectLinear:
        """A DropConnect layer sharing ``linear``'s weight and bias parameters."""
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, p, **kwargs)
        layer.weight, layer.bias = linear.weight, linear.bias
        return layer

    def forward(self, x: Tensor) -> Tensor:
        return F.drop_connect_linear(
            x, self.weight, self.bias, self.rate, self.training, activation=self.activation,
            inference=self.inference, num_samples=self.num_samples, seed=self.seed,
            step=self.next_step(),
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, in_features={self.in_features}, "
            f"out_features={self.out_features}, bias={self.bias is not None}, "
            f"inference={self.inference!r}"
        )


class _DropConnectConvNd(DropoutModule):
    spatial_dims = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] = 1,
        padding: int | tuple[int, ...] | str = 0,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        bias: bool = True,
        p: float = 0.5,
        *,
        activation: Callable[[Tensor], Tensor] | None = None,
        inference: DropConnectInference = "mean",
        num_samples: int = 16,
        seed: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(p, seed=seed)
        conv_type: Any = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[self.spatial_dims - 1]
        template = conv_type(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            device=device, dtype=dtype,
        )  # fmt: skip
        self.weight = template.weight
        self.bias = template.bias
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _ntuple(self.spatial_dims)(kernel_size)
        self.stride = _ntuple(self.spatial_dims)(stride)
        self.padding = padding if isinstance(padding, str) else _ntuple(self.spatial_dims)(padding)
        self.dilation = _ntuple(self.spatial_dims)(dilation)
        self.groups = groups
        check_inference(inference, num_samples)
        self.activation = activation
        self.inference: DropConnectInference = inference
        self.num_samples = num_samples

    def forward(self, x: Tensor) -> Tensor:
        return F.drop_connect_conv(
            x, self.weight, self.bias, self.rate, self.training, stride=self.stride,
            padding=self.padding, dilation=self.dilation, groups=self.groups,
            activation=self.activation, inference=self.inference, num_samples=self.num_samples,
            seed=self.seed, step=self.next_step(),
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, {self.in_channels}, {self.out_channels}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, inference={self.inference!r}"
        )


class DropConnectConv1d(_DropConnectConvNd):
    r"""``torch.nn.Conv1d`` with DropConnect on its kernel; see :class:`DropConnectConv2d`.

    Example:
        >>> dropkit.nn.DropConnectConv1d(2, 3, 3, seed=0)(torch.ones(1, 2, 5)).shape
        torch.Size([1, 3, 3])

    References:
        Wan et al., "Regularization of Neural Networks using DropConnect", ICML 2013.
    """

    spatial_dims = 1


class DropConnectConv2d(_DropConnectConvNd):
    r"""``torch.nn.Conv2d`` with DropConnect: each kernel weight dropped per call (Wan 2013).

    Training: :math:`y = a(\mathrm{conv}(x, M \odot W) / (1 - p_{\mathrm{eff}}) + b)`; gradients
    reach ``weight``. Inference ``"mean"``: :math:`a(\mathrm{conv}(x, W) + b)`; ``"gaussian"``:
    the mean of :math:`a(u)`, :math:`u \sim N(\mathrm{conv}(x, W) + b,
    \tfrac{p}{1-p}\mathrm{conv}(x^2, W^2))`, over ``num_samples`` draws. Arguments after
    ``bias`` as :class:`DropConnectLinear`.

    Shape:
        - Input: :math:`(N, C_{in}, H, W)`. Output: :math:`(N, C_{out}, H', W')`.

    Example:
        >>> dropkit.nn.DropConnectConv2d(2, 3, 3, padding=1, seed=0)(torch.ones(1, 2, 5, 5)).shape
        torch.Size([1, 3, 5, 5])

    References:
        Wan, Zeiler, Zhang, LeCun & Fergus, "Regularization of Neural Networks using
        DropConnect", ICML 2013.
    """

    spatial_dims = 2


class DropConnectConv3d(_DropConnectConvNd):
    r"""``torch.nn.Conv3d`` with DropConnect on its kernel; see :class:`DropConnectConv2d`.

    Example:
        >>> dropkit.nn.DropConnectConv3d(1, 1, 2, seed=0)(torch.ones(1, 1, 3, 3, 3)).shape
        torch.Size([1, 1, 2, 2, 2])

    References:
        Wan et al., "Regularization of Neural Networks using DropConnect", ICML 2013.
    """

    spatial_dims = 3
