"""Rate schedules (plain callables ``step -> rate``), depth schedules for stochastic depth, and
the :class:`DropoutScheduler` that drives a model's dropout modules."""

from dropkit.schedules._depth import linear_by_depth, stagewise
from dropkit.schedules._scheduler import DropoutScheduler, rate_modules
from dropkit.schedules._schedules import (
    Schedule,
    constant,
    cosine,
    curriculum,
    early,
    exponential,
    join,
    late,
    linear,
    piecewise,
    step,
    warmup,
)

__all__ = [
    "DropoutScheduler",
    "Schedule",
    "constant",
    "cosine",
    "curriculum",
    "early",
    "exponential",
    "join",
    "late",
    "linear",
    "linear_by_depth",
    "piecewise",
    "rate_modules",
    "stagewise",
    "step",
    "warmup",
]
