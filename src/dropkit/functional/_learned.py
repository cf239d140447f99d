"""Dropout with learned rates as functions: concrete dropout, variational (Gaussian) dropout with
learned α (Kingma 2015), sparse variational dropout (Molchanov 2017) and standout (Ba & Frey
2013), with the KL approximations and the concrete regulariser. The modules of
:mod:`dropkit.nn` (``ConcreteDropout``, ``VariationalDropoutLinear``, ``LinearSVDO``,
``Standout``, ...) carry the full math, shapes and references.

All noise comes from the counter-based stream (:func:`dropkit.rng.uniform` and
:func:`dropkit.rng.normal`): a pure function of ``(seed, step, element index)``, and each MC
sample of :func:`dropkit.uncertainty.sample` draws its own noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor
from torch.nn import functional as torch_f

from dropkit import _mc_context, rng
from dropkit.functional._checks import (
    check_dim,
    check_draw_args,
    check_floating,
    check_offset,
    resolve_seed_step,
)
from dropkit.kernels import _ops

__all__ = [
    "KINGMA_C1",
    "KINGMA_C2",
    "KINGMA_C3",
    "MOLCHANOV_K1",
    "MOLCHANOV_K2",
    "MOLCHANOV_K3",
    "check_dataset_size",
    "check_finite",
    "check_init_rate",
    "check_temperature",
    "concrete_dropout",
    "concrete_regularizer",
    "kl_kingma",
    "kl_molchanov",
    "local_reparam_conv2d",
    "local_reparam_linear",
    "standout",
]

#: Kingma, Salimans & Welling 2015, eq. (10): ``-KL ≈ const + 0.5 log α + c1 α + c2 α² + c3 α³``.
KINGMA_C1 = 1.16145124
KINGMA_C2 = -1.50204118
KINGMA_C3 = 0.58629921
#: Molchanov, Ashukha & Vetrov 2017, eq. (14):
#: ``-KL ≈ k1 σ(k2 + k3 log α) - 0.5 log(1 + 1/α) - k1``.
MOLCHANOV_K1 = 0.63576
MOLCHANOV_K2 = 1.87320
MOLCHANOV_K3 = 1.48695
#: Added inside the logs of the uniforms, as in the paper's reference code (u may be exactly 0).
CONCRETE_EPS = 1e-7
#: Added to the local-reparameterisation variance before the square root (its gradient at 0).
VARIANCE_EPS = 1e-8

NoiseKind = Literal["uniform", "normal"]


# ----------------------------------------------------------------------------- argument checks


def check_temperature(temperature: object, name: str = "temperature") -> float:
    """A finite temperature > 0 as a float; raise naming ``name`` otherwise."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"{name} must be a float > 0, got {type(temperature).__name__}")
    value = float(temperature)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be a finite float > 0, got {value}")
    return value


def check_init_rate(p: object, name: str = "init_p") -> float:
    """A rate strictly inside (0, 1) (a learned rate starts where its logit is finite)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"{name} must be a float in (0, 1), got {type(p).__name__} {p!r}")
    value = float(p)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1) (open interval), got {value}")
    return value


def check_dataset_size(dataset_size: object, name: str = "dataset_size") -> int:
    """The number of training examples ``N`` (an int > 0) that scales a regulariser."""
    if isinstance(dataset_size, bool) or not isinstance(dataset_size, int):
        raise TypeError(
            f"{name} must be an int > 0 (the number of training examples), "
            f"got {type(dataset_size).__name__} {dataset_size!r}"
        )
    if dataset_size <= 0:
        raise ValueError(
            f"{name} must be an int > 0 (the number of training examples), got {dataset_size}"
        )
    return dataset_size


def check_finite(value: object, name: str) -> float:
    """A finite float; raise naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a finite float, got {type(value).__name__} {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{name} must be a finite float, got {result}")
    return result


def _check_broadcasts(t: Tensor, name: str, shape: Sequence[int], against: str) -> None:
    try:
        torch.broadcast_shapes(t.shape, tuple(shape))
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(t.shape)} does not broadcast against {against} of shape "
            f"{tuple(shape)}"
        ) from None


