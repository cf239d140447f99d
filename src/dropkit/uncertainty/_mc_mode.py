"""MC mode: dropout keeps sampling while every other module runs in eval mode."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from torch import nn

from dropkit.nn._base import DropoutModule

__all__ = ["MCCapable", "is_mc_capable", "mc_mode"]


@runtime_checkable
class MCCapable(Protocol):
    """A module that is not a :class:`~dropkit.nn.DropoutModule` but samples in MC mode.

    :func:`mc_mode` calls ``set_mc_mode(True)`` on entry and ``set_mc_mode(previous)`` on exit,
    where ``previous`` is what the first call returned. Wrappers of functional dropout (e.g. a
    surgery interceptor around ``torch.nn.functional.dropout``) implement it to keep sampling
    while their parent is in eval mode, and draw through :mod:`dropkit.functional` (so that
    :func:`dropkit.uncertainty.sample` gives each MC sample its own masks).
    """

    def set_mc_mode(self, enabled: bool) -> bool:
        """Switch MC sampling on or off; return the previous setting."""
        ...


def is_mc_capable(module: nn.Module) -> bool:
    """True for dropkit dropout modules and for modules implementing :class:`MCCapable`."""
    return isinstance(module, DropoutModule) or callable(getattr(module, "set_mc_mode", None))


class mc_mode:
    """Put ``model`` in MC mode: dropkit dropout samples, every other module is in eval mode.

    Dropout modules (:class:`~dropkit.nn.DropoutModule` and :class:`MCCapable` modules) sample
    as in training; BatchNorm, other norms and anything else with train/eval behaviour run in
    eval mode, so BatchNorm's running statistics are neither used from the batch nor updated.
    Gal & Ghahramani's MC dropout: predictions are averages over these stochastic passes.

    Use it as a context manager, which restores every module's previous ``training`` flag (and
    MC setting) on exit, also when the block raises; or call it as a function, which switches
    the model and returns a handle whose :meth:`restore` switches it back.

    Args:
        model: any module.

    Example:
        >>> import torch, dropkit
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4),
        ...                           dropkit.nn.Dropout(0.5, seed=0))
        >>> with dropkit.mc_mode(net):
        ...     (net[1].training, net[2].training)
        (False, True)

    References:
        Gal & Ghahramani, "Dropout as a Bayesian Approximation: Representing Model Uncertainty
        in Deep Learning", ICML 2016.
    """

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self._training = [(module, module.training) for module in model.modules()]
        self._mc_previous: list[tuple[Any, bool]] = []
        for module in model.modules():
            module.training = isinstance(module, DropoutModule)
            if not isinstance(module, DropoutModule) and is_mc_capable(module):
                switch: Any = module
                self._mc_previous.append((switch, bool(switch.set_mc_mode(True))))

    def restore(self) -> None:
        """Put back every module's training flag and MC setting as they were before."""
        for switch, previous in reversed(self._mc_previous):
            switch.set_mc_mode(previous)
        self._mc_previous = []
        for module, training in self._training:
            module.training = training

    def __enter__(self) -> nn.Module:
        return self.model

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.restore()
