"""Variational (Gaussian) dropout with learned α (Kingma, Salimans & Welling 2015) and sparse
variational dropout (Molchanov, Ashukha & Vetrov 2017), for Linear and Conv2d layers, with the
sparsity report and the export of a pruned model."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as torch_f
from torch.nn.modules.utils import _pair

from dropkit.functional._learned import (
    check_dataset_size,
    check_finite,
    check_init_rate,
    kl_kingma,
    kl_molchanov,
    local_reparam_conv2d,
    local_reparam_linear,
)
from dropkit.nn._learned import LearnedDropoutModule

__all__ = [
    "Conv2dSVDO",
    "LinearSVDO",
    "SparseLinear",
    "SparsityReport",
    "VariationalDropoutConv2d",
    "VariationalDropoutLinear",
    "export_pruned",
    "sparsity",
]

AlphaShape = Literal["weight", "unit", "layer"]
_ALPHA_SHAPES = ("weight", "unit", "layer")
#: Added to θ² inside ``log α = log σ² - log θ²`` (θ may be exactly 0).
_THETA_EPS = 1e-8
#: The authors' initial ``log σ²`` (a tiny noise: training grows α where the data allow it).
_DEFAULT_LOG_SIGMA2 = -10.0


def log_sigma2_at_rate(p: float, weight: Tensor) -> Tensor:
    """``log σ² = log α + log θ²`` with ``α = p / (1 - p)``: every weight of ``weight`` at the
    Gaussian-dropout rate ``p`` (sparse VD's ``init_p``)."""
    return math.log(p / (1.0 - p)) + torch.log(weight**2 + _THETA_EPS)


def _check_features(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class _WeightLayer(LearnedDropoutModule):
    """Shared parts of the four layers: θ (``weight``), ``bias``, and the Linear/Conv2d call."""

    weight: nn.Parameter
    bias: nn.Parameter | None

    def _init_weight(self, shape: tuple[int, ...], fan_in: int, bias: bool) -> None:
        # nn.Linear / nn.Conv2d's default initialisation (kaiming-uniform, a = sqrt(5)).
        self.weight = nn.Parameter(torch.empty(shape))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if bias:
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            self.bias = nn.Parameter(torch.empty(shape[0]).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)

    def _deterministic(self, x: Tensor, weight: Tensor) -> Tensor:
        raise NotImplementedError

    def _sampled(self, x: Tensor, variance: Tensor) -> Tensor:
        raise NotImplementedError

    def _shape_repr(self) -> str:
        raise NotImplementedError


class _LinearMixin:
    in_features: int
    out_features: int
    weight: nn.Parameter
    bias: nn.Parameter | None
    seed: Tensor

    def _deterministic(self, x: Tensor, weight: Tensor) -> Tensor:
        return torch_f.linear(x, weight, self.bias)

    def _sampled(self, x: Tensor, variance: Tensor) -> Tensor:
        step = self.next_step()  # type: ignore[attr-defined]
        return local_reparam_linear(x, self.weight, variance, self.bias, seed=self.seed, step=step)

    def _shape_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class _Conv2dMixin:
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    weight: nn.Parameter
    bias: nn.Parameter | None
    seed: Tensor

    def _conv_args(self) -> dict[str, Any]:
        return dict(
            stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups
        )

    def _deterministic(self, x: Tensor, weight: Tensor) -> Tensor:
        return torch_f.conv2d(x, weight, self.bias, **self._conv_args())

    def _sampled(self, x: Tensor, variance: Tensor) -> Tensor:
        step = self.next_step()  # type: ignore[attr-defined]
        return local_reparam_conv2d(
            x, self.weight, variance, self.bias, seed=self.seed, step=step, **self._conv_args()
        )

    def _set_conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int],
        padding: int | tuple[int, int],
        dilation: int | tuple[int, int],
        groups: int,
    ) -> tuple[int, ...]:
        self.in_channels = _check_features(in_channels, "in_channels")
        self.out_channels = _check_features(out_channels, "out_channels")
        self.groups = _check_features(groups, "groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups must divide in_channels and out_channels, got {groups} for "
                f"{in_channels} and {out_channels}"
            )
        self.kernel_size = _pair(kernel_size)
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        return (out_channels, in_channels // groups, *self.kernel_size)

    def _shape_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )


# ----------------------------------------------------------------------------- Kingma 2015


