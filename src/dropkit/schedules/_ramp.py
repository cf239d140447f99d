"""``LinearRamp``: a linear rate ramp over a list of dropout modules (DropBlock's schedule)."""

from __future__ import annotations

from collections.abc import Iterable

from dropkit.functional._checks import check_p
from dropkit.nn._base import DropoutModule

__all__ = ["LinearRamp"]


class LinearRamp:
    r"""Ramp the rate of dropout modules linearly from ``start`` to ``end`` over
    ``total_steps`` calls of :meth:`step`, then hold ``end`` (DropBlock's schedule, Ghiasi et
    al. 2018 sec. 3).

    :math:`p(s) = \text{start} + (\text{end} - \text{start}) \min(s, S) / S`. The modules' rate
    buffers are written in place, so compiled models do not recompile. A minimal helper; see
    :class:`DropoutScheduler` for general schedules.

    Example:
        >>> block = dropkit.nn.DropBlock2d(0.0, block_size=3, seed=0)
        >>> ramp = dropkit.schedules.LinearRamp(block, end=0.1, total_steps=10)
        >>> for _ in range(5):
        ...     _ = ramp.step()
        >>> round(block.p, 4)
        0.05
    """

    def __init__(
        self,
        modules: DropoutModule | Iterable[DropoutModule],
        end: float,
        total_steps: int,
        start: float = 0.0,
    ) -> None:
        self.modules = [modules] if isinstance(modules, DropoutModule) else list(modules)
        if not self.modules or not all(isinstance(m, DropoutModule) for m in self.modules):
            raise TypeError("modules must be a DropoutModule or an iterable of them")
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
        self.start, self.end = check_p(start, "start"), check_p(end, "end")
        self.total_steps = total_steps
        self.steps_taken = 0
        self._apply(self.rate_at(0))

    def rate_at(self, step: int) -> float:
        """The rate after ``step`` steps."""
        fraction = min(max(step, 0), self.total_steps) / self.total_steps
        return self.start + (self.end - self.start) * fraction

    def step(self) -> float:
        """Advance one step, set every module's rate, and return it."""
        self.steps_taken += 1
        rate = self.rate_at(self.steps_taken)
        self._apply(rate)
        return rate

    def _apply(self, rate: float) -> None:
        for module in self.modules:
            module.p = rate
