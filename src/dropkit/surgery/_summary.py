"""``summary``: every dropout site of a model in a table (path, technique, rate, mode, schedule,
neighbours), with JSON and Markdown renderings."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from dropkit.nn._learned import LearnedDropoutModule
from dropkit.surgery._convert import is_dropout_like
from dropkit.surgery._functional import FunctionalDropoutRouter
from dropkit.surgery._trace import _Event, _leaf_order, _module_rate, _trace

__all__ = ["DropoutSite", "DropoutSummary", "summary"]


@dataclass
class DropoutSite:
    """One row of :func:`summary`."""

    path: str
    technique: str
    rate: float | None
    mode: str
    schedule: str
    after: str
    before: str


class DropoutSummary(list[DropoutSite]):
    """The rows of :func:`summary`, with table, JSON and Markdown renderings."""

    columns = ("path", "technique", "rate", "mode", "schedule", "after", "before")

    def _cells(self) -> list[list[str]]:
        rows = []
        for site in self:
            values = asdict(site)
            rate = values["rate"]
            values["rate"] = "per call" if rate is None else f"{rate:g}"
            rows.append([str(values[c]) for c in self.columns])
        return rows

    def to_json(self, **kwargs: Any) -> str:
        """The rows as a JSON array of objects (keys as :attr:`columns`)."""
        return json.dumps([asdict(site) for site in self], **kwargs)

    def to_markdown(self) -> str:
        """A Markdown table, e.g. for a model card."""
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
                  for row in self._cells()]  # fmt: skip
        return "\n".join(lines)

    def __str__(self) -> str:
        cells = [list(self.columns), *self._cells()]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                 for row in cells]  # fmt: skip
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines) if self else "no dropout sites"


def _neighbour(events: Sequence[_Event], index: int, direction: int) -> str:
    position = index + direction
    while 0 <= position < len(events):
        event = events[position]
        if event.module is None or not isinstance(event.module, nn.Identity):
            return f"{event.type_name} ({event.path})" if event.path else event.type_name
        position += direction
    return "(model input)" if direction < 0 else "(model output)"


def _mode(module: nn.Module | None, model: nn.Module) -> str:
    if module is None:
        return "follows caller"
    if isinstance(module, LearnedDropoutModule) and module.mc and not module.training:
        return "mc (samples in eval)"
    if module.training:
        return "train" if model.training else "mc (train in an eval model)"
    return "eval"


def summary(
    model: nn.Module,
    example_input: Any = None,
    *,
    scheduler: Any = None,
    print_table: bool = True,
) -> DropoutSummary:
    """Every dropout site of ``model``: path, technique, rate, mode, schedule, and the modules
    run just before and after it (where it sits relative to normalisation and activations).

    Learned-rate modules (concrete, variational, standout) are sites too: ``technique`` says
    ``"ConcreteDropout (learned concrete)"``, ``rate`` is the current mean learned rate (see
    :func:`dropkit.learned_rates` for every rate), and ``mode`` says ``"mc"`` while
    :func:`dropkit.mc_mode` makes them sample in an eval model.

    With ``example_input`` the model is run once (under ``no_grad``, modes unchanged; with the
    model in eval no randomness is drawn) to learn the execution order and find functional
    dropout (``F.dropout`` calls); without it the order is the definition order of leaf modules.

    Args:
        model: any ``nn.Module``.
        example_input: a tensor, a tuple of positional arguments, or a dict of keyword
            arguments.
        scheduler: a :class:`~dropkit.schedules.DropoutScheduler` whose schedules to show.
        print_table: print the table (default).

    Returns:
        a :class:`DropoutSummary` (a list of :class:`DropoutSite`) with ``to_json()`` and
        ``to_markdown()``.

    Example:
        >>> import torch, dropkit
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), dropkit.nn.Dropout(0.1))
        >>> [(s.path, s.technique, s.after) for s in summary(model, print_table=False)]
        [('1', 'Dropout', 'Linear (0)')]
    """
    if example_input is not None:
        with torch.no_grad():
            events, _ = _trace(model, example_input)
    else:
        events = _leaf_order(model)
    schedules = scheduler.schedules() if scheduler is not None else {}
    rows = DropoutSummary()
    for index, event in enumerate(events):
        if not (event.is_dropout or event.is_learned):
            continue
        module = event.module
        rate = event.rate if module is None else _module_rate(module)
        technique = event.type_name
        if isinstance(module, LearnedDropoutModule):  # its current (mean) learned rate
            technique = f"{event.type_name} (learned {module.technique})"
        schedule = schedules.get(event.path)
        rows.append(
            DropoutSite(
                path=event.path,
                technique=technique,
                rate=rate,
                mode=_mode(module, model),
                schedule="-" if schedule is None else repr(schedule),
                after=_neighbour(events, index, -1),
                before=_neighbour(events, index, +1),
            )
        )
    if example_input is not None:
        # Dropout modules that never ran (e.g. an attention dropout whose rate is only read by a
        # fused attention kernel) are still sites.
        ran = {event.path for event in events}
        for path, module in model.named_modules():
            if path not in ran and is_dropout_like(module):
                if isinstance(module, FunctionalDropoutRouter):
                    continue
                rows.append(
                    DropoutSite(
                        path, type(module).__name__, _module_rate(module),
                        _mode(module, model), repr(schedules[path]) if path in schedules else "-",
                        "(not run)", "(not run)",
                    )
                )  # fmt: skip
    if print_table:
        print(rows)
    return rows