class _KingmaVD(_WeightLayer):
    """Variational dropout with learned α: ``q(w) = N(θ, α θ²)``, log-uniform prior."""

    technique = "vd"
    log_alpha: nn.Parameter

    def _init_alpha(
        self, weight_shape: tuple[int, ...], alpha_shape: str, init_p: float, max_log_alpha: float
    ) -> None:
        if alpha_shape not in _ALPHA_SHAPES:
            raise ValueError(f"alpha_shape must be one of {_ALPHA_SHAPES}, got {alpha_shape!r}")
        init_p = check_init_rate(init_p)
        self.alpha_shape = alpha_shape
        self.max_log_alpha = check_finite(max_log_alpha, "max_log_alpha")
        if alpha_shape == "weight":
            shape = weight_shape
        elif alpha_shape == "unit":  # one α per input unit (column), shared by its outputs
            shape = (1, weight_shape[1], *([1] * (len(weight_shape) - 2)))
        else:
            shape = ()
        # Gaussian dropout's α = p / (1 - p) gives the rate p.
        self.log_alpha = nn.Parameter(
            torch.full(shape, math.log(init_p / (1.0 - init_p)), dtype=torch.float32)
        )

    def clipped_log_alpha(self) -> Tensor:
        """``log α`` limited to ``<= max_log_alpha`` (Kingma et al. keep α <= 1, p <= 0.5,
        where their KL fit holds)."""
        return torch.clamp(self.log_alpha, max=self.max_log_alpha)

    def forward(self, x: Tensor) -> Tensor:
        if not self.sampling:
            return self._deterministic(x, self.weight)
        return self._sampled(x, torch.exp(self.clipped_log_alpha()) * self.weight**2)

    def kl(self) -> Tensor:
        """``Σ_w KL(q(w) || p(w))`` by Kingma et al.'s approximation (up to a constant)."""
        per_weight = kl_kingma(self.clipped_log_alpha()).expand_as(self.weight)
        return per_weight.sum()

    def regularization(self, dataset_size: int) -> Tensor:
        """``KL / N``: the negative ELBO per training example is ``loss + KL / N``."""
        return self.kl() / check_dataset_size(dataset_size)

    def drop_rates(self) -> Tensor:
        alpha = torch.exp(self.clipped_log_alpha().detach())
        return alpha / (1.0 + alpha)

    def feature_drop_rates(self) -> Tensor | None:
        rates = self.drop_rates()
        if rates.dim() == 0:
            return None
        return (
            rates.expand_as(self.weight).transpose(0, 1).reshape(self.weight.shape[1], -1).mean(1)
        )

    def extra_repr(self) -> str:
        return f"{self._shape_repr()}, alpha_shape={self.alpha_shape!r}, p={self.p:.4g}"


