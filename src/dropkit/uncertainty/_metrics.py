"""Predictive summaries and metrics on MC samples shaped ``(S, B, ...)``.

Classification inputs are probabilities with the classes on the last dim, ``(S, B, ..., C)``;
labels are integer class indices shaped ``(B, ...)``. Regression inputs are predictions
``(S, B, ...)`` with targets shaped ``(B, ...)``. Everything is computed in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import torch
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "IntervalCalibration",
    "ReliabilityDiagram",
    "brier_score",
    "check_probabilities",
    "entropy",
    "epistemic_variance",
    "expected_calibration_error",
    "expected_entropy",
    "gaussian_log_likelihood",
    "interval_calibration",
    "mutual_information",
    "negative_log_likelihood",
    "ood_aupr",
    "ood_auroc",
    "plot_reliability_diagram",
    "predictive_entropy",
    "predictive_mean",
    "reliability_diagram",
    "rmse",
    "total_variance",
    "variation_ratio",
]

Binning = Literal["equal_width", "adaptive"]


def _check_samples(samples: object, name: str, min_dim: int) -> Tensor:
    if not isinstance(samples, Tensor) or not samples.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor shaped (S, B, ...)")
    if samples.dim() < min_dim or samples.shape[0] < 1:
        raise ValueError(
            f"{name} must have at least {min_dim} dims (S, B, ...) and S >= 1, got shape "
            f"{tuple(samples.shape)}"
        )
    return samples.to(torch.float64)


def _check_batch(values: Tensor, name: str) -> None:
    """Metrics that average over the batch are NaN on an empty one: refuse it."""
    if values.shape[1] == 0:
        raise ValueError(
            f"{name} must have a non-empty batch (B >= 1) to average over, got shape "
            f"{tuple(values.shape)}"
        )


_SOFTMAX_HINT = "apply .softmax(-1) to logits first"


def check_probabilities(
    probs: Tensor, name: str = "probs", *, logits_hint: str = _SOFTMAX_HINT
) -> Tensor:
    """Raise unless ``probs`` holds probabilities over its last dim (each in [0, 1], summing
    to 1 within a dtype-dependent tolerance); return it. The message says what was found
    (values outside [0, 1], or rows not summing to 1: logits, most likely) and
    ``logits_hint``, the way to pass logits where the caller has one (``from_logits=True``)."""
    if not isinstance(probs, Tensor) or not probs.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor of probabilities")
    if not probs.numel():
        return probs
    tolerance = max(1e-4, 50 * torch.finfo(probs.dtype).eps)
    values = probs.to(torch.float64)
    low, high = float(values.min()), float(values.max())
    if not bool(torch.isfinite(values).all()):
        found = "non-finite values"
    elif low < -tolerance or high > 1 + tolerance:
        found = f"values in [{low:.4g}, {high:.4g}]: these look like logits"
    elif float((values.sum(-1) - 1).abs().max()) > tolerance:
        found = "rows that do not sum to 1: logits or unnormalised scores?"
    else:
        return probs
    raise ValueError(
        f"{name} must be probabilities over the last dim (in [0, 1], summing to 1 within "
        f"{tolerance:g}), got {found}; {logits_hint}"
    )


def _probability_samples(probs: Tensor, name: str = "probs") -> Tensor:
    return check_probabilities(_check_samples(probs, name, 3), name)


def _check_labels(labels: object, probs: Tensor) -> Tensor:
    expected = tuple(probs.shape[1:-1])
    if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.is_complex():
        raise TypeError("labels must be an integer tensor of class indices")
    if tuple(labels.shape) != expected:
        raise ValueError(
            f"labels must have shape {expected} (the samples' shape without S and classes), "
            f"got {tuple(labels.shape)}"
        )
    classes = probs.shape[-1]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ValueError(f"labels must be class indices in [0, {classes - 1}]")
    return labels.to(device=probs.device, dtype=torch.int64)


def _check_targets(targets: object, samples: Tensor) -> Tensor:
    if not isinstance(targets, Tensor) or not targets.is_floating_point():
        raise TypeError("targets must be a floating-point tensor")
    if tuple(targets.shape) != tuple(samples.shape[1:]):
        raise ValueError(
            f"targets must have shape {tuple(samples.shape[1:])} (the samples' shape without "
            f"S), got {tuple(targets.shape)}"
        )
    return targets.to(device=samples.device, dtype=torch.float64)


def _check_tau(tau: float) -> float:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 0:
        raise ValueError(f"tau (the model precision) must be a float > 0, got {tau!r}")
    return float(tau)


# -- classification -----------------------------------------------------------------------------


def entropy(probs: Tensor) -> Tensor:
    r"""Shannon entropy in nats over the last dim, :math:`-\sum_c p_c \log p_c` (0 log 0 = 0)."""
    return _entropy(check_probabilities(probs))


def _entropy(probs: Tensor) -> Tensor:
    return -torch.special.xlogy(probs, probs).sum(-1)


def predictive_mean(samples: Tensor) -> Tensor:
    r"""The MC estimate of the predictive mean, :math:`\frac{1}{S}\sum_s y_s`: ``(B, ...)``."""
    return _check_samples(samples, "samples", 2).mean(0).to(samples.dtype)


def predictive_entropy(probs: Tensor) -> Tensor:
    r"""Entropy of the predictive mean, :math:`H[\bar p]`, shaped ``(B, ...)``: total
    uncertainty."""
    return _entropy(_probability_samples(probs).to(torch.float64).mean(0))


def expected_entropy(probs: Tensor) -> Tensor:
    r"""Mean entropy of the samples, :math:`\frac{1}{S}\sum_s H[p_s]`: aleatoric part."""
    return _entropy(_probability_samples(probs).to(torch.float64)).mean(0)


def mutual_information(probs: Tensor) -> Tensor:
    r"""BALD's mutual information between prediction and weights,
    :math:`H[\bar p] - \frac{1}{S}\sum_s H[p_s]` (Houlsby et al. 2011): epistemic part, >= 0."""
    values = _probability_samples(probs).to(torch.float64)
    return (_entropy(values.mean(0)) - _entropy(values).mean(0)).clamp_min(0)


def variation_ratio(probs: Tensor) -> Tensor:
    r"""Fraction of samples that disagree with the modal class: :math:`1 - f_{mode}/S`."""
    values = _probability_samples(probs)
    votes = torch.nn.functional.one_hot(values.argmax(-1), values.shape[-1]).sum(0)
    return 1.0 - votes.max(-1).values.to(torch.float64) / values.shape[0]


def negative_log_likelihood(probs: Tensor, labels: Tensor, *, eps: float = 1e-12) -> Tensor:
    r"""Mean NLL of the labels under the predictive mean, :math:`-\frac{1}{B}\sum_b \log
    \bar p_{b, y_b}` (probabilities clamped at ``eps``), in nats."""
    _check_batch(_probability_samples(probs), "probs")
    mean = _probability_samples(probs).to(torch.float64).mean(0)
    labels = _check_labels(labels, probs)
    picked = mean.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return -picked.clamp_min(eps).log().mean()


def brier_score(probs: Tensor, labels: Tensor) -> Tensor:
    r"""Mean Brier score of the predictive mean, :math:`\frac{1}{B}\sum_b \sum_c (\bar p_{bc} -
    [y_b = c])^2` (Brier 1950), in [0, 2]."""
    _check_batch(_probability_samples(probs), "probs")
    mean = _probability_samples(probs).to(torch.float64).mean(0)
    labels = _check_labels(labels, probs)
    one_hot = torch.nn.functional.one_hot(labels, mean.shape[-1]).to(torch.float64)
    return ((mean - one_hot) ** 2).sum(-1).mean()


class ReliabilityDiagram(NamedTuple):
    """Per-bin data of a reliability diagram; empty bins have ``counts == 0`` and NaN values."""

    lower: Tensor
    upper: Tensor
    confidence: Tensor
    accuracy: Tensor
    counts: Tensor


def _check_bins(n_bins: int, binning: str) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be an int >= 1, got {n_bins!r}")
    if binning not in ("equal_width", "adaptive"):
        raise ValueError(f"binning must be one of ('equal_width', 'adaptive'), got {binning!r}")


def _per_group(values: Tensor, groups: list[Tensor], how: str) -> Tensor:
    stats = [float(getattr(values[g], how)()) if len(g) else math.nan for g in groups]
    return torch.tensor(stats, dtype=torch.float64)


def reliability_diagram(
    probs: Tensor, labels: Tensor, *, n_bins: int = 15, binning: Binning = "equal_width"
) -> ReliabilityDiagram:
    """Bin predictions by confidence (the predictive mean's top probability) and report each
    bin's mean confidence, accuracy and count.

    ``binning="equal_width"`` uses bins ``(i/n, (i+1)/n]`` (the first includes 0);
    ``"adaptive"`` sorts by confidence and splits into ``n_bins`` groups of (nearly) equal size
    (Nixon et al. 2019), with each bin's bounds its lowest and highest confidence.
    """
    _check_bins(n_bins, binning)
    _check_batch(_probability_samples(probs), "probs")
    mean = _probability_samples(probs).to(torch.float64).mean(0)
    labels = _check_labels(labels, probs).reshape(-1)
    confidence, predicted = mean.reshape(-1, mean.shape[-1]).max(-1)
    correct = (predicted == labels).to(torch.float64)
    if binning == "equal_width":
        edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
        index = torch.bucketize(confidence, edges[1:-1].to(confidence.device))
        groups = [torch.nonzero(index == b).reshape(-1) for b in range(n_bins)]
        lower, upper = edges[:-1], edges[1:]
    else:
        groups = list(torch.tensor_split(confidence.argsort(), n_bins))
        lower = _per_group(confidence, groups, "min")
        upper = _per_group(confidence, groups, "max")
    counts = torch.tensor([len(g) for g in groups], dtype=torch.int64)
    return ReliabilityDiagram(
        lower.to(torch.float64).cpu(), upper.to(torch.float64).cpu(),
        _per_group(confidence, groups, "mean"), _per_group(correct, groups, "mean"), counts,
    )  # fmt: skip


def expected_calibration_error(
    probs: Tensor, labels: Tensor, *, n_bins: int = 15, binning: Binning = "equal_width"
) -> Tensor:
    r"""ECE: :math:`\sum_b \frac{n_b}{N} |\mathrm{acc}_b - \mathrm{conf}_b|` over the bins of
    :func:`reliability_diagram` (Naeini et al. 2015; Guo et al. 2017); ``"adaptive"`` bins
    give the adaptive ECE of Nixon et al. 2019."""
    diagram = reliability_diagram(probs, labels, n_bins=n_bins, binning=binning)
    filled = diagram.counts > 0
    weights = diagram.counts[filled].to(torch.float64) / diagram.counts.sum()
    gaps = (diagram.accuracy[filled] - diagram.confidence[filled]).abs()
    return (weights * gaps).sum()


def plot_reliability_diagram(
    diagram: ReliabilityDiagram, *, ax: Axes | None = None, title: str | None = None
) -> Axes:
    """Draw a reliability diagram (accuracy per confidence bin against the diagonal) with
    matplotlib, imported here only; returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    filled = diagram.counts > 0
    lower, upper = diagram.lower[filled].numpy(), diagram.upper[filled].numpy()
    widths = (upper - lower).clip(min=0.01)
    ax.bar(lower, diagram.accuracy[filled].numpy(), width=widths, align="edge",
           edgecolor="black", alpha=0.7, label="accuracy")  # fmt: skip
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    if title:
        ax.set_title(title)
    return ax


def _ood_inputs(scores_in: Tensor, scores_out: Tensor) -> tuple[Any, Any]:
    import numpy as np

    parts = []
    for name, scores in (("scores_in", scores_in), ("scores_out", scores_out)):
        if not isinstance(scores, Tensor) or scores.dim() != 1 or scores.numel() == 0:
            raise ValueError(f"{name} must be a non-empty 1-D tensor of scores")
        if not bool(torch.isfinite(scores).all()):
            raise ValueError(f"{name} must be finite")
        parts.append(scores.detach().to(torch.float64).cpu().numpy())
    labels = np.concatenate([np.zeros(len(parts[0])), np.ones(len(parts[1]))])
    return labels, np.concatenate(parts)


def ood_auroc(scores_in: Tensor, scores_out: Tensor) -> float:
    """Area under the ROC curve for telling out-of-distribution inputs (positives) from
    in-distribution ones by a score that is higher for OOD (e.g. predictive entropy, mutual
    information); scikit-learn's ``roc_auc_score``. 0.5 is chance."""
    from sklearn.metrics import roc_auc_score

    labels, scores = _ood_inputs(scores_in, scores_out)
    return float(roc_auc_score(labels, scores))


def ood_aupr(scores_in: Tensor, scores_out: Tensor) -> float:
    """Area under the precision-recall curve with OOD as the positive class (average
    precision; scikit-learn's ``average_precision_score``)."""
    from sklearn.metrics import average_precision_score

    labels, scores = _ood_inputs(scores_in, scores_out)
    return float(average_precision_score(labels, scores))


# -- regression ---------------------------------------------------------------------------------


def epistemic_variance(samples: Tensor) -> Tensor:
    r"""Variance over the samples, :math:`\frac{1}{S}\sum_s y_s^2 - \bar y^2`: ``(B, ...)``."""
    return _check_samples(samples, "samples", 2).var(0, correction=0)


def total_variance(samples: Tensor, tau: float) -> Tensor:
    r"""Predictive variance with model precision :math:`\tau`: :math:`\tau^{-1} +
    \mathrm{Var}_s[y_s]` (Gal & Ghahramani 2016, eq. 8)."""
    return 1.0 / _check_tau(tau) + epistemic_variance(samples)


def gaussian_log_likelihood(
    samples: Tensor, targets: Tensor, tau: float, *, reduction: Literal["mean", "none"] = "mean"
) -> Tensor:
    r"""MC test log-likelihood of Gal & Ghahramani 2016: per point

    .. math:: \log \frac{1}{S}\sum_s \mathcal{N}(y; \hat y_s, \tau^{-1})
        = \mathrm{logsumexp}_s(-\tfrac{\tau}{2}(y - \hat y_s)^2) - \log S
        - \tfrac12\log 2\pi + \tfrac12\log\tau,

    averaged over points (``reduction="mean"``) or not (``"none"``). ``tau`` is in the targets'
    units (inverse squared).
    """
    values = _check_samples(samples, "samples", 2)
    tau = _check_tau(tau)
    _check_batch(values, "samples")
    targets = _check_targets(targets, values)
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be one of ('mean', 'none'), got {reduction!r}")
    per_point = (
        torch.logsumexp(-0.5 * tau * (targets - values) ** 2, dim=0)
        - math.log(values.shape[0])
        - 0.5 * math.log(2 * math.pi)
        + 0.5 * math.log(tau)
    )
    return per_point.mean() if reduction == "mean" else per_point


def rmse(samples: Tensor, targets: Tensor) -> Tensor:
    r"""Root mean squared error of the predictive mean, :math:`\sqrt{\frac{1}{B}\sum_b
    (\bar y_b - y_b)^2}`, in the targets' units."""
    values = _check_samples(samples, "samples", 2)
    _check_batch(values, "samples")
    targets = _check_targets(targets, values)
    return ((values.mean(0) - targets) ** 2).mean().sqrt()


class IntervalCalibration(NamedTuple):
    """Nominal central-interval levels, the observed coverage of each, and the mean absolute
    gap between them (0 = perfectly calibrated)."""

    levels: Tensor
    observed: Tensor
    error: Tensor


def interval_calibration(
    samples: Tensor,
    targets: Tensor,
    tau: float,
    *,
    levels: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99),
) -> IntervalCalibration:
    r"""Coverage of the central intervals :math:`\bar y \pm z_q \sigma` of the Gaussian
    predictive :math:`\mathcal{N}(\bar y, \tau^{-1} + \mathrm{Var}_s[y_s])`, with
    :math:`z_q = \Phi^{-1}(\tfrac12 + \tfrac q2)`, for each nominal level ``q``."""
    values = _check_samples(samples, "samples", 2)
    _check_batch(values, "samples")
    targets = _check_targets(targets, values)
    level_t = torch.tensor(list(levels), dtype=torch.float64)
    if level_t.numel() == 0 or bool(((level_t <= 0) | (level_t >= 1)).any()):
        raise ValueError(f"levels must be non-empty, each in (0, 1), got {tuple(levels)}")
    sigma = total_variance(values, tau).sqrt()
    z = torch.special.ndtri(0.5 + level_t / 2).to(values.device)
    inside = (targets - values.mean(0)).abs().unsqueeze(-1) <= sigma.unsqueeze(-1) * z
    observed = inside.reshape(-1, level_t.numel()).to(torch.float64).mean(0).cpu()
    return IntervalCalibration(level_t, observed, (observed - level_t).abs().mean())
