"""SEAM — minimal per-epoch rate schedules for ``dropkit compare``.

Placeholder for :mod:`dropkit.schedules` (written in another issue): when merging, replace each
function below by the matching one there and delete this file. Each returns a plain callable
``epoch -> rate`` (``epoch`` counts from 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["curriculum", "early_dropout", "late_dropout"]


def curriculum(rate: float, epochs: int, gamma: float | None = None) -> Callable[[int], float]:
    """Curriculum dropout (Morerio 2017): ``rate * (1 - exp(-gamma * epoch))``, from 0 up to
    ``rate``; ``gamma`` defaults to ``10 / epochs`` so the rate is reached by the end."""
    gamma = 10.0 / max(epochs, 1) if gamma is None else gamma
    return lambda epoch: rate * (1.0 - math.exp(-gamma * epoch))


def early_dropout(rate: float, epochs: int, fraction: float = 0.25) -> Callable[[int], float]:
    """Early dropout (Liu 2023): ``rate`` for the first ``fraction`` of training, then 0."""
    until = max(1, round(fraction * epochs))
    return lambda epoch: rate if epoch < until else 0.0


def late_dropout(rate: float, epochs: int, fraction: float = 0.25) -> Callable[[int], float]:
    """Late dropout (Liu 2023): 0 for the first ``fraction`` of training, then ``rate``."""
    start = max(1, round(fraction * epochs))
    return lambda epoch: 0.0 if epoch < start else rate