class VariationalDropoutLinear(_LinearMixin, _KingmaVD):
    """A Linear layer with variational dropout and learned α (Kingma et al. 2015).

    Each weight has the posterior ``q(w_ij) = N(θ_ij, α θ_ij²)`` (Gaussian dropout with
    variance ``α``, i.e. rate ``p = α / (1 + α)``); training samples the pre-activations by the
    local reparameterisation trick,

    ``b = x θᵀ + bias + sqrt(x² (α θ²)ᵀ) ⊙ ε``,  ``ε ~ N(0, 1)`` per output element,

    with ``ε`` from the counter-based stream. Inference uses the mean ``x θᵀ + bias``. The
    objective adds ``KL / N`` (:meth:`regularization`), with the paper's approximation
    ``-KL(α) ≈ 0.5 log α + c1 α + c2 α² + c3 α³`` (c1 = 1.16145124, c2 = -1.50204118,
    c3 = 0.58629921) per weight, for a log-uniform prior; ``log α`` is limited to
    ``max_log_alpha`` (0: α <= 1, as the paper does, where the fit holds).

    ``alpha_shape`` picks the paper's variants: ``"weight"`` (one α per weight),
    ``"unit"`` (one α per input unit, shared by the weights leaving it: feature ranking reads
    it) or ``"layer"`` (one α).

    Autograd holds ``x``, ``x²``, the output standard deviation and ``ε`` (output-sized; the
    square root's and the noise's gradient need them).

    Args:
        in_features, out_features, bias: as ``torch.nn.Linear``.
        alpha_shape: ``"weight"``, ``"unit"`` or ``"layer"``.
        init_p: initial rate ``α / (1 + α)``, in (0, 1).
        max_log_alpha: upper limit of ``log α`` (finite).
        seed: 64-bit seed of the noise.

    Shape:
        - Input: ``(*, in_features)``; output: ``(*, out_features)``.

    Example:
        >>> import torch, dropkit
        >>> layer = dropkit.nn.VariationalDropoutLinear(8, 4, seed=0)
        >>> layer(torch.randn(16, 8)).shape
        torch.Size([16, 4])

    References:
        Kingma, Salimans & Welling, "Variational Dropout and the Local Reparameterization
        Trick", NeurIPS 2015.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        alpha_shape: AlphaShape = "weight",
        init_p: float = 0.2,
        max_log_alpha: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        self.in_features = _check_features(in_features, "in_features")
        self.out_features = _check_features(out_features, "out_features")
        shape = (out_features, in_features)
        self._init_weight(shape, in_features, bias)
        self._init_alpha(shape, alpha_shape, init_p, max_log_alpha)


class VariationalDropoutConv2d(_Conv2dMixin, _KingmaVD):
    """A Conv2d layer with variational dropout and learned α (Kingma et al. 2015): as
    :class:`VariationalDropoutLinear`, with ``conv(x, θ) + sqrt(conv(x², α θ²)) ⊙ ε`` and one
    ``ε`` per output element; ``alpha_shape="unit"`` is one α per input channel.

    Example:
        >>> import torch, dropkit
        >>> conv = dropkit.nn.VariationalDropoutConv2d(3, 8, 3, padding=1, seed=0)
        >>> conv(torch.randn(2, 3, 8, 8)).shape
        torch.Size([2, 8, 8, 8])

    References:
        Kingma, Salimans & Welling, "Variational Dropout and the Local Reparameterization
        Trick", NeurIPS 2015.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        alpha_shape: AlphaShape = "weight",
        init_p: float = 0.2,
        max_log_alpha: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        shape = self._set_conv(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups
        )
        self._init_weight(shape, math.prod(shape[1:]), bias)
        self._init_alpha(shape, alpha_shape, init_p, max_log_alpha)


# ----------------------------------------------------------------------------- Molchanov 2017


class _SparseVD(_WeightLayer):
    """Sparse variational dropout: additive reparameterisation ``w = θ + σ ε``."""

    technique = "svd"
    log_sigma2: nn.Parameter

    def _init_sigma(
        self,
        weight_shape: tuple[int, ...],
        init_log_sigma2: float,
        threshold: float,
        log_alpha_clip: tuple[float, float],
        init_p: float | None = None,
    ) -> None:
        log_sigma2 = torch.full(weight_shape, check_finite(init_log_sigma2, "init_log_sigma2"))
        if init_p is not None:
            if init_log_sigma2 != _DEFAULT_LOG_SIGMA2:
                raise TypeError(
                    f"{type(self).__name__}: pass init_log_sigma2 or init_p, not both "
                    "(init_p sets log σ² from the weights)"
                )
            log_sigma2 = log_sigma2_at_rate(check_init_rate(init_p), self.weight.detach())
        self.log_sigma2 = nn.Parameter(log_sigma2)
        self.threshold = check_finite(threshold, "threshold")
        low, high = (check_finite(v, "log_alpha_clip") for v in log_alpha_clip)
        if not low < high:
            raise ValueError(
                f"log_alpha_clip must be (low, high) with low < high, got {log_alpha_clip}"
            )
        self.log_alpha_clip = (low, high)

    @property
    def log_alpha(self) -> Tensor:
        """``log α = log σ² - log θ²``, clipped to ``log_alpha_clip`` (the paper's [-8, 8])."""
        raw = self.log_sigma2 - torch.log(self.weight**2 + _THETA_EPS)
        return torch.clamp(raw, *self.log_alpha_clip)

    def keep_mask(self) -> Tensor:
        """True for the weights kept at inference: ``log α <= threshold``."""
        return self.log_alpha.detach() <= self.threshold

    def forward(self, x: Tensor) -> Tensor:
        if not self.sampling:
            return self._deterministic(x, self.weight * self.keep_mask())
        return self._sampled(x, torch.exp(self.log_sigma2))

    def kl(self) -> Tensor:
        """``Σ_w KL(q(w) || p(w))`` by Molchanov et al.'s approximation (eq. 14)."""
        return kl_molchanov(self.log_alpha).sum()

    def regularization(self, dataset_size: int) -> Tensor:
        """``KL / N``: the negative ELBO per training example is ``loss + KL / N``."""
        return self.kl() / check_dataset_size(dataset_size)

    def drop_rates(self) -> Tensor:
        alpha = torch.exp(self.log_alpha.detach())
        return alpha / (1.0 + alpha)

    def feature_drop_rates(self) -> Tensor | None:
        rates = self.drop_rates()
        return rates.transpose(0, 1).reshape(rates.shape[1], -1).mean(1)

    def extra_repr(self) -> str:
        return f"{self._shape_repr()}, threshold={self.threshold:g}, p={self.p:.4g}"


