"""Rate schedules: plain callables ``step -> rate`` with validated arguments.

Every schedule returns a Python float in ``[0, 1]`` for any non-negative integer step, so it can
be written into a module's ``rate`` buffer in place (no recompile under ``torch.compile``).
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal, TypeVar, cast

from dropkit.functional._checks import check_p

__all__ = [
    "Schedule",
    "constant",
    "cosine",
    "curriculum",
    "early",
    "exponential",
    "join",
    "late",
    "linear",
    "piecewise",
    "step",
    "warmup",
]

Schedule = Callable[[int], float]
_Function = TypeVar("_Function", bound=Callable[..., Schedule])


def _rate_alias(old: str) -> Callable[[_Function], _Function]:
    """The rate is ``p``, as in the rest of dropkit; ``old`` (its name before) stays accepted as
    a keyword alias."""

    def wrap(function: _Function) -> _Function:
        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Schedule:
            if old in kwargs:
                if args or "p" in kwargs:
                    raise TypeError(
                        f"{function.__name__}: pass the rate once, as p (not also as {old}=, "
                        "its alias)"
                    )
                kwargs["p"] = kwargs.pop(old)
            return function(*args, **kwargs)

        return cast(_Function, call)

    return wrap


def _check_steps(value: object, name: str, *, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a {kind} int (a number of steps), got {value!r}")
    return value


def _check_step_arg(t: object) -> int:
    # Any integral step (a NumPy integer, a trainer's global_step) is accepted.
    try:
        value = operator.index(t)  # type: ignore[arg-type]
    except TypeError:
        value = -1
    if isinstance(t, bool) or value < 0:
        raise ValueError(f"step must be a non-negative int, got {t!r}")
    return value


def _check_total(total_steps: int | None, needed: int, needed_name: str) -> None:
    if total_steps is None:
        return
    _check_steps(total_steps, "total_steps")
    if needed > total_steps:
        raise ValueError(
            f"{needed_name} ({needed}) is longer than the run: total_steps={total_steps}; "
            f"shorten {needed_name} or lengthen total_steps"
        )


class _Schedule:
    """Base: subclasses implement ``_rate(t)``; ``__call__`` validates the step."""

    def __call__(self, t: int) -> float:
        return self._rate(_check_step_arg(t))

    def _rate(self, t: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True, repr=False)
class _Constant(_Schedule):
    rate: float

    def _rate(self, t: int) -> float:
        return self.rate

    def __repr__(self) -> str:
        return f"constant({self.rate:g})"


@_rate_alias("rate")
def constant(p: float) -> Schedule:
    """The same rate at every step: :math:`p(t) = p` (``rate=`` is an alias of ``p``).

    Example:
        >>> constant(0.1)(1000)
        0.1
    """
    return _Constant(check_p(p, "p"))


@dataclass(frozen=True, repr=False)
class _Linear(_Schedule):
    start: float
    end: float
    steps: int
    begin: int

    def _rate(self, t: int) -> float:
        fraction = min(max(t - self.begin, 0) / self.steps, 1.0)
        return self.start + (self.end - self.start) * fraction

    def __repr__(self) -> str:
        return f"linear({self.start:g} -> {self.end:g} over {self.steps} steps from {self.begin})"


def linear(start: float, end: float, steps: int, *, begin: int = 0) -> Schedule:
    r"""Linear interpolation from ``start`` to ``end`` over ``steps`` steps, then flat.

    :math:`p(t) = p_0 + (p_1 - p_0)\,\min(\max(t - b, 0) / T, 1)`.

    Example:
        >>> linear(0.0, 0.4, 4)(1)
        0.1
    """
    return _Linear(
        check_p(start, "start"), check_p(end, "end"), _check_steps(steps, "steps"),
        _check_steps(begin, "begin", allow_zero=True),
    )  # fmt: skip


@dataclass(frozen=True, repr=False)
class _Cosine(_Schedule):
    start: float
    end: float
    steps: int

    def _rate(self, t: int) -> float:
        fraction = min(t / self.steps, 1.0)
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * fraction))

    def __repr__(self) -> str:
        return f"cosine({self.start:g} -> {self.end:g} over {self.steps} steps)"


def cosine(start: float, end: float, steps: int) -> Schedule:
    r"""Half-cosine from ``start`` to ``end`` over ``steps`` steps, then flat.

    :math:`p(t) = p_1 + (p_0 - p_1)\,\tfrac12\,(1 + \cos(\pi \min(t/T, 1)))`.

    Example:
        >>> round(cosine(0.4, 0.0, 10)(5), 6)
        0.2
    """
    return _Cosine(check_p(start, "start"), check_p(end, "end"), _check_steps(steps, "steps"))


@dataclass(frozen=True, repr=False)
class _Step(_Schedule):
    rates: tuple[float, ...]
    boundaries: tuple[int, ...]

    def _rate(self, t: int) -> float:
        index = sum(1 for boundary in self.boundaries if t >= boundary)
        return self.rates[index]

    def __repr__(self) -> str:
        return f"step(rates={list(self.rates)}, boundaries={list(self.boundaries)})"


def step(rates: Sequence[float], boundaries: Sequence[int]) -> Schedule:
    r"""Piecewise-constant rate: ``rates[k]`` for ``boundaries[k-1] <= t < boundaries[k]``.

    :math:`p(t) = r_k` with :math:`k = \#\{b_j \le t\}`; ``len(rates) == len(boundaries) + 1``
    and the boundaries strictly increase.

    Example:
        >>> step([0.5, 0.3, 0.1], [10, 20])(15)
        0.3
    """
    checked = tuple(check_p(r, f"rates[{i}]") for i, r in enumerate(rates))
    bounds = tuple(_check_steps(b, f"boundaries[{i}]") for i, b in enumerate(boundaries))
    if len(checked) != len(bounds) + 1:
        raise ValueError(
            f"rates needs one more entry than boundaries, got {len(checked)} rates and "
            f"{len(bounds)} boundaries"
        )
    if any(b >= c for b, c in pairwise(bounds)):
        raise ValueError(f"boundaries must strictly increase, got {list(bounds)}")
    return _Step(checked, bounds)


@dataclass(frozen=True, repr=False)
class _Warmup(_Schedule):
    rate: float
    warmup_steps: int
    start: float

    def _rate(self, t: int) -> float:
        if t >= self.warmup_steps:
            return self.rate
        return self.start + (self.rate - self.start) * t / self.warmup_steps

    def __repr__(self) -> str:
        return f"warmup({self.start:g} -> {self.rate:g} over {self.warmup_steps} steps)"


@_rate_alias("rate")
def warmup(
    p: float, warmup_steps: int, *, start: float = 0.0, total_steps: int | None = None
) -> Schedule:
    r"""Linear ramp from ``start`` to ``p`` over ``warmup_steps``, then constant.

    :math:`p(t) = p_s + (p - p_s)\,t / W` for :math:`t < W`, :math:`p` after. ``total_steps``
    (optional) is the run length; a warm-up longer than the run is an error. ``rate=`` is an
    alias of ``p``.

    Example:
        >>> warmup(0.2, 4)(2)
        0.1
    """
    p = check_p(p, "p")
    warmup_steps = _check_steps(warmup_steps, "warmup_steps")
    _check_total(total_steps, warmup_steps, "warmup_steps")
    return _Warmup(p, warmup_steps, check_p(start, "start"))


@dataclass(frozen=True, repr=False)
class _Exponential(_Schedule):
    start: float
    decay: float
    transition_steps: int
    end: float

    def _rate(self, t: int) -> float:
        value = self.start * self.decay ** (t / self.transition_steps)
        return max(value, self.end) if self.decay < 1 else min(value, self.end)

    def __repr__(self) -> str:
        return (
            f"exponential({self.start:g} * {self.decay:g}^(t/{self.transition_steps}), "
            f"bound {self.end:g})"
        )


def exponential(
    start: float, decay: float, transition_steps: int = 1, *, end: float | None = None
) -> Schedule:
    r"""Exponential change: :math:`p(t) = \mathrm{clip}(p_0\,d^{\,t/T}, p_{\mathrm{end}})`.

    With ``decay < 1`` the rate decays towards ``end`` (default 0, a floor); with ``decay > 1``
    it grows towards ``end`` (default 1, a ceiling). ``decay`` must be positive.

    Example:
        >>> exponential(0.4, 0.5, 10)(20)
        0.1
    """
    start = check_p(start, "start")
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not decay > 0:
        raise ValueError(f"decay must be a positive float, got {decay!r}")
    transition_steps = _check_steps(transition_steps, "transition_steps")
    bound = (0.0 if decay < 1 else 1.0) if end is None else check_p(end, "end")
    if (decay < 1 and bound > start) or (decay > 1 and bound < start):
        raise ValueError(
            f"end={bound} lies on the wrong side of start={start} for decay={decay}: "
            "a decaying schedule needs end <= start, a growing one end >= start"
        )
    return _Exponential(start, float(decay), transition_steps, bound)


@dataclass(frozen=True, repr=False)
class _Curriculum(_Schedule):
    target: float
    gamma: float

    def _rate(self, t: int) -> float:
        # Retain probability theta(t) = (1 - theta_bar) exp(-gamma t) + theta_bar.
        retain_target = 1.0 - self.target
        retain = (1.0 - retain_target) * math.exp(-self.gamma * t) + retain_target
        return min(max(1.0 - retain, 0.0), 1.0)

    def __repr__(self) -> str:
        return f"curriculum(target={self.target:g}, gamma={self.gamma:g})"


@_rate_alias("target")
def curriculum(p: float, gamma: float) -> Schedule:
    r"""Curriculum dropout: the rate rises from 0 towards the target ``p`` as training proceeds
    (``target=`` is an alias of ``p``).

    The retain probability follows :math:`\theta(t) = (1 - \bar\theta)\,e^{-\gamma t} +
    \bar\theta` with :math:`\bar\theta = 1 - p_{\mathrm{target}}`, so
    :math:`p(t) = 1 - \theta(t) = p_{\mathrm{target}}\,(1 - e^{-\gamma t})`: no dropout at the
    start (an easy problem), the full rate later. Morerio et al. set :math:`\gamma` so the
    target is nearly reached after a fraction of training (e.g. :math:`\gamma = 10 / T`).

    Example:
        >>> round(curriculum(0.5, 0.1)(10), 4)
        0.3161

    References:
        Morerio, Cavazza, Volpi, Vidal & Murino, "Curriculum Dropout", ICCV 2017.
    """
    target = check_p(p, "p")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma > 0:
        raise ValueError(f"gamma must be a positive float (the decay speed), got {gamma!r}")
    return _Curriculum(target, float(gamma))


PhaseShape = Literal["constant", "linear"]


@dataclass(frozen=True, repr=False)
class _Early(_Schedule):
    rate: float
    until: int
    shape: PhaseShape

    def _rate(self, t: int) -> float:
        if t >= self.until:
            return 0.0
        if self.shape == "linear":
            return self.rate * (1.0 - t / self.until)
        return self.rate

    def __repr__(self) -> str:
        return f"early({self.rate:g} until step {self.until}, {self.shape})"


def _check_shape(shape: object) -> PhaseShape:
    if shape not in ("constant", "linear"):
        raise ValueError(f"shape must be one of ('constant', 'linear'), got {shape!r}")
    return shape


@_rate_alias("rate")
def early(
    p: float, until: int, *, shape: PhaseShape = "constant", total_steps: int | None = None
) -> Schedule:
    r"""Early dropout: dropout only during the first ``until`` steps, none afterwards.

    ``shape="constant"``: :math:`p(t) = p` for :math:`t < E`, 0 after; ``shape="linear"``:
    :math:`p(t) = p\,(1 - t/E)` for :math:`t < E` (the paper's linear-decreasing variant).
    Liu et al. find this reduces *underfitting* in small or under-regularised models. A phase
    longer than ``total_steps`` (when given) is an error. ``rate=`` is an alias of ``p``.

    Example:
        >>> early(0.1, 100)(99), early(0.1, 100)(100)
        (0.1, 0.0)

    References:
        Liu, Xu, Jin, Shen, Darrell, "Dropout Reduces Underfitting", ICML 2023.
    """
    p = check_p(p, "p")
    until = _check_steps(until, "until")
    _check_total(total_steps, until, "until")
    return _Early(p, until, _check_shape(shape))


@dataclass(frozen=True, repr=False)
class _Late(_Schedule):
    rate: float
    start: int

    def _rate(self, t: int) -> float:
        return self.rate if t >= self.start else 0.0

    def __repr__(self) -> str:
        return f"late({self.rate:g} from step {self.start})"


@_rate_alias("rate")
def late(p: float, start: int, *, total_steps: int | None = None) -> Schedule:
    r"""Late dropout: no dropout for the first ``start`` steps, rate ``p`` afterwards.

    :math:`p(t) = 0` for :math:`t < S`, :math:`p` after. Liu et al. use it to regularise large
    models that *overfit*. ``start`` beyond ``total_steps`` (when given) is an error.
    ``rate=`` is an alias of ``p``.

    Example:
        >>> late(0.1, 100)(99), late(0.1, 100)(100)
        (0.0, 0.1)

    References:
        Liu, Xu, Jin, Shen, Darrell, "Dropout Reduces Underfitting", ICML 2023.
    """
    p = check_p(p, "p")
    start = _check_steps(start, "start", allow_zero=True)
    _check_total(total_steps, start, "start")
    return _Late(p, start)


@dataclass(frozen=True, repr=False)
class _Join(_Schedule):
    schedules: tuple[Schedule, ...]
    boundaries: tuple[int, ...]

    def _rate(self, t: int) -> float:
        index = sum(1 for boundary in self.boundaries if t >= boundary)
        offset = self.boundaries[index - 1] if index else 0
        return check_p(self.schedules[index](t - offset), f"schedules[{index}]({t - offset})")

    def __repr__(self) -> str:
        return f"join({list(self.schedules)}, boundaries={list(self.boundaries)})"


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    r"""Run ``schedules[k]`` between ``boundaries[k-1]`` and ``boundaries[k]``, each restarted
    at its own step 0 (as Optax's ``join_schedules``).

    :math:`p(t) = s_k(t - b_{k-1})` for :math:`b_{k-1} \le t < b_k` (:math:`b_{-1} = 0`).

    Example:
        >>> s = join([warmup(0.2, 10), constant(0.2), linear(0.2, 0.0, 10)], [10, 50])
        >>> s(5), s(30), s(55)
        (0.1, 0.2, 0.1)
    """
    funcs = tuple(schedules)
    for i, func in enumerate(funcs):
        if not callable(func):
            raise TypeError(f"schedules[{i}] must be callable step -> rate, got {func!r}")
    bounds = tuple(_check_steps(b, f"boundaries[{i}]") for i, b in enumerate(boundaries))
    if len(funcs) != len(bounds) + 1:
        raise ValueError(
            f"schedules needs one more entry than boundaries, got {len(funcs)} schedules and "
            f"{len(bounds)} boundaries"
        )
    if any(b >= c for b, c in pairwise(bounds)):
        raise ValueError(f"boundaries must strictly increase, got {list(bounds)}")
    return _Join(funcs, bounds)


@dataclass(frozen=True, repr=False)
class _Piecewise(_Schedule):
    points: tuple[tuple[int, float], ...]

    def _rate(self, t: int) -> float:
        if t <= self.points[0][0]:
            return self.points[0][1]
        for (t0, r0), (t1, r1) in zip(self.points, self.points[1:], strict=False):
            if t <= t1:
                return r0 + (r1 - r0) * (t - t0) / (t1 - t0)
        return self.points[-1][1]

    def __repr__(self) -> str:
        return f"piecewise({list(self.points)})"


def piecewise(points: Sequence[tuple[int, float]]) -> Schedule:
    r"""Piecewise-linear through ``(step, rate)`` points; flat before the first and after the
    last.

    :math:`p(t) = r_k + (r_{k+1} - r_k)\,(t - t_k)/(t_{k+1} - t_k)` for
    :math:`t_k \le t \le t_{k+1}`.

    Example:
        >>> piecewise([(0, 0.0), (10, 0.5), (20, 0.1)])(15)
        0.3
    """
    checked = tuple(
        (_check_steps(t, f"points[{i}] step", allow_zero=True), check_p(r, f"points[{i}] rate"))
        for i, (t, r) in enumerate(points)
    )
    if not checked:
        raise ValueError("points must hold at least one (step, rate) pair, got none")
    if any(a[0] >= b[0] for a, b in pairwise(checked)):
        raise ValueError(f"points' steps must strictly increase, got {[p[0] for p in checked]}")
    return _Piecewise(checked)