def _check_shared_dims(shared_dims: object, ndim: int) -> list[int]:
    if not isinstance(shared_dims, Sequence) or isinstance(shared_dims, str):
        raise TypeError(
            f"shared_dims must be a sequence of ints (dimensions of the input), got "
            f"{type(shared_dims).__name__} {shared_dims!r}"
        )
    return [check_dim(d, ndim, "shared_dims") % ndim for d in shared_dims] if ndim else []


def _check_regularizer(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a finite float >= 0, got {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite float >= 0, got {value}")
    return float(value)


# ----------------------------------------------------------------------------- noise


def _draw(kind: NoiseKind, shape: Sequence[int], seed: Tensor, step: Tensor, offset: int) -> Tensor:
    # through the dispatch draw ops: the bits of rng.uniform / rng.normal, on the fast backend
    op = _ops.uniform_noise if kind == "uniform" else _ops.normal_noise
    return op(seed, step, offset, list(shape))


def _grouped_noise(
    kind: NoiseKind,
    rows: int,
    seed: Tensor,
    step: Tensor,
    offset: int,
    noise_shape: Sequence[int],
) -> Tensor:
    """Noise of ``noise_shape``; with a 1-D ``step`` (folded MC samples), one group of ``rows``
    rows per step, each drawn as that sample alone would draw it."""
    if step.dim() == 0:
        return _draw(kind, noise_shape, seed, step, offset)
    groups = [
        _draw(kind, noise_shape, seed, part_step, offset).expand([rows, *noise_shape[1:]])
        for part_step in step.unbind()
    ]
    return torch.cat(groups)


def _sampled(
    x: Tensor,
    step: Tensor,
    noise_shape: list[int],
    run: Any,
) -> Tensor:
    """``run(step, noise_shape, rows)`` through the MC sampling context (see
    :func:`dropkit._mc_context.per_sample`): a plain call outside it."""

    def draw(part: Tensor, part_step: Tensor, part_shape: list[int]) -> Tensor:
        groups = part_step.numel() if part_step.dim() else 1
        return run(part_step, part_shape, part.shape[0] // groups if part.dim() else 1)

    return _mc_context.per_sample(x, step, noise_shape, draw)


def _noise(
    kind: NoiseKind,
    like: Tensor,
    seed: Tensor,
    step: Tensor,
    offset: int,
    noise_shape: list[int],
) -> Tensor:
    """Noise broadcastable to ``like`` (in its dtype where that is float64, else float32)."""
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    noise = _sampled(
        like,
        step,
        noise_shape,
        lambda part_step, part_shape, rows: _grouped_noise(
            kind, rows, seed, part_step, offset, part_shape
        ),
    )
    return noise.to(dtype)


def _noise_shape(x: Tensor, shared_dims: Sequence[int]) -> list[int]:
    return [1 if d in shared_dims else int(s) for d, s in enumerate(x.shape)]


# ----------------------------------------------------------------------------- concrete dropout


def _concrete_keep(u: Tensor, p_logit: Tensor, temperature: float) -> Tensor:
    """The relaxed keep mask ``1 - σ((logit p + log u - log(1 - u)) / t)``."""
    drop_logit = (p_logit + torch.log(u + CONCRETE_EPS) - torch.log1p(-u + CONCRETE_EPS)) / (
        temperature
    )
    return torch.sigmoid(-drop_logit)


class _ConcreteFunction(torch.autograd.Function):
    """``y = x ⊙ keep / (1 - p)`` with the relaxed mask regenerated in backward.

    Saved for backward: ``x`` (the rate's gradient needs it), ``p_logit`` and the 0-d/1-d seed
    and step tensors; the uniforms and the relaxed mask are recomputed from the counter.
    """

    @staticmethod
    def forward(
        x: Tensor,
        p_logit: Tensor,
        seed: Tensor,
        step: Tensor,
        offset: int,
        noise_shape: list[int],
        rows: int,
        temperature: float,
    ) -> Tensor:
        keep, retain = _ConcreteFunction.mask(
            x, p_logit, seed, step, offset, noise_shape, rows, temperature
        )
        return x * (keep / retain).to(x.dtype)

    @staticmethod
    def mask(
        x: Tensor,
        p_logit: Tensor,
        seed: Tensor,
        step: Tensor,
        offset: int,
        noise_shape: list[int],
        rows: int,
        temperature: float,
    ) -> tuple[Tensor, Tensor]:
        cd = torch.float64 if torch.float64 in (x.dtype, p_logit.dtype) else torch.float32
        u = _grouped_noise("uniform", rows, seed, step, offset, noise_shape).to(cd)
        logit = p_logit.to(cd)
        return _concrete_keep(u, logit, temperature), 1.0 - torch.sigmoid(logit)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, p_logit, seed, step, offset, noise_shape, rows, temperature = inputs
        ctx.save_for_backward(x, p_logit, seed, step)
        ctx.args = (offset, noise_shape, rows, temperature)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, p_logit, seed, step = ctx.saved_tensors
        offset, noise_shape, rows, temperature = ctx.args
        keep, retain = _ConcreteFunction.mask(
            x, p_logit, seed, step, offset, noise_shape, rows, temperature
        )
        scale = keep / retain
        grad_x = grad * scale.to(grad.dtype) if ctx.needs_input_grad[0] else None
        grad_logit = None
        if ctx.needs_input_grad[1]:
            # d/dl [keep / (1 - p)] = keep / (1 - p) * (p - (1 - keep) / t)
            p = 1.0 - retain
            local = scale * (p - (1.0 - keep) / temperature)
            grad_logit = (grad.to(local.dtype) * x.to(local.dtype) * local).sum_to_size(
                p_logit.shape
            )
            grad_logit = grad_logit.to(p_logit.dtype)
        return grad_x, grad_logit, None, None, None, None, None, None


def concrete_dropout(
    x: Tensor,
    p_logit: Tensor,
    training: bool = True,
    *,
    temperature: float = 0.1,
    shared_dims: Sequence[int] = (),
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Tensor:
    """Concrete (relaxed Bernoulli) dropout with a learnable rate ``p = σ(p_logit)`` (see
    :class:`dropkit.nn.ConcreteDropout`): ``y = x ⊙ (1 - σ((logit p + log u - log(1-u)) / t))
    / (1 - p)`` with ``u`` uniform from the counter stream; identity at inference.

    ``p_logit`` broadcasts against ``x`` (a 0-d tensor for one rate, ``(features,)`` for one per
    feature). ``shared_dims`` share one draw over those dimensions (``(2, 3)`` for spatial
    concrete dropout on ``(N, C, H, W)``).

    Example:
        >>> y = concrete_dropout(torch.ones(4, 3), torch.tensor(-2.0), seed=0)
    """
    check_floating(x)
    check_floating(p_logit, "p_logit")
    temperature = check_temperature(temperature)
    offset = check_draw_args(training, seed, step, offset)
    _check_broadcasts(p_logit, "p_logit", x.shape, "the input")
    dims = _check_shared_dims(shared_dims, x.dim())
    if not training:
        return x
    seed_t, step_t = resolve_seed_step(seed, step, x.device)
    noise_shape = _noise_shape(x, dims)
    return _sampled(
        x,
        step_t,
        noise_shape,
        lambda part_step, part_shape, rows: _ConcreteFunction.apply(
            x, p_logit, seed_t, part_step, offset, part_shape, rows, temperature
        ),
    )


def concrete_regularizer(
    p_logit: Tensor,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    *,
    weight_regularizer: float,
    dropout_regularizer: float,
    input_dim: int,
    per_feature_weights: bool = False,
) -> Tensor:
    """Gal, Hron & Kendall's regulariser for one concrete-dropout layer:
    ``wr * ||W||² / (1 - p) + wr * ||b||² + dr * D * (p log p + (1 - p) log(1 - p))``.

    With one rate, ``D = input_dim`` multiplies the negative entropy. With a rate per input
    feature (``p_logit`` of shape ``(D,)``) the entropy is summed over the features, and with
    ``per_feature_weights`` each weight column ``W[:, d]`` is divided by its own ``1 - p_d``
    (the weights must then have ``D`` columns: a Linear layer's ``weight``).
    """
    check_floating(p_logit, "p_logit")
    weight_regularizer = _check_regularizer(weight_regularizer, "weight_regularizer")
    dropout_regularizer = _check_regularizer(dropout_regularizer, "dropout_regularizer")
    if isinstance(input_dim, bool) or not isinstance(input_dim, int) or input_dim < 1:
        raise ValueError(
            f"input_dim must be an int >= 1 (the layer's input size), got {input_dim!r}"
        )
    p = torch.sigmoid(p_logit)
    retain = 1.0 - p
    if per_feature_weights and p_logit.numel() > 1:
        weight_term = sum((w.pow(2).sum(dim=0) / retain.reshape(-1)).sum() for w in weights)
    else:
        weight_term = sum(w.pow(2).sum() for w in weights) / retain.mean()
    bias_term = sum(b.pow(2).sum() for b in biases)
    # p log p + (1-p) log(1-p), written with the logit so that it is finite for any p_logit.
    negative_entropy = -(p * torch_f.softplus(-p_logit) + retain * torch_f.softplus(p_logit))
    if p_logit.numel() > 1:
        entropy_term = negative_entropy.sum()
    else:
        entropy_term = negative_entropy.sum() * input_dim
    return weight_regularizer * (weight_term + bias_term) + dropout_regularizer * entropy_term


# ----------------------------------------------------------------------------- variational


def kl_kingma(log_alpha: Tensor) -> Tensor:
    """Kingma et al.'s approximation of ``KL(q(w) || p(w))`` for ``q = N(θ, αθ²)`` and the
    log-uniform prior, elementwise, up to an additive constant (the paper fits it for α ≤ 1):
    ``KL ≈ -(0.5 log α + c1 α + c2 α² + c3 α³)``.

    Example:
        >>> float(kl_kingma(torch.tensor(0.0)))  # α = 1
        -0.24570927
    """
    check_floating(log_alpha, "log_alpha")
    alpha = torch.exp(log_alpha)
    return -(0.5 * log_alpha + KINGMA_C1 * alpha + KINGMA_C2 * alpha**2 + KINGMA_C3 * alpha**3)


def kl_molchanov(log_alpha: Tensor) -> Tensor:
    """Molchanov et al.'s approximation of the same KL, accurate for every α and tending to 0
    as α → ∞: ``KL ≈ k1 - k1 σ(k2 + k3 log α) + 0.5 log(1 + 1/α)``, elementwise.

    Example:
        >>> round(float(kl_molchanov(torch.tensor(0.0))), 4)
        0.4124
    """
    check_floating(log_alpha, "log_alpha")
    return (
        MOLCHANOV_K1
        - MOLCHANOV_K1 * torch.sigmoid(MOLCHANOV_K2 + MOLCHANOV_K3 * log_alpha)
        + 0.5 * torch_f.softplus(-log_alpha)
    )


def _check_reparam(x: Tensor, weight: Tensor, variance: Tensor) -> None:
    check_floating(x)
    check_floating(weight, "weight")
    check_floating(variance, "variance")
    try:
        fits = torch.broadcast_shapes(variance.shape, weight.shape) == weight.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"variance of shape {tuple(variance.shape)} does not broadcast to the weight's "
            f"shape {tuple(weight.shape)}"
        )


class _ReparamFunction(torch.autograd.Function):
    """``b = mean + sqrt(variance + eps) ⊙ ε`` with ``ε`` regenerated in backward.

    Saved for backward: the variance (the input: its gradient ``g ε / (2 std)`` needs it) and
    the 0-d/1-d seed and step; ``ε`` (output-sized) is redrawn from the counter. Plain
    autograd would hold both the standard deviation and ``ε``.
    """

    @staticmethod
    def forward(
        mean: Tensor,
        variance: Tensor,
        seed: Tensor,
        step: Tensor,
        offset: int,
        noise_shape: list[int],
        rows: int,
    ) -> Tensor:
        std = torch.sqrt(variance + VARIANCE_EPS)
        noise = _ReparamFunction.noise(mean, seed, step, offset, noise_shape, rows)
        return mean + std * noise

    @staticmethod
    def noise(
        like: Tensor, seed: Tensor, step: Tensor, offset: int, noise_shape: list[int], rows: int
    ) -> Tensor:
        dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
        noise = _grouped_noise("normal", rows, seed, step, offset, noise_shape)
        return noise.to(dtype).to(like.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        _, variance, seed, step, offset, noise_shape, rows = inputs
        ctx.save_for_backward(variance, seed, step)
        ctx.args = (offset, noise_shape, rows)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        variance, seed, step = ctx.saved_tensors
        grad_variance = None
        if ctx.needs_input_grad[1]:
            noise = _ReparamFunction.noise(grad, seed, step, *ctx.args)
            grad_variance = grad * noise / (2.0 * torch.sqrt(variance + VARIANCE_EPS))
        return grad, grad_variance, None, None, None, None, None


def _reparam(
    mean: Tensor,
    variance: Tensor,
    seed: rng.SeedLike | None,
    step: rng.StepLike,
    offset: int,
) -> Tensor:
    seed_t, step_t = resolve_seed_step(seed, step, mean.device)
    offset = check_offset(offset)
    return _sampled(
        mean,
        step_t,
        list(mean.shape),
        lambda part_step, part_shape, rows: _ReparamFunction.apply(
            mean, variance, seed_t, part_step, offset, part_shape, rows
        ),
    )


def local_reparam_linear(
    x: Tensor,
    weight: Tensor,
    variance: Tensor,
    bias: Tensor | None = None,
    *,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Tensor:
    """A Linear layer with independent Gaussian weights ``w ~ N(weight, variance)``, sampled by
    the local reparameterisation trick (Kingma et al. 2015): the pre-activations
    ``b = x Wᵀ + bias + sqrt(x² varianceᵀ) ⊙ ε``, ``ε ~ N(0, 1)`` per output element.

    ``variance`` broadcasts against ``weight`` ``(out, in)``.

    Example:
        >>> y = local_reparam_linear(torch.ones(2, 3), torch.ones(4, 3), torch.ones(4, 3), seed=0)
    """
    _check_reparam(x, weight, variance)
    variance = variance.expand_as(weight)
    mean = torch_f.linear(x, weight, bias)
    return _reparam(mean, torch_f.linear(x * x, variance), seed, step, offset)


def local_reparam_conv2d(
    x: Tensor,
    weight: Tensor,
    variance: Tensor,
    bias: Tensor | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Tensor:
    """:func:`local_reparam_linear` for a 2-D convolution: ``conv(x, W) + sqrt(conv(x², var)) ⊙ ε``
    with one ``ε`` per output element (Molchanov et al. 2017, section 4.3).

    Example:
        >>> w = torch.ones(2, 1, 3, 3)
        >>> y = local_reparam_conv2d(torch.ones(1, 1, 4, 4), w, w, seed=0)
    """
    _check_reparam(x, weight, variance)
    variance = variance.expand_as(weight)
    conv = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    mean = torch_f.conv2d(x, weight, bias, **conv)  # type: ignore[arg-type]
    var = torch_f.conv2d(x * x, variance, None, **conv)  # type: ignore[arg-type]
    return _reparam(mean, var, seed, step, offset)


# ----------------------------------------------------------------------------- standout


def standout(
    h: Tensor,
    keep_logit: Tensor,
    training: bool = True,
    *,
    seed: rng.SeedLike | None = None,
    step: rng.StepLike = 0,
    offset: int = 0,
) -> Tensor:
    """Adaptive dropout (see :class:`dropkit.nn.Standout`): keep unit ``j`` with probability
    ``π_j = σ(keep_logit_j)`` (``u_j < π_j``, ``u`` uniform from the counter stream);
    ``h ⊙ π`` at inference (the expectation, as Ba & Frey use at test time).

    The gradient reaches ``keep_logit`` by the straight-through rule: the mask's gradient is the
    gradient of its mean ``π``.

    Example:
        >>> y = standout(torch.ones(2, 3), torch.zeros(2, 3), seed=0)
    """
    check_floating(h)
    check_floating(keep_logit, "keep_logit")
    offset = check_draw_args(training, seed, step, offset)
    _check_broadcasts(keep_logit, "keep_logit", h.shape, "h")
    if not training:
        return h * torch.sigmoid(keep_logit)
    seed_t, step_t = resolve_seed_step(seed, step, h.device)
    offset = check_offset(offset)
    return _sampled(
        h,
        step_t,
        list(h.shape),
        lambda part_step, part_shape, rows: _StandoutFunction.apply(
            h, keep_logit, seed_t, part_step, offset, part_shape, rows
        ),
    )


class _StandoutFunction(torch.autograd.Function):
    """``y = h ⊙ m``, ``m = [u < σ(keep_logit)]``, with the straight-through gradient
    ``dy/d keep_logit = h ⊙ σ'(keep_logit)`` and the mask regenerated in backward.

    Saved for backward: ``h`` and ``keep_logit`` (their gradients need each other) and the
    0-d/1-d seed and step; the uniforms and the mask are redrawn from the counter (autograd of
    ``h * (m + π - π.detach())`` would hold the mask and ``π`` as well).
    """

    @staticmethod
    def forward(
        h: Tensor,
        keep_logit: Tensor,
        seed: Tensor,
        step: Tensor,
        offset: int,
        noise_shape: list[int],
        rows: int,
    ) -> Tensor:
        mask, _ = _StandoutFunction.mask(h, keep_logit, seed, step, offset, noise_shape, rows)
        return h * mask

    @staticmethod
    def mask(
        h: Tensor,
        keep_logit: Tensor,
        seed: Tensor,
        step: Tensor,
        offset: int,
        noise_shape: list[int],
        rows: int,
    ) -> tuple[Tensor, Tensor]:
        keep_prob = torch.sigmoid(keep_logit)
        dtype = torch.float64 if h.dtype == torch.float64 else torch.float32
        u = _grouped_noise("uniform", rows, seed, step, offset, noise_shape).to(dtype)
        mask = (u < keep_prob.to(u.dtype)).to(torch.promote_types(h.dtype, keep_prob.dtype))
        return mask, keep_prob

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        h, keep_logit, seed, step, offset, noise_shape, rows = inputs
        ctx.save_for_backward(h, keep_logit, seed, step)
        ctx.args = (offset, noise_shape, rows)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        h, keep_logit, seed, step = ctx.saved_tensors
        mask, keep_prob = _StandoutFunction.mask(h, keep_logit, seed, step, *ctx.args)
        grad_h = None
        if ctx.needs_input_grad[0]:
            grad_h = (grad * mask).sum_to_size(h.shape).to(h.dtype)
        grad_logit = None
        if ctx.needs_input_grad[1]:
            local = grad * h * keep_prob * (1.0 - keep_prob)
            grad_logit = local.sum_to_size(keep_logit.shape).to(keep_logit.dtype)
        return grad_h, grad_logit, None, None, None, None, None
