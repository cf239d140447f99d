"""Concrete dropout (Gal, Hron & Kendall 2017): the rate is a parameter, learned through a
relaxed Bernoulli mask."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dropkit.functional._learned import (
    check_dataset_size,
    check_init_rate,
    check_temperature,
    concrete_dropout,
    concrete_regularizer,
)
from dropkit.nn._learned import LearnedDropoutModule

__all__ = ["ConcreteDropout", "SpatialConcreteDropout"]


def _optional_positive(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float >= 0 or None, got {type(value).__name__}")
    if not math.isfinite(float(value)) or float(value) < 0:
        raise ValueError(f"{name} must be a finite float >= 0 or None, got {value}")
    return float(value)


class ConcreteDropout(LearnedDropoutModule):
    """Concrete dropout on the input of ``layer`` with a learned rate ``p = σ(p_logit)``.

    In training (and MC mode) the input is multiplied by a relaxed Bernoulli keep mask

    ``z = 1 - σ((log p - log(1 - p) + log u - log(1 - u)) / t)``,  ``u ~ U(0, 1)``,

    and divided by ``1 - p``: ``y = layer(x ⊙ z / (1 - p))``. As ``t → 0``, ``z`` becomes a
    Bernoulli(1 - p) mask; at ``t = 0.1`` (the paper's value) it is close to one while still
    differentiable in ``p``. At inference ``y = layer(x)``. The uniforms come from the
    counter-based stream (one 32-bit word per element), so backward regenerates them: autograd
    holds ``x`` (the rate's gradient needs it) and the 0-d seed and step, no mask.

    The training objective adds :meth:`regularization` (see :func:`dropkit.regularization`),
    the paper's per-example KL term for this layer:

    ``wr · ||W||² / (1 - p) + wr · ||b||² + dr · D · (p log p + (1 - p) log(1 - p))``

    with ``W`` every parameter of ``layer`` except biases, ``D`` the number of input features
    per example (channels for :class:`SpatialConcreteDropout`), ``wr = l² / N`` and
    ``dr = 2 / (τ N)`` for a prior length-scale ``l``, model precision ``τ`` and ``N`` training
    examples (pass ``weight_regularizer``/``dropout_regularizer`` to fix them instead). Bias:
    dropping the inputs does not scale the bias, so its term carries no ``1 / (1 - p)`` (the
    KL of a Gaussian-prior bias in Gal's derivation); ``regularize_bias=False`` leaves biases
    out, as the paper's reference Keras code does.

    With ``rate_shape=(D,)`` (or ``(C, 1, 1)`` for conv maps) each input feature learns its
    own rate (dropout feature ranking, Chang et al. 2017): the entropy term sums over the
    features and each weight column ``W[:, d]`` is divided by its own ``1 - p_d``.

    Args:
        layer: the module applied after dropout (``nn.Identity()`` when None).
        init_p: initial rate, in (0, 1).
        temperature: relaxation temperature ``t > 0`` (a buffer: a schedule may anneal it).
        rate_shape: shape of ``p_logit``, broadcasting against one example's input.
        length_scale: prior length-scale ``l`` of the default ``wr``.
        precision: model precision ``τ`` of the default ``dr``.
        weight_regularizer, dropout_regularizer: fixed ``wr``/``dr`` (then N is not used).
        regularize_bias: include ``wr · ||b||²``.
        seed: 64-bit seed of the uniforms (drawn from PyTorch's generator if None).

    Shape:
        - Input: whatever ``layer`` takes, ``(N, *)``; output: ``layer``'s.

    Example:
        >>> import torch, dropkit
        >>> layer = dropkit.nn.ConcreteDropout(torch.nn.Linear(8, 4), seed=0)
        >>> y = layer(torch.randn(16, 8))
        >>> reg = dropkit.regularization(layer, dataset_size=1000)
        >>> round(layer.p, 3)
        0.1

    References:
        Gal, Hron & Kendall, "Concrete Dropout", NeurIPS 2017.
    """

    technique = "concrete"
    temperature_t: Tensor
    input_dim: Tensor

    def __init__(
        self,
        layer: nn.Module | None = None,
        *,
        init_p: float = 0.1,
        temperature: float = 0.1,
        rate_shape: Sequence[int] = (),
        length_scale: float = 1e-4,
        precision: float = 1.0,
        weight_regularizer: float | None = None,
        dropout_regularizer: float | None = None,
        regularize_bias: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        if layer is not None and not isinstance(layer, nn.Module):
            raise TypeError(f"layer must be a torch.nn.Module or None, got {type(layer).__name__}")
        init_p = check_init_rate(init_p)
        self.layer = nn.Identity() if layer is None else layer
        logit = math.log(init_p) - math.log1p(-init_p)
        self.p_logit = nn.Parameter(torch.full(tuple(rate_shape), logit, dtype=torch.float32))
        self.register_buffer(
            "temperature_t", torch.tensor(check_temperature(temperature), dtype=torch.float32)
        )
        self.register_buffer("input_dim", torch.zeros((), dtype=torch.int64))
        length_scale = _optional_positive(length_scale, "length_scale") or 0.0
        self.length_scale = length_scale
        self.precision = check_temperature(precision, "precision")
        self.weight_regularizer = _optional_positive(weight_regularizer, "weight_regularizer")
        self.dropout_regularizer = _optional_positive(dropout_regularizer, "dropout_regularizer")
        self.regularize_bias = bool(regularize_bias)

    #: Dimensions of the input that share one draw (none: elementwise).
    shared_dims: tuple[int, ...] = ()

    @property
    def temperature(self) -> float:
        """The relaxation temperature (reads and writes the ``temperature_t`` buffer)."""
        return float(self.temperature_t)

    @temperature.setter
    def temperature(self, value: float) -> None:
        with torch.no_grad():
            self.temperature_t.fill_(check_temperature(value))

    def _features(self, x: Tensor) -> int:
        return int(x[0].numel()) if x.dim() > 1 else int(x.numel())

    def forward(self, x: Tensor) -> Tensor:
        if self.sampling and self.input_dim.item() == 0:
            with torch.no_grad():
                self.input_dim.fill_(self._features(x))
        dropped = concrete_dropout(
            x,
            self.p_logit,
            self.sampling,
            temperature=self.temperature,
            shared_dims=self.shared_dims,
            seed=self.seed,
            step=self.next_step(),
        )
        return self.layer(dropped)

    def regularization(self, dataset_size: int) -> Tensor:
        """The paper's regulariser for this layer, per training example (see the class)."""
        n = check_dataset_size(dataset_size)
        if int(self.input_dim) == 0:
            raise RuntimeError(
                "ConcreteDropout.regularization needs the input dimensionality D: run one "
                "training-mode forward first"
            )
        wr = self.weight_regularizer
        wr = self.length_scale**2 / n if wr is None else wr
        dr = self.dropout_regularizer
        dr = 2.0 / (self.precision * n) if dr is None else dr
        weights: list[Tensor] = []
        biases: list[Tensor] = []
        for name, param in self.layer.named_parameters():
            if name.rsplit(".", 1)[-1].startswith("bias"):
                if self.regularize_bias:
                    biases.append(param)
            else:
                weights.append(param)
        per_feature = self.p_logit.numel() > 1
        if per_feature:
            for w in weights:
                if w.dim() < 2 or w.shape[1] != self.p_logit.numel():
                    raise ValueError(
                        f"a rate per input feature ({self.p_logit.numel()} rates) needs every "
                        f"weight of layer to have that many input columns (dim 1), got a weight "
                        f"of shape {tuple(w.shape)}"
                    )
            weights = [w.transpose(0, 1).reshape(w.shape[1], -1).t() for w in weights]
        return concrete_regularizer(
            self.p_logit,
            weights,
            biases,
            weight_regularizer=wr,
            dropout_regularizer=dr,
            input_dim=int(self.input_dim),
            per_feature_weights=per_feature,
        )

    def drop_rates(self) -> Tensor:
        return torch.sigmoid(self.p_logit.detach())

    def feature_drop_rates(self) -> Tensor | None:
        return self.drop_rates().reshape(-1) if self.p_logit.numel() > 1 else None

    def extra_repr(self) -> str:
        shape = "" if self.p_logit.dim() == 0 else f", rate_shape={tuple(self.p_logit.shape)}"
        return f"p={self.p:.4g}, temperature={self.temperature:g}{shape}"


class SpatialConcreteDropout(ConcreteDropout):
    """Concrete dropout of whole channels of a conv map ``(N, C, *spatial)``: one relaxed draw
    per ``(n, c)``, shared over the spatial dimensions, with ``D = C`` in the regulariser (the
    paper's ``SpatialConcreteDropout``). Arguments as :class:`ConcreteDropout`; a per-channel
    rate is ``rate_shape=(C, 1, 1)``.

    Example:
        >>> import torch, dropkit
        >>> block = dropkit.nn.SpatialConcreteDropout(torch.nn.Conv2d(3, 8, 3), seed=0)
        >>> block(torch.randn(2, 3, 8, 8)).shape
        torch.Size([2, 8, 6, 6])

    References:
        Gal, Hron & Kendall, "Concrete Dropout", NeurIPS 2017; Tompson et al., "Efficient
        Object Localization Using Convolutional Networks", CVPR 2015.
    """

    technique = "concrete_spatial"

    def _features(self, x: Tensor) -> int:
        if x.dim() < 3:
            raise ValueError(
                f"SpatialConcreteDropout takes (N, C, *spatial) input, got shape {tuple(x.shape)}"
            )
        return int(x.shape[1])

    def forward(self, x: Tensor) -> Tensor:
        self.shared_dims = tuple(range(2, x.dim()))
        return super().forward(x)
