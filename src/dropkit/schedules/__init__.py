"""Rate schedules (plain callables ``step -> rate``), depth schedules for stochastic depth, the
:class:`DropoutScheduler` that drives a model's dropout modules, and :class:`LinearRamp`."""

from dropkit.schedules._depth import linear_by_depth, stagewise
from dropkit.schedules._ramp import LinearRamp
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
    "LinearRamp",
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
