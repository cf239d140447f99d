"""``DropoutScheduler``: binds schedules to a model's dropout modules and steps them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from dropkit._patterns import ModuleSelector, matches, no_match_error
from dropkit.functional._checks import check_p
from dropkit.nn._base import DropoutModule
from dropkit.nn._concrete import ConcreteDropout
from dropkit.schedules._schedules import Schedule

__all__ = ["DropoutScheduler", "rate_modules"]

Attribute = Literal["p", "temperature"]
Rules = Mapping[ModuleSelector, Schedule] | Sequence[tuple[ModuleSelector, Schedule]]


def rate_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every module of ``model`` whose rate can be set: dropkit modules (``rate`` buffer) and
    ``torch.nn`` dropout modules (Python ``p``)."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, (DropoutModule, nn.modules.dropout._DropoutNd))
    }


def temperature_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every :class:`~dropkit.nn.ConcreteDropout` of ``model`` (its temperature can be set)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, ConcreteDropout)}


def _temperature(module: nn.Module) -> float:
    assert isinstance(module, ConcreteDropout)
    return module.temperature


def module_rate(module: nn.Module) -> float:
    """The rate of a dropkit or ``torch.nn`` dropout module as a Python float."""
    return float(getattr(module, "p"))  # noqa: B009 - DropoutModule.p or torch's attribute


def set_module_rate(module: nn.Module, rate: float) -> None:
    """Write ``rate`` into ``module`` in place.

    A dropkit module's ``rate`` buffer is filled in place, so a compiled graph reads the new
    value with no recompile; a ``torch.nn`` dropout's Python ``p`` is a guarded constant and
    does recompile (convert the model first, see :mod:`dropkit.surgery`).
    """
    if isinstance(module, DropoutModule):
        module.p = rate
    else:
        setattr(module, "p", check_p(rate))  # noqa: B010 - torch's p is an untyped attribute


class DropoutScheduler:
    """Sets the rates of a model's dropout modules from schedules, one training step at a time.

    Each rule binds a schedule (a callable ``step -> rate``) to modules selected by an
    ``fnmatch`` name pattern (``"encoder.layer.*.dropout"``) or a type
    (``dropkit.nn.Dropout``); the first matching rule wins for a module. Construction applies
    the rates of step 0; call :meth:`step` after each optimiser step, so training step ``t``
    runs with ``schedule(t)``. Rates are written into the modules' ``rate`` buffers in place,
    so a ``torch.compile``\\ d model never recompiles, and they travel in the model's
    ``state_dict``; the scheduler's own :meth:`state_dict` holds its step, so a resumed run
    continues mid-schedule.

    With ``attribute="temperature"`` the schedules drive the relaxation temperature of the
    model's :class:`~dropkit.nn.ConcreteDropout` layers instead (a ``temperature_t`` buffer,
    also written in place): e.g. annealing from 0.5 to the paper's 0.1, so the relaxed mask
    starts smooth and ends nearly binary. Any callable ``step -> float > 0`` works; the
    schedules of :mod:`dropkit.schedules` give values in [0, 1].

    Args:
        model: the model whose dropout modules to drive.
        rules: ``{selector: schedule}`` or a list of ``(selector, schedule)`` pairs.
        strict: a selector that matches no dropout module is an error listing near matches
            (default); ``False`` allows it.
        attribute: ``"p"`` (the rate, default) or ``"temperature"`` (concrete dropout).

    Example:
        >>> import dropkit
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), dropkit.nn.Dropout(0.0))
        >>> scheduler = DropoutScheduler(model, {"1": dropkit.schedules.linear(0.0, 0.2, 2)})
        >>> scheduler.step(); model[1].p
        0.10000000149011612
        >>> net = torch.nn.Sequential(dropkit.nn.ConcreteDropout(torch.nn.Linear(4, 4)))
        >>> anneal = dropkit.schedules.cosine(0.5, 0.1, 100)
        >>> scheduler = DropoutScheduler(net, {"0": anneal}, attribute="temperature")
        >>> round(net[0].temperature, 3)
        0.5
    """

    def __init__(
        self,
        model: nn.Module,
        rules: Rules,
        *,
        strict: bool = True,
        attribute: Attribute = "p",
    ) -> None:
        if attribute not in ("p", "temperature"):
            raise ValueError(f"attribute must be 'p' or 'temperature', got {attribute!r}")
        self.attribute = attribute
        pairs = list(rules.items()) if isinstance(rules, Mapping) else list(rules)
        for selector, schedule in pairs:
            if not callable(schedule):
                raise TypeError(
                    f"schedule for {selector!r} must be callable step -> rate, got {schedule!r}"
                )
        candidates = rate_modules(model) if attribute == "p" else temperature_modules(model)
        kind = "dropout module" if attribute == "p" else "ConcreteDropout module"
        self._bindings: dict[str, tuple[nn.Module, Schedule]] = {}
        for selector, schedule in pairs:
            selected = [n for n, m in candidates.items() if matches(selector, n, m)]
            if not selected and strict:
                raise no_match_error(selector, candidates, kind)
            for name in selected:
                self._bindings.setdefault(name, (candidates[name], schedule))
        self._step = 0
        self.apply()

    @property
    def current_step(self) -> int:
        """The training step whose rates the modules hold now."""
        return self._step

    def rates(self) -> dict[str, float]:
        """The current rate (or temperature) of every bound module, by qualified name."""
        if self.attribute == "temperature":
            return {name: _temperature(m) for name, (m, _) in self._bindings.items()}
        return {name: module_rate(module) for name, (module, _) in self._bindings.items()}

    def schedules(self) -> dict[str, Schedule]:
        """The schedule bound to each module, by qualified name."""
        return {name: schedule for name, (_, schedule) in self._bindings.items()}

    def apply(self) -> None:
        """Write the rates of :attr:`current_step` into the bound modules."""
        what = "rate" if self.attribute == "p" else "temperature"
        for name, (module, schedule) in self._bindings.items():
            rate = schedule(self._step)
            try:
                if isinstance(module, ConcreteDropout) and self.attribute == "temperature":
                    module.temperature = rate
                else:
                    set_module_rate(module, rate)
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"schedule {schedule!r} for {name!r} gave an invalid {what} at step "
                    f"{self._step}: {error}"
                ) from error

    @torch.no_grad()
    def step(self) -> None:
        """Advance one training step and write the new rates."""
        self._step += 1
        self.apply()

    def state_dict(self) -> dict[str, Any]:
        return {"step": self._step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"state['step'] must be a non-negative int, got {step!r}")
        self._step = step
        self.apply()

    def __repr__(self) -> str:
        target = "" if self.attribute == "p" else f", attribute={self.attribute!r}"
        lines = [f"DropoutScheduler(step={self._step}{target}"]
        lines += [f"  {name}: {schedule!r}" for name, (_, schedule) in self._bindings.items()]
        return "\n".join(lines) + ")"
