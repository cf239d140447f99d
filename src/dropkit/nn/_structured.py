"""Modules of structured dropout: DropBlock, DropPath, DropConnect, embedding dropout, ADL and
patch dropout, and a linear rate ramp. Each ``forward`` is one call into
:mod:`dropkit.functional`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _ntuple

from dropkit import functional as F
from dropkit.functional._checks import (
    check_int,
    check_nonnegative_int,
    check_p,
    check_positive_finite,
)
from dropkit.functional._structured import (
    BlockScale,
    DropConnectInference,
    DropPathMode,
    check_block_size,
    check_inference,
)
from dropkit.nn._base import DropoutModule

__all__ = [
    "ADL",
    "DropBlock2d",
    "DropBlock3d",
    "DropConnectConv1d",
    "DropConnectConv2d",
    "DropConnectConv3d",
    "DropConnectLinear",
    "DropPath",
    "EmbeddingDropout",
    "LinearRamp",
    "PatchDropout",
]

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
        **kwargs: Any,
    ) -> None:
        unknown = set(kwargs) - _TIMM_IGNORED_ARGS
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unexpected keyword arguments {sorted(unknown)}"
            )
        super().__init__(check_p(drop_prob, "drop_prob"), inplace, seed=seed)
        self.block_size = check_block_size(block_size, self.spatial_dims)
        self.gamma_scale = check_positive_finite(gamma_scale, "gamma_scale")
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
    from 0 during training: use :class:`LinearRamp`, or set ``module.p``.

    Args:
        drop_prob: target drop rate ``p`` in [0, 1] (timm's name; ``module.p`` reads it).
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


class DropPath(DropoutModule):
    r"""Stochastic depth: drop a residual branch for whole samples (Huang et al. 2016).

    ``mode="row"`` (default, as timm): one Bernoulli draw per sample,
    :math:`y_n = m_n x_n / (1 - p_{\mathrm{eff}})`; ``mode="batch"`` (the paper's original):
    one draw for the whole mini-batch. Use on the branch, before the residual add (or call
    :func:`dropkit.functional.drop_path_add`). Identity at inference. With
    ``scale_by_keep=False`` kept samples are not scaled and inference is still the identity,
    as in timm; the paper instead scales the branch by its survival probability at test time.

    Args:
        drop_prob: drop rate in [0, 1] (timm's name; ``module.p`` reads it).
        scale_by_keep: scale kept samples by :math:`1 / (1 - p)`.
        mode: ``"row"`` or ``"batch"``.
        batch_dim: the sample dimension (0).
        seed: 64-bit seed; drawn from PyTorch's default generator when omitted.

    Shape:
        - Input: :math:`(N, *)`, at least 1-D. Output: same.

    Example:
        >>> dropkit.nn.DropPath(0.2, seed=0)(torch.ones(4, 3, 2)).shape
        torch.Size([4, 3, 2])

    References:
        Huang, Sun, Liu, Sedra & Weinberger, "Deep Networks with Stochastic Depth", ECCV 2016.
    """

    def __init__(
        self,
        drop_prob: float = 0.0,
        scale_by_keep: bool = True,
        *,
        mode: DropPathMode = "row",
        batch_dim: int = 0,
        seed: int | None = None,
    ) -> None:
        if mode not in ("row", "batch"):
            raise ValueError(f"mode must be 'row' or 'batch', got {mode!r}")
        super().__init__(check_p(drop_prob, "drop_prob"), seed=seed)
        self.scale_by_keep = bool(scale_by_keep)
        self.mode: DropPathMode = mode
        self.batch_dim = check_int(batch_dim, "batch_dim")

    @property
    def drop_prob(self) -> float:
        """timm's name for the rate (same as ``p``)."""
        return self.p

    @drop_prob.setter
    def drop_prob(self, value: float) -> None:
        self.p = value

    def forward(self, x: Tensor) -> Tensor:
        return F.drop_path(
            x, self.rate, self.training, scale_by_keep=self.scale_by_keep, mode=self.mode,
            batch_dim=self.batch_dim, seed=self.seed, step=self.next_step(),
        )  # fmt: skip

    def extra_repr(self) -> str:
        extra = [super().extra_repr()]
        if not self.scale_by_keep:
            extra.append("scale_by_keep=False")
        if self.mode != "row":
            extra.append(f"mode={self.mode!r}")
        return ", ".join(extra)


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


class EmbeddingDropout(DropoutModule):
    r"""An embedding whose rows (whole words) are dropped per call (Gal & Ghahramani 2016;
    Merity et al. 2018).

    In training each vocabulary row :math:`v` is kept with probability :math:`1 - p` (one draw
    per row per call, so a dropped word is zero at every position of the batch), and kept rows
    are scaled by :math:`1 / (1 - p_{\mathrm{eff}})`. The padding row is never dropped or
    scaled and gets no gradient. The weight is never modified in place: the mask is applied to
    the looked-up rows, which equals looking up in the masked matrix without building it.
    Plain lookup at inference.

    Args:
        num_embeddings, embedding_dim, padding_idx: as ``torch.nn.Embedding``.
        p: drop rate of each row in [0, 1].
        seed: 64-bit seed.

    Shape:
        - Input: integer indices :math:`(*)`. Output: :math:`(*, \text{embedding\_dim})`.

    Example:
        >>> emb = dropkit.nn.EmbeddingDropout(10, 4, p=0.1, seed=0)
        >>> emb(torch.tensor([[1, 2, 3]])).shape
        torch.Size([1, 3, 4])

    References:
        Gal & Ghahramani, "A Theoretically Grounded Application of Dropout in Recurrent Neural
        Networks", NeurIPS 2016. Merity, Keskar & Socher, "Regularizing and Optimizing LSTM
        Language Models", ICLR 2018.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        p: float = 0.1,
        *,
        seed: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(p, seed=seed)
        if padding_idx is not None and not (
            isinstance(padding_idx, int) and -num_embeddings <= padding_idx < num_embeddings
        ):
            raise ValueError(
                f"padding_idx must be None or an int in [{-num_embeddings}, "
                f"{num_embeddings - 1}], got {padding_idx!r}"
            )
        template = nn.Embedding(
            num_embeddings, embedding_dim, padding_idx, device=device, dtype=dtype
        )
        self.weight = template.weight
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = template.padding_idx

    @classmethod
    def from_embedding(
        cls, embedding: nn.Embedding, p: float = 0.1, **kwargs: Any
    ) -> EmbeddingDropout:
        """Embedding dropout sharing ``embedding``'s weight (e.g. tied with a decoder)."""
        layer = cls(
            embedding.num_embeddings, embedding.embedding_dim, embedding.padding_idx, p, **kwargs
        )
        layer.weight = embedding.weight
        return layer

    def forward(self, input: Tensor) -> Tensor:
        return F.embedding_dropout(
            input, self.weight, self.rate, self.training, padding_idx=self.padding_idx,
            seed=self.seed, step=self.next_step(),
        )  # fmt: skip

    def extra_repr(self) -> str:
        extra = f"{super().extra_repr()}, {self.num_embeddings}, {self.embedding_dim}"
        return extra if self.padding_idx is None else f"{extra}, padding_idx={self.padding_idx}"


class ADL(DropoutModule):
    r"""Attention-based Dropout Layer (Choe & Shim 2019) for weakly supervised localisation.

    From the channel-mean self-attention map :math:`A = \frac{1}{C}\sum_c x_c` (per sample),
    build the drop mask :math:`M_{\mathrm{drop}} = [A < \gamma \max A]` (hides the most
    discriminative region) and the importance map :math:`M_{\mathrm{imp}} = \sigma(A)`. Each
    training call uses the drop mask with probability ``p`` (``drop_rate``), else the importance
    map — one choice for the whole batch, as the authors' code — and returns
    :math:`x \odot M`. Identity at inference. Gradients flow through the importance map.

    Args:
        drop_rate: probability of using the drop mask in a call (the paper's 0.75 default).
        gamma: drop threshold :math:`\gamma` in [0, 1] relative to the per-sample maximum.
        seed: 64-bit seed.

    Shape:
        - Input: :math:`(N, C, H, W)`. Output: same.

    Example:
        >>> dropkit.nn.ADL(0.75, 0.9, seed=0)(torch.rand(2, 3, 4, 4)).shape
        torch.Size([2, 3, 4, 4])

    References:
        Choe & Shim, "Attention-based Dropout Layer for Weakly Supervised Object Localization",
        CVPR 2019.
    """

    def __init__(
        self, drop_rate: float = 0.75, gamma: float = 0.9, *, seed: int | None = None
    ) -> None:
        super().__init__(drop_rate, seed=seed)
        self.gamma = check_p(gamma, "gamma")

    def forward(self, x: Tensor) -> Tensor:
        return F.adl(x, self.rate, self.training, gamma=self.gamma, seed=self.seed,
                     step=self.next_step())  # fmt: skip

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gamma={self.gamma:g}"


class PatchDropout(DropoutModule):
    r"""Token (patch) dropout: keep a random subset of tokens per sample (as timm's
    ``PatchDropout``; Liu et al. 2022, Li et al. 2023).

    In training, of the :math:`L` non-prefix tokens of each sample,
    :math:`\max(1, \lfloor L (1 - p) \rfloor)` are kept, chosen uniformly without replacement
    by sorting counter-based uniforms; the ``num_prefix_tokens`` leading tokens (class,
    register tokens) are always kept, first. ``ordered=True`` keeps the kept tokens in their
    original order. No rescaling (tokens are removed, not zeroed). Identity at inference.

    Args:
        prob: drop fraction in [0, 1) (timm's name; ``module.p`` reads it).
        num_prefix_tokens: leading tokens always kept.
        ordered: keep the original token order.
        return_indices: return ``(tokens, keep_indices)`` (``keep_indices`` is ``None`` at
            inference) instead of the tokens alone.
        seed: 64-bit seed.

    Shape:
        - Input: :math:`(B, L_{prefix} + L, *)`. Output: :math:`(B, L_{prefix} + K, *)`;
          indices :math:`(B, K)` into the non-prefix tokens.

    Example:
        >>> drop = dropkit.nn.PatchDropout(0.5, num_prefix_tokens=1, seed=0)
        >>> drop(torch.ones(2, 9, 4)).shape
        torch.Size([2, 5, 4])

    References:
        Liu et al., "PatchDropout: Economizing Vision Transformers Using Patch Dropout", WACV
        2023. Li et al., "Scaling Language-Image Pre-training via Masking", CVPR 2023.
    """

    allow_rate_one = False

    def __init__(
        self,
        prob: float = 0.5,
        num_prefix_tokens: int = 1,
        ordered: bool = False,
        return_indices: bool = False,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(check_p(prob, "prob", allow_one=False), seed=seed)
        self.num_prefix_tokens = check_nonnegative_int(num_prefix_tokens, "num_prefix_tokens")
        self.ordered = bool(ordered)
        self.return_indices = bool(return_indices)

    def forward(self, x: Tensor) -> Any:
        tokens, indices = F.patch_dropout(
            x, self.rate, self.training, num_prefix_tokens=self.num_prefix_tokens,
            ordered=self.ordered, seed=self.seed, step=self.next_step(),
        )  # fmt: skip
        return (tokens, indices) if self.return_indices else tokens

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_prefix_tokens={self.num_prefix_tokens}"


class LinearRamp:
    r"""Ramp the rate of dropout modules linearly from ``start`` to ``end`` over
    ``total_steps`` calls of :meth:`step`, then hold ``end`` (DropBlock's schedule, Ghiasi et
    al. 2018 sec. 3).

    :math:`p(s) = \text{start} + (\text{end} - \text{start}) \min(s, S) / S`. The modules' rate
    buffers are written in place, so compiled models do not recompile. A minimal helper; the
    schedules package holds the general ones.

    Example:
        >>> block = dropkit.nn.DropBlock2d(0.0, block_size=3, seed=0)
        >>> ramp = dropkit.nn.LinearRamp(block, end=0.1, total_steps=10)
        >>> for _ in range(5):
        ...     _ = ramp.step()
        >>> round(block.p, 4)
        0.05
    """

    def __init__(
        self,
        modules: DropoutModule | Iterable[DropoutModule],
        end: float,
        total_steps: int,
        start: float = 0.0,
    ) -> None:
        self.modules = [modules] if isinstance(modules, DropoutModule) else list(modules)
        if not self.modules or not all(isinstance(m, DropoutModule) for m in self.modules):
            raise TypeError("modules must be a DropoutModule or an iterable of them")
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
        self.start, self.end = check_p(start, "start"), check_p(end, "end")
        self.total_steps = total_steps
        self.steps_taken = 0
        self._apply(self.rate_at(0))

    def rate_at(self, step: int) -> float:
        """The rate after ``step`` steps."""
        fraction = min(max(step, 0), self.total_steps) / self.total_steps
        return self.start + (self.end - self.start) * fraction

    def step(self) -> float:
        """Advance one step, set every module's rate, and return it."""
        self.steps_taken += 1
        rate = self.rate_at(self.steps_taken)
        self._apply(rate)
        return rate

    def _apply(self, rate: float) -> None:
        for module in self.modules:
            module.p = rate
