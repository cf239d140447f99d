"""Every dropout technique as a function ``(x, p, training, *, seed, step, offset, ...)``.

Functions do the work; the modules of :mod:`dropkit.nn` store hyperparameters, a seed and a step
counter, and call one of these.
"""

from dropkit.functional._elementwise import (
    alpha_dropout,
    dropout,
    feature_alpha_dropout,
    gaussian_dropout,
    locked_dropout,
    spatial_dropout,
)
from dropkit.functional._fused import bias_act_dropout, bias_act_dropout_add, bias_dropout_add

__all__ = [
    "alpha_dropout",
    "bias_act_dropout",
    "bias_act_dropout_add",
    "bias_dropout_add",
    "dropout",
    "feature_alpha_dropout",
    "gaussian_dropout",
    "locked_dropout",
    "spatial_dropout",
]
