"""Tracing a model's dropout sites for :func:`summary` and :func:`audit`: a run under a
``TorchFunctionMode`` and forward hooks that records every module and functional dropout call
in execution order, and the snapshot/restore that leaves the model as it was."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from dropkit.nn._learned import LearnedDropoutModule
from dropkit.surgery._convert import is_dropout_like
from dropkit.surgery._functional import FunctionalDropoutRouter

__all__: list[str] = []

_FUNCTIONAL = {
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
    torch.dropout, torch.alpha_dropout,
}  # fmt: skip

_FUNCTIONAL_ARGS = ("input", "p", "training")


@dataclass
class _Event:
    path: str
    kind: Literal["module", "functional"]
    module: nn.Module | None
    type_name: str
    rate: float | None = None
    training_arg: bool | None = None
    owner_training: bool | None = None
    inputs: tuple[Tensor, ...] = ()
    output: Any = None

    @property
    def is_learned(self) -> bool:
        """A learned-rate module (concrete, variational, standout): a site with its own rates."""
        return isinstance(self.module, LearnedDropoutModule)

    @property
    def is_dropout(self) -> bool:
        return self.kind == "functional" or (
            self.module is not None and is_dropout_like(self.module)
        )


_Recorder = Callable[[Callable[..., Any], tuple[Any, ...], dict], "_Event | None"]


class _Observer(TorchFunctionMode):
    def __init__(self, record: _Recorder) -> None:
        super().__init__()
        self.record = record

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        event = self.record(func, args, kwargs) if func in _FUNCTIONAL else None
        output = func(*args, **kwargs)
        if event is not None:
            event.output = output
        return output


def _functional_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[float, bool]:
    values = dict(zip(_FUNCTIONAL_ARGS, args, strict=False))
    values.update({k: v for k, v in kwargs.items() if k in ("p", "training", "train")})
    training = values.get("training", values.get("train", True))
    return float(values.get("p", 0.5)), bool(training)


def _run(model: nn.Module, example_input: Any) -> Any:
    if isinstance(example_input, dict):
        return model(**example_input)
    if isinstance(example_input, tuple):
        return model(*example_input)
    return model(example_input)


def _trace(model: nn.Module, example_input: Any) -> tuple[list[_Event], Any]:
    """Run ``model`` once and return the leaf modules and functional dropout calls in the order
    they ran."""
    events: list[_Event] = []
    stack: list[tuple[str, nn.Module]] = []
    counts: dict[str, int] = {}
    handles = []

    def enter(path: str, leaf: bool) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any) -> None:
            stack.append((path, module))
            if leaf:
                tensors = tuple(t for t in inputs if isinstance(t, Tensor))
                events.append(_Event(path, "module", module, type(module).__name__,
                                     inputs=tensors))  # fmt: skip

        return hook

    def leave(module: nn.Module, inputs: Any, output: Any) -> None:
        if stack:
            stack.pop()
        for event in reversed(events):
            if event.module is module and event.output is None:
                event.output = output
                break

    def record(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict) -> _Event | None:
        path, owner = stack[-1] if stack else ("", model)
        if owner is not model and is_dropout_like(owner):
            return None  # a dropout module's own implementation, already an event
        key = f"{path}:{func.__name__}"
        index = counts.get(key, 0)
        counts[key] = index + 1
        rate, training = _functional_arguments(args, kwargs)
        x = args[0] if args else kwargs.get("input")
        event = _Event(
            f"{key}#{index}",
            "functional",
            None,
            f"F.{func.__name__}",
            rate,
            training,
            owner.training,
            inputs=(x,) if isinstance(x, Tensor) else (),
        )
        events.append(event)  # fmt: skip
        return event

    for path, module in model.named_modules():
        if isinstance(module, FunctionalDropoutRouter):
            continue
        leaf = _is_site(module) or not any(True for _ in module.children())
        handles.append(module.register_forward_pre_hook(enter(path, leaf)))
        handles.append(module.register_forward_hook(leave, always_call=True))
    # The observer is entered by a root pre-hook registered after any router's, and left by a
    # root hook that runs before the router's, so it sits above the routing mode on the stack
    # and sees the F.dropout calls before they are routed.
    observer = _Observer(record)

    def start_observing(module: nn.Module, inputs: Any) -> None:
        observer.__enter__()

    def stop_observing(module: nn.Module, inputs: Any, output: Any) -> None:
        observer.__exit__(None, None, None)

    handles.append(model.register_forward_pre_hook(start_observing))
    handles.append(model.register_forward_hook(stop_observing, prepend=True, always_call=True))
    try:
        output = _run(model, example_input)
    finally:
        for handle in handles:
            handle.remove()
    return events, output


class _FusedObserver(TorchFunctionMode):
    """Records ``scaled_dot_product_attention`` calls with a non-zero ``dropout_p``."""

    def __init__(self, stack: list[str]) -> None:
        super().__init__()
        self.stack = stack
        self.sites: list[tuple[str, float]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            dropout_p = kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0)
            if float(dropout_p) > 0:
                self.sites.append((self.stack[-1] if self.stack else "", float(dropout_p)))
        return func(*args, **kwargs)


def _fused_dropout_sites(
    model: nn.Module, example_input: Any
) -> tuple[list[tuple[str, float]], str | None]:
    """``(call site, dropout_p)`` of every attention call that fuses dropout into
    ``scaled_dot_product_attention`` in one training-mode forward (global RNG state kept)."""
    stack: list[str] = []
    handles = []

    def enter(path: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any) -> None:
            stack.append(path)

        return hook

    def leave(module: nn.Module, inputs: Any, output: Any) -> None:
        stack.pop()

    for path, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(enter(path)))
        handles.append(module.register_forward_hook(leave, always_call=True))
    observer = _FusedObserver(stack)
    model.train()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad(), observer:
            _run(model, example_input)
    except Exception as error:  # a model that cannot run in training mode on this input
        return (
            [],
            f"{type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''}",
        )
    finally:
        for handle in handles:
            handle.remove()
    counts: dict[str, int] = {}
    sites = []
    for path, rate in observer.sites:
        index = counts.get(path, 0)
        counts[path] = index + 1
        sites.append((f"{path}:scaled_dot_product_attention#{index}", rate))
    return sites, None


def _leaf_order(model: nn.Module) -> list[_Event]:
    return [
        _Event(path, "module", module, type(module).__name__)
        for path, module in model.named_modules()
        if not isinstance(module, FunctionalDropoutRouter)
        and (_is_site(module) or not any(True for _ in module.children()))
        and path
    ]


def _is_site(module: nn.Module) -> bool:
    return is_dropout_like(module) or isinstance(module, LearnedDropoutModule)


def _module_rate(module: nn.Module) -> float | None:
    for name in ("p", "drop_prob", "drop_rate"):
        value = getattr(module, name, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def _snapshot(model: nn.Module) -> tuple[dict[str, Tensor], dict[nn.Module, bool]]:
    state = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    return state, {m: m.training for m in model.modules()}


def _restore(model: nn.Module, snapshot: tuple[dict[str, Tensor], dict[nn.Module, bool]]) -> None:
    state, modes = snapshot
    model.load_state_dict(state)
    for module, training in modes.items():
        module.training = training


def _outputs_equal(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor):
        return isinstance(b, Tensor) and torch.equal(a, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_outputs_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_outputs_equal(a[k], b[k]) for k in a)
    if hasattr(a, "to_tuple"):  # Hugging Face ModelOutput
        return _outputs_equal(a.to_tuple(), b.to_tuple())
    return bool(a == b)