class LinearSVDO(_LinearMixin, _SparseVD):
    """A Linear layer with sparse variational dropout (Molchanov et al. 2017).

    Each weight has ``q(w_ij) = N(θ_ij, σ_ij²)``, parameterised by θ and ``log σ²`` (the
    additive reparameterisation, which keeps the gradient variance low for large α); the
    dropout rate is implied by ``α = σ² / θ²``. Training samples the pre-activations by the
    local reparameterisation trick, ``b = x θᵀ + bias + sqrt(x² σ²ᵀ) ⊙ ε`` with ``ε`` from the
    counter-based stream; inference uses ``θ`` with every weight of ``log α > threshold``
    (3 in the paper) set to 0. ``log α`` is clipped to ``log_alpha_clip`` ([-8, 8], as in the
    authors' code) where it enters the KL. The objective adds ``KL / N``
    (:meth:`regularization`) with the paper's approximation

    ``-KL ≈ k1 σ(k2 + k3 log α) - 0.5 log(1 + 1/α) - k1``,  k1 = 0.63576, k2 = 1.87320,
    k3 = 1.48695.

    :func:`sparsity` reports the pruned fraction; :func:`export_pruned` turns a trained model
    into plain (dense or sparse) layers. Autograd holds ``x``, ``x²``, the output standard
    deviation and ``ε``.

    Args:
        in_features, out_features, bias: as ``torch.nn.Linear``.
        init_log_sigma2: initial ``log σ²`` (-10, as in the authors' code).
        init_p: start every weight at the rate ``init_p`` instead (``log σ² = log α + log θ²``
            with ``α = init_p / (1 - init_p)``), in (0, 1).
        threshold: prune at ``log α > threshold`` at inference (finite).
        log_alpha_clip: ``(low, high)`` clip of ``log α``.
        seed: 64-bit seed of the noise.

    Shape:
        - Input: ``(*, in_features)``; output: ``(*, out_features)``.

    Example:
        >>> import torch, dropkit
        >>> layer = dropkit.nn.LinearSVDO(8, 4, seed=0)
        >>> layer(torch.randn(16, 8)).shape
        torch.Size([16, 4])

    References:
        Molchanov, Ashukha & Vetrov, "Variational Dropout Sparsifies Deep Neural Networks",
        ICML 2017.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        init_log_sigma2: float = _DEFAULT_LOG_SIGMA2,
        threshold: float = 3.0,
        log_alpha_clip: tuple[float, float] = (-8.0, 8.0),
        init_p: float | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        self.in_features = _check_features(in_features, "in_features")
        self.out_features = _check_features(out_features, "out_features")
        shape = (out_features, in_features)
        self._init_weight(shape, in_features, bias)
        self._init_sigma(shape, init_log_sigma2, threshold, log_alpha_clip, init_p)


class Conv2dSVDO(_Conv2dMixin, _SparseVD):
    """A Conv2d layer with sparse variational dropout (Molchanov et al. 2017): as
    :class:`LinearSVDO`, with ``conv(x, θ) + sqrt(conv(x², σ²)) ⊙ ε``.

    Example:
        >>> import torch, dropkit
        >>> conv = dropkit.nn.Conv2dSVDO(3, 8, 3, seed=0)
        >>> conv(torch.randn(2, 3, 8, 8)).shape
        torch.Size([2, 8, 6, 6])

    References:
        Molchanov, Ashukha & Vetrov, "Variational Dropout Sparsifies Deep Neural Networks",
        ICML 2017.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        init_log_sigma2: float = _DEFAULT_LOG_SIGMA2,
        threshold: float = 3.0,
        log_alpha_clip: tuple[float, float] = (-8.0, 8.0),
        init_p: float | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        shape = self._set_conv(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups
        )
        self._init_weight(shape, math.prod(shape[1:]), bias)
        self._init_sigma(shape, init_log_sigma2, threshold, log_alpha_clip, init_p)


