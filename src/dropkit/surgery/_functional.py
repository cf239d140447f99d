"""Routing functional dropout (``F.dropout`` calls inside ``forward``) through dropkit.

A :class:`torch.overrides.TorchFunctionMode` is active during the model's forward; module hooks
keep the path of the module being run, so every call site gets a stable name
``"<module path>:<function>#<k>"`` (the k-th such call in that module's forward) and its own seed
derived from the router's seed. Everything stays eager Python: this is for models whose code
you cannot change (Hugging Face, timm); code you own should call dropkit directly.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

import dropkit.functional as dkf
from dropkit.functional._checks import check_module, check_p
from dropkit.nn._base import DropoutModule
from dropkit.surgery._convert import site_seed
from dropkit.surgery._registry import register_unsupported

__all__ = ["ROUTER_NAME", "FunctionalDropoutRouter", "route_functional", "unroute_functional"]

#: The attribute under which :func:`route_functional` registers the router on the model.
ROUTER_NAME = "dropkit_functional"

_SIGNATURE = inspect.signature(F.dropout)  # (input, p, training, inplace) for the whole family


def _spatial(spatial_dims: int) -> Callable[..., Tensor]:
    def route(x: Tensor, p: Any, training: bool, **kw: Any) -> Tensor:
        batched = x.dim() == spatial_dims + 2
        return dkf.spatial_dropout(
            x, p, training, channel_dim=1 if batched else 0, batch_dim=0 if batched else None, **kw
        )

    return route


_ROUTES: dict[Callable[..., Any], Callable[..., Tensor]] = {
    F.dropout: dkf.dropout,
    F.dropout1d: _spatial(1),
    F.dropout2d: _spatial(2),
    F.dropout3d: _spatial(3),
    F.alpha_dropout: dkf.alpha_dropout,
    F.feature_alpha_dropout: dkf.feature_alpha_dropout,
}
_TORCH_ROUTES: dict[Callable[..., Any], Callable[..., Tensor]] = {
    torch.dropout: dkf.dropout,
    torch.alpha_dropout: dkf.alpha_dropout,
}
_SDPA = F.scaled_dot_product_attention


class FunctionalDropoutRouter(DropoutModule):
    """Holds the seed and step of a model's routed functional dropout, and what was found.

    A :class:`~dropkit.nn.DropoutModule`, so it is in ``state_dict``, follows
    ``train()``/``eval()``, and MC mode (this module in training mode while the model is in
    eval) reaches the routed calls. Its ``rate`` is unused until ``p`` is set (by
    :func:`~dropkit.surgery.set_rates` or a scheduler): from then on every routed call uses it
    instead of its own ``p``.

    A routed call made inside a module in training mode samples iff its ``training`` argument
    is true; inside a module in eval mode it samples only in MC mode, whatever its ``training``
    argument says (so ``F.dropout(x, 0.1)``, which forgets ``training=self.training``, stops
    dropping in eval).

    Attributes:
        sites: call site → rate of its last call, for every routed call seen.
        unrouted: call site → why it could not be routed (dropout fused into
            ``scaled_dot_product_attention``).
    """

    #: Lets :func:`~dropkit.surgery.remove` recognise a router without importing this module.
    routes_functional_dropout = True

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__(0.0, seed=seed)
        self.override = False
        self.sites: dict[str, float] = {}
        self.unrouted: dict[str, str] = {}
        self._stack: list[tuple[str, nn.Module]] = []
        self._counts: dict[str, int] = {}
        self._mode: _RoutingMode | None = None
        self._call_step: Tensor | None = None
        self._seed_value = 0
        self._site_seeds: dict[tuple[int, str], int] = {}

    @property
    def p(self) -> float:
        """The override rate (only used once set)."""
        return DropoutModule.p.fget(self)  # type: ignore[attr-defined]

    @p.setter
    def p(self, value: float) -> None:
        DropoutModule.p.fset(self, check_p(value))  # type: ignore[attr-defined]
        self.override = True

    def forward(self, x: Tensor) -> Tensor:
        raise TypeError(
            "FunctionalDropoutRouter is not called directly: it routes F.dropout calls made "
            "inside its model's forward"
        )

    def report(self) -> str:
        """Routed and unrouted call sites seen so far, one per line."""
        lines = [f"routed {len(self.sites)} functional dropout call site(s)"]
        lines += [f"  {site}: p={rate:g}" for site, rate in self.sites.items()]
        if self.unrouted:
            lines.append(f"not routed {len(self.unrouted)} call site(s)")
            lines += [f"  {site}: {why}" for site, why in self.unrouted.items()]
        return "\n".join(lines)

    def extra_repr(self) -> str:
        rate = f"p={self.p:g}" if self.override else "p=per call"
        return f"{rate}, sites={len(self.sites)}"

    # -- called by the hooks and the mode -------------------------------------------------

    def _begin(self) -> None:
        self._counts = {}
        self._stack = []
        self._call_step = self.next_step()
        self._seed_value = int(self.seed)  # one host read per forward, not per call
        self._mode = _RoutingMode(self)
        self._mode.__enter__()

    def _end(self) -> None:
        if self._mode is not None:
            mode, self._mode = self._mode, None
            mode.__exit__(None, None, None)

    def _site(self, function: str) -> tuple[str, nn.Module | None]:
        path, owner = self._stack[-1] if self._stack else ("", None)
        key = f"{path}:{function}"
        index = self._counts.get(key, 0)
        self._counts[key] = index + 1
        return f"{key}#{index}", owner

    def _route(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Tensor:
        if func in _TORCH_ROUTES:
            x, p, training = args[:3]
            inplace = False
            target = _TORCH_ROUTES[func]
        else:
            bound = _SIGNATURE.bind(*args, **kwargs)
            bound.apply_defaults()
            x, p = bound.arguments["input"], bound.arguments["p"]
            training, inplace = bound.arguments["training"], bound.arguments["inplace"]
            target = _ROUTES[func]
        site, owner = self._site(func.__name__)
        rate = self.rate if self.override else p
        self.sites[site] = self.p if self.override else float(p)
        owner_training = owner.training if owner is not None else self.training
        sample = bool(training) if owner_training else self.training
        step = self._call_step if self._call_step is not None else self.step
        key = (self._seed_value, site)
        if key not in self._site_seeds:
            self._site_seeds[key] = site_seed(self._seed_value, site)
        return target(x, rate, sample, seed=self._site_seeds[key], step=step, inplace=inplace)


class _RoutingMode(TorchFunctionMode):
    def __init__(self, router: FunctionalDropoutRouter) -> None:
        super().__init__()
        self.router = router

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func in _ROUTES or func in _TORCH_ROUTES:
            return self.router._route(func, args, kwargs)
        if func is _SDPA:
            dropout_p = kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0)
            if dropout_p:
                site, _ = self.router._site("scaled_dot_product_attention")
                self.router.unrouted[site] = (
                    f"dropout_p={float(dropout_p):g} is fused into scaled_dot_product_attention "
                    "(unseeded by dropkit); use an eager attention implementation to route it"
                )
        return func(*args, **kwargs)


class _Enter:
    def __init__(self, router: FunctionalDropoutRouter, path: str) -> None:
        self.router, self.path = router, path

    def __call__(self, module: nn.Module, inputs: Any) -> None:
        if not self.path and self.router._mode is None:
            self.router._begin()
        self.router._stack.append((self.path, module))


class _Exit:
    def __init__(self, router: FunctionalDropoutRouter, path: str) -> None:
        self.router, self.path = router, path

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if self.router._stack:
            self.router._stack.pop()
        if not self.path:
            self.router._end()


def route_functional(model: nn.Module, *, seed: int | None = None) -> FunctionalDropoutRouter:
    """Route functional dropout inside ``model``'s forward through dropkit.

    Registers a :class:`FunctionalDropoutRouter` as ``model.dropkit_functional`` and hooks every
    submodule; from then on ``F.dropout``/``dropout1d/2d/3d``/``alpha_dropout``/
    ``feature_alpha_dropout`` and ``torch.dropout``/``torch.alpha_dropout`` calls made during
    ``model(...)`` use counter-based masks with a per-call-site seed and the router's step
    (advanced once per training forward), so runs are reproducible and MC mode reaches them.
    Dropout fused into ``scaled_dot_product_attention`` cannot be routed and is listed in
    ``router.unrouted``. Call sites are found as they run: see ``router.report()`` after a
    forward.

    Example:
        >>> class Net(torch.nn.Module):
        ...     def forward(self, x):
        ...         return torch.nn.functional.dropout(x, 0.5, self.training)
        >>> net = Net()
        >>> router = route_functional(net, seed=0)
        >>> x = torch.ones(2, 4)
        >>> torch.equal(net(x), net(x))  # routed: a new step each training call
        False
        >>> router.report().splitlines()[0]
        'routed 1 functional dropout call site(s)'
    """
    check_module(model)
    if hasattr(model, ROUTER_NAME):
        raise ValueError(f"model already has a {ROUTER_NAME!r} router; call unroute_functional")
    router = FunctionalDropoutRouter(seed=seed)
    router.train(model.training)
    for path, module in list(model.named_modules()):
        handles = router.__dict__.setdefault("_handles", [])
        handles.append(module.register_forward_pre_hook(_Enter(router, path)))
        handles.append(module.register_forward_hook(_Exit(router, path), always_call=True))
    model.add_module(ROUTER_NAME, router)
    return router


def unroute_functional(model: nn.Module) -> None:
    """Undo :func:`route_functional`: remove the router and its hooks."""
    router = getattr(model, ROUTER_NAME, None)
    if not isinstance(router, FunctionalDropoutRouter):
        raise ValueError(f"model has no {ROUTER_NAME!r} router to remove")
    for module in model.modules():
        for hooks in (module._forward_pre_hooks, module._forward_hooks):
            for key, hook in list(hooks.items()):
                if isinstance(hook, (_Enter, _Exit)) and hook.router is router:
                    del hooks[key]
    delattr(model, ROUTER_NAME)


register_unsupported(
    FunctionalDropoutRouter,
    "a functional-dropout router; call dropkit.surgery.unroute_functional(model) first",
    direction="to_torch",
)
