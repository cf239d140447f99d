"""A plain-loop helper: step the dropout scheduler after each batch."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from dropkit.schedules._scheduler import DropoutScheduler

__all__ = ["scheduled"]

Batch = TypeVar("Batch")


def scheduled(
    batches: Iterable[Batch],
    scheduler: DropoutScheduler,
    *,
    log: Callable[[int, dict[str, float]], None] | None = None,
) -> Iterator[Batch]:
    """Yield ``batches`` and step ``scheduler`` after the loop body has run for each, so the
    body of step ``t`` trains with ``schedule(t)``.

    Args:
        batches: any iterable (a ``DataLoader``).
        scheduler: the :class:`~dropkit.schedules.DropoutScheduler` to step.
        log: called as ``log(step, rates)`` with the rates each step trained with.

    Example:
        >>> import torch, dropkit
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), dropkit.nn.Dropout(0.0))
        >>> scheduler = dropkit.schedules.DropoutScheduler(
        ...     model, {"1": dropkit.schedules.linear(0.0, 0.3, 3)})
        >>> seen = [model[1].p for _ in scheduled(range(3), scheduler)]
        >>> [round(p, 3) for p in seen]
        [0.0, 0.1, 0.2]
    """
    for batch in batches:
        yield batch
        if log is not None:
            log(scheduler.current_step, scheduler.rates())
        scheduler.step()