# ----------------------------------------------------------------------------- report / export


@dataclass
class SparsityReport:
    """Pruned weights of every sparse-VD layer: ``layers[name] = (pruned, total)``."""

    layers: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def pruned(self) -> int:
        return sum(p for p, _ in self.layers.values())

    @property
    def total(self) -> int:
        return sum(t for _, t in self.layers.values())

    @property
    def fraction(self) -> float:
        """Pruned fraction of all sparse-VD weights (0 where there are none)."""
        return self.pruned / self.total if self.total else 0.0

    def __str__(self) -> str:
        rows = [
            f"{name or '<model>'}: {p}/{t} pruned ({p / t:.1%})"
            for name, (p, t) in self.layers.items()
        ]
        rows.append(f"total: {self.pruned}/{self.total} pruned ({self.fraction:.1%})")
        return "\n".join(rows)


def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def sparsity(model: nn.Module, threshold: float | None = None) -> SparsityReport:
    """The fraction of weights a sparse-VD model prunes (``log α > threshold``, each layer's own
    threshold when None).

    Example:
        >>> import torch, dropkit
        >>> report = dropkit.sparsity(torch.nn.Sequential(dropkit.nn.LinearSVDO(4, 2, seed=0)))
        >>> report.total
        8
    """
    model = _check_model(model)
    limit = None if threshold is None else check_finite(threshold, "threshold")
    report = SparsityReport()
    for name, module in model.named_modules():
        if isinstance(module, _SparseVD):
            log_alpha = module.log_alpha.detach()
            pruned = int((log_alpha > (module.threshold if limit is None else limit)).sum())
            report.layers[name] = (pruned, log_alpha.numel())
    return report


class SparseLinear(nn.Module):
    """A Linear layer whose weight is a sparse COO tensor (an exported :class:`LinearSVDO`).

    Example:
        >>> import torch
        >>> layer = SparseLinear(torch.eye(3).to_sparse(), None)
        >>> layer(torch.ones(2, 3)).shape
        torch.Size([2, 3])
    """

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.coalesce(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.out_features, self.in_features = weight.shape

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, self.in_features)
        y = torch.sparse.mm(self.weight, flat.t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        nnz = self.weight._nnz()
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={nnz}"


def _exported(module: _SparseVD | _KingmaVD, sparse: bool) -> nn.Module:
    with torch.no_grad():
        weight = module.weight.detach().clone()
        if isinstance(module, _SparseVD):
            weight = weight * module.keep_mask()
        bias = None if module.bias is None else module.bias.detach().clone()
        if isinstance(module, _LinearMixin):
            if sparse:
                return SparseLinear(weight.to_sparse(), bias)
            linear = nn.Linear(module.in_features, module.out_features, bias=bias is not None)
            linear.weight.copy_(weight)
            if bias is not None:
                linear.bias.copy_(bias)
            return linear
        assert isinstance(module, _Conv2dMixin)
        conv = nn.Conv2d(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            bias=bias is not None,
            **module._conv_args(),
        )
        conv.weight.copy_(weight)
        if conv.bias is not None and bias is not None:
            conv.bias.copy_(bias)
        return conv


def export_pruned(model: nn.Module, *, sparse: bool = False) -> nn.Module:
    """A copy of ``model`` with every variational layer replaced by a plain one for inference:
    sparse-VD layers keep only the weights with ``log α <= threshold`` (the rest are 0);
    Kingma VD layers keep their mean weights.

    ``sparse=True`` exports Linear layers as :class:`SparseLinear` (COO weight); Conv2d layers
    stay dense ``nn.Conv2d`` with zeros (PyTorch has no sparse convolution). The copy's
    inference output equals the original's in eval mode.

    Example:
        >>> import torch, dropkit
        >>> net = torch.nn.Sequential(dropkit.nn.LinearSVDO(4, 2, seed=0))
        >>> type(dropkit.export_pruned(net)[0]).__name__
        'Linear'
    """
    model = _check_model(model)
    if isinstance(model, (_SparseVD, _KingmaVD)):
        return _exported(model, sparse)
    result = copy.deepcopy(model)
    for name, module in list(result.named_modules()):
        if isinstance(module, (_SparseVD, _KingmaVD)):
            parent_name, _, child = name.rpartition(".")
            parent = result.get_submodule(parent_name) if parent_name else result
            setattr(parent, child, _exported(module, sparse))
    return result
