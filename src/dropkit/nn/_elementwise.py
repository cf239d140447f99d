"""Modules of the elementwise dropout family. Each ``forward`` is one call into
:mod:`dropkit.functional`."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from torch import Tensor, nn

from dropkit import functional as F
from dropkit.functional._checks import check_dim, check_int, check_noise_shape
from dropkit.functional._elementwise import DropoutMode
from dropkit.nn._base import DropoutModule

__all__ = [
    "AlphaDropout",
    "Dropout",
    "FeatureAlphaDropout",
    "GaussianDropout",
    "InputRankError",
    "LockedDropout",
    "SpatialDropout1d",
    "SpatialDropout2d",
    "SpatialDropout3d",
]


class Dropout(DropoutModule, nn.Dropout):
    r"""Dropout with counter-based masks: reproducible, and no mask stored for backward.

    In training each element is kept with probability :math:`1 - p` (mask :math:`m_i \sim
    \mathrm{Bernoulli}(1 - p_{\mathrm{eff}})`, drawn from ``(seed, step, i)``):

    * ``mode="inverted"`` (default, as ``torch.nn.Dropout``): :math:`y = m \odot x / (1 -
      p_{\mathrm{eff}})` in training and :math:`y = x` at inference.
    * ``mode="standard"`` (Hinton 2012; Srivastava 2014): :math:`y = m \odot x` in training and
      :math:`y = (1 - p_{\mathrm{eff}})\,x` at inference.

    :math:`p_{\mathrm{eff}} = \mathrm{round}(65536 p) / 65536` is the rate the 16-bit mask
    realises (within 7.7e-6 of ``p``), so :math:`E[y] = x` exactly. Dropped units are exactly 0,
    even where ``x`` is NaN or inf.

    Args:
        p: drop probability in [0, 1].
        inplace: write the result into the input (accepted for ``torch.nn.Dropout``
            compatibility; autograd stays correct).
        mode: ``"inverted"`` or ``"standard"``.
        noise_shape: Keras-style mask shape broadcastable to the input (``None`` entries take
            the input's size); the mask is shared over its size-1 dimensions.
        seed: 64-bit seed; drawn from PyTorch's default generator when omitted.

    Shape:
        - Input: :math:`(*)`, any shape. Output: same shape, dtype and memory layout.

    Example:
        >>> import torch, dropkit
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> layer = dropkit.nn.Dropout(p=0.2)
        >>> layer(torch.ones(2, 4)).shape
        torch.Size([2, 4])

    References:
        Hinton et al., "Improving neural networks by preventing co-adaptation of feature
        detectors", 2012. Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks
        from Overfitting", JMLR 2014.
    """

    def __init__(
        self,
        p: float = 0.5,
        inplace: bool = False,
        *,
        mode: DropoutMode = "inverted",
        noise_shape: Sequence[int | None] | None = None,
        seed: int | None = None,
    ) -> None:
        if mode not in ("inverted", "standard"):
            raise ValueError(f"mode must be one of ('inverted', 'standard'), got {mode!r}")
        super().__init__(p, inplace, seed=seed)
        self.mode: DropoutMode = mode
        self.noise_shape = check_noise_shape(noise_shape)

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(
            x, self.rate, self.training, mode=self.mode, noise_shape=self.noise_shape,
            seed=self.seed, step=self.next_step(), inplace=self.inplace,
        )  # fmt: skip

    def extra_repr(self) -> str:
        extra = [super().extra_repr()]
        if self.mode != "inverted":
            extra.append(f"mode={self.mode!r}")
        if self.noise_shape is not None:
            extra.append(f"noise_shape={self.noise_shape}")
        return ", ".join(extra)


class InputRankError(ValueError, RuntimeError):
    """An input of a rank a spatial dropout module does not take (a ``ValueError``, and a
    ``RuntimeError`` as torch's ``Dropout1d`` raises)."""


class _SpatialDropoutNd(DropoutModule):
    spatial_dims: int = 2

    def __init__(
        self,
        p: float = 0.5,
        inplace: bool = False,
        *,
        channel_dim: int = 1,
        seed: int | None = None,
    ) -> None:
        super().__init__(p, inplace, seed=seed)
        # The range for batched input (the widest); forward checks it against the actual rank.
        check_dim(channel_dim, self.spatial_dims + 2, "channel_dim")
        self.channel_dim = channel_dim

    def forward(self, x: Tensor) -> Tensor:
        channel_dim, batch_dim = self._layout(x)
        return F.spatial_dropout(
            x, self.rate, self.training, channel_dim=channel_dim, batch_dim=batch_dim,
            seed=self.seed, step=self.next_step(), inplace=self.inplace,
        )  # fmt: skip

    def _layout(self, x: Tensor) -> tuple[int, int | None]:
        """``(channel_dim, batch_dim)`` for ``x``, with torch.nn.DropoutNd's rank rules."""
        batched = self.spatial_dims + 2
        ndim = x.dim()
        if ndim == batched:
            return self.channel_dim, 0
        if ndim == batched - 1:
            # Unbatched: no leading batch dim, so a non-negative channel_dim shifts down.
            return (self.channel_dim - 1 if self.channel_dim >= 1 else self.channel_dim), None
        name = type(self).__name__
        torch_rule = self.channel_dim == 1 and (
            (self.spatial_dims == 2 and ndim > batched) or (self.spatial_dims == 3 and ndim >= 2)
        )
        if not torch_rule:
            raise InputRankError(
                f"{name} expects a {batched}-D (batched) or {batched - 1}-D (unbatched) input, "
                f"got {ndim}-D of shape {tuple(x.shape)}"
            )
        warnings.warn(
            f"{name}: Received a {ndim}-D input, which torch.nn.Dropout{self.spatial_dims}d "
            "deprecates; as torch does, one draw per "
            + ("(dim 0, dim 1)" if self.spatial_dims == 2 else "index of dim 0")
            + f". Expected a {batched}-D (batched) or {batched - 1}-D (unbatched) input.",
            UserWarning,
            stacklevel=3,
        )
        return (1, 0) if self.spatial_dims == 2 else (0, None)

    def extra_repr(self) -> str:
        extra = super().extra_repr()
        return extra if self.channel_dim == 1 else f"{extra}, channel_dim={self.channel_dim}"


class SpatialDropout1d(_SpatialDropoutNd, nn.Dropout1d):
    r"""Drop whole channels of a sequence: one Bernoulli draw per ``(N, C)``.

    :math:`y_{n,c,l} = m_{n,c}\,x_{n,c,l} / (1 - p_{\mathrm{eff}})`. Use ``channel_dim=-1``
    for ``(N, L, C)`` layouts.

    Shape:
        - Input: :math:`(N, C, L)` or :math:`(C, L)`. Output: same.

    Example:
        >>> dropkit.nn.SpatialDropout1d(0.2, seed=0)(torch.ones(2, 3, 5)).shape
        torch.Size([2, 3, 5])

    References:
        Tompson et al., "Efficient Object Localization Using Convolutional Networks", CVPR 2015.
    """

    spatial_dims = 1


class SpatialDropout2d(_SpatialDropoutNd, nn.Dropout2d):
    r"""Drop whole feature maps: one Bernoulli draw per ``(N, C)``, shared over ``H, W``.

    :math:`y_{n,c,h,w} = m_{n,c}\,x_{n,c,h,w} / (1 - p_{\mathrm{eff}})`. The mask index is the
    logical ``(n, c)`` index, so a channels_last input gets the same mask as its contiguous
    copy. Use ``channel_dim=-1`` for ``(N, H, W, C)`` tensors.

    Shape:
        - Input: :math:`(N, C, H, W)` or :math:`(C, H, W)`. Output: same.

    Example:
        >>> dropkit.nn.SpatialDropout2d(0.2, seed=0)(torch.ones(2, 3, 4, 4)).shape
        torch.Size([2, 3, 4, 4])

    References:
        Tompson et al., "Efficient Object Localization Using Convolutional Networks", CVPR 2015.
    """

    spatial_dims = 2


class SpatialDropout3d(_SpatialDropoutNd, nn.Dropout3d):
    r"""Drop whole volumetric feature maps: one Bernoulli draw per ``(N, C)``.

    Shape:
        - Input: :math:`(N, C, D, H, W)` or :math:`(C, D, H, W)`. Output: same.

    Example:
        >>> dropkit.nn.SpatialDropout3d(0.2, seed=0)(torch.ones(2, 3, 2, 2, 2)).shape
        torch.Size([2, 3, 2, 2, 2])

    References:
        Tompson et al., "Efficient Object Localization Using Convolutional Networks", CVPR 2015.
    """

    spatial_dims = 3


class LockedDropout(DropoutModule):
    r"""Variational (locked) dropout: one mask per sequence, shared over every time step.

    :math:`y_{t,b,h} = m_{b,h}\,x_{t,b,h} / (1 - p_{\mathrm{eff}})` for every ``t`` along
    ``time_dim``; a fresh mask each forward call.

    Args:
        p: drop probability in [0, 1].
        time_dim: the time axis (0 for ``(T, B, H)``, 1 for batch-first ``(B, T, H)``).

    Shape:
        - Input: any shape with a time axis. Output: same.

    Example:
        >>> dropkit.nn.LockedDropout(0.3, time_dim=0, seed=0)(torch.ones(7, 2, 4)).shape
        torch.Size([7, 2, 4])

    References:
        Gal & Ghahramani, "A Theoretically Grounded Application of Dropout in Recurrent Neural
        Networks", NeurIPS 2016. Merity et al., "Regularizing and Optimizing LSTM Language
        Models", ICLR 2018.
    """

    def __init__(
        self, p: float = 0.5, inplace: bool = False, *, time_dim: int = 0, seed: int | None = None
    ) -> None:
        super().__init__(p, inplace, seed=seed)
        self.time_dim = check_int(time_dim, "time_dim")

    def forward(self, x: Tensor) -> Tensor:
        return F.locked_dropout(
            x, self.rate, self.training, time_dim=self.time_dim, seed=self.seed,
            step=self.next_step(), inplace=self.inplace,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, time_dim={self.time_dim}"


class GaussianDropout(DropoutModule):
    r"""Multiplicative Gaussian noise with the variance of dropout at rate ``p``.

    :math:`y = x \odot (1 + \sigma \epsilon)`, :math:`\epsilon \sim N(0, 1)`,
    :math:`\sigma^2 = p / (1 - p)` in training; :math:`y = x` at inference. ``E[y] = x`` and the
    variance matches inverted Bernoulli dropout at rate ``p``.

    Args:
        p: rate in [0, 1) setting the noise variance.

    Shape:
        - Input: :math:`(*)`. Output: same.

    Example:
        >>> dropkit.nn.GaussianDropout(0.2, seed=0)(torch.ones(3)).shape
        torch.Size([3])

    References:
        Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
        JMLR 2014, section 10.
    """

    allow_rate_one = False

    def __init__(self, p: float = 0.5, *, seed: int | None = None) -> None:
        super().__init__(p, seed=seed)

    def forward(self, x: Tensor) -> Tensor:
        return F.gaussian_dropout(
            x, self.rate, self.training, seed=self.seed, step=self.next_step()
        )


class AlphaDropout(DropoutModule, nn.AlphaDropout):
    r"""Alpha dropout: keeps zero mean and unit variance of SELU activations.

    Dropped units are set to :math:`\alpha' = -\lambda\alpha \approx -1.7581`, then an affine map
    restores the moments: :math:`y = a\,(m \odot x + (1 - m)\,\alpha') + b` with
    :math:`a = (q + \alpha'^2 q p)^{-1/2}`, :math:`b = -a \alpha' p`, :math:`q = 1 - p`.
    Identity at inference.

    Args:
        p: drop probability in [0, 1].
        inplace: write the result into the input.
        noise_shape: Keras-style mask shape (``None`` entries take the input's size), as
            ``keras.layers.AlphaDropout(noise_shape=...)``: the mask is shared over its
            size-1 dimensions.
        seed: 64-bit seed; drawn from PyTorch's default generator when omitted.

    Shape:
        - Input: :math:`(*)`. Output: same.

    Example:
        >>> dropkit.nn.AlphaDropout(0.1, seed=0)(torch.randn(4)).shape
        torch.Size([4])

    References:
        Klambauer et al., "Self-Normalizing Neural Networks", NeurIPS 2017.
    """

    def __init__(
        self,
        p: float = 0.5,
        inplace: bool = False,
        *,
        noise_shape: Sequence[int | None] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(p, inplace, seed=seed)
        self.noise_shape = check_noise_shape(noise_shape)

    def forward(self, x: Tensor) -> Tensor:
        return F.alpha_dropout(
            x, self.rate, self.training, noise_shape=self.noise_shape, seed=self.seed,
            step=self.next_step(), inplace=self.inplace,
        )  # fmt: skip

    def extra_repr(self) -> str:
        extra = super().extra_repr()
        return extra if self.noise_shape is None else f"{extra}, noise_shape={self.noise_shape}"


class FeatureAlphaDropout(DropoutModule, nn.FeatureAlphaDropout):
    r"""Alpha dropout of whole channels: one draw per ``(N, C)`` (see :class:`AlphaDropout`).

    Shape:
        - Input: :math:`(N, C, *)`. Output: same.

    Example:
        >>> dropkit.nn.FeatureAlphaDropout(0.1, seed=0)(torch.randn(2, 3, 4)).shape
        torch.Size([2, 3, 4])

    References:
        Klambauer et al., "Self-Normalizing Neural Networks", NeurIPS 2017.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.feature_alpha_dropout(
            x, self.rate, self.training, seed=self.seed, step=self.next_step(), inplace=self.inplace
        )
