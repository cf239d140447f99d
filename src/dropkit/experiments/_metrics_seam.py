"""SEAM — classification metrics for the reports: NLL, Brier score, ECE, reliability bins.

Placeholder for :mod:`dropkit.uncertainty` (written in another issue): when merging, make these
call its metrics and delete this file. ``probs`` is ``(N, K)`` class probabilities, ``labels``
``(N,)`` int class indices.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss

__all__ = ["brier", "ece", "nll", "reliability"]


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (natural log)."""
    return float(log_loss(labels, probs, labels=np.arange(probs.shape[1])))


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: mean over examples of ``sum_k (p_k - onehot_k)^2``."""
    onehot = np.eye(probs.shape[1])[labels]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Per confidence bin (equal width on [0, 1]): count, mean confidence, accuracy."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    index = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    count = np.bincount(index, minlength=bins).astype(np.float64)
    conf_sum = np.bincount(index, weights=confidence, minlength=bins)
    correct_sum = np.bincount(index, weights=correct, minlength=bins)
    return {
        "count": count.tolist(),
        "confidence": conf_sum.tolist(),
        "correct": correct_sum.tolist(),
    }


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error (Guo 2017): ``sum_b n_b/N |acc_b - conf_b|``."""
    table = reliability(probs, labels, bins)
    gap = np.abs(np.asarray(table["correct"]) - np.asarray(table["confidence"]))
    return float(gap.sum() / max(len(labels), 1))
