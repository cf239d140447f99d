"""``summary`` (every dropout site in a table) and ``audit`` (best-practice findings)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

import dropkit.nn as dk
from dropkit.surgery._convert import is_dropout_like
from dropkit.surgery._functional import FunctionalDropoutRouter

__all__ = ["AuditReport", "DropoutSite", "DropoutSummary", "Finding", "audit", "summary"]

_FUNCTIONAL = {
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
    torch.dropout, torch.alpha_dropout,
}  # fmt: skip
_FUNCTIONAL_ARGS = ("input", "p", "training")
_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU,
    nn.SELU, nn.CELU, nn.PReLU, nn.Hardswish, nn.Hardsigmoid, nn.Softmax, nn.LogSoftmax,
    nn.Softplus, nn.GLU,
)  # fmt: skip
_TRANSPARENT = (
    *_ACTIVATIONS, nn.Identity, nn.Flatten, nn.Unflatten,
    nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
)  # fmt: skip


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
        leaf = is_dropout_like(module) or not any(True for _ in module.children())
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
        and (is_dropout_like(module) or not any(True for _ in module.children()))
        and path
    ]


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
        if not event.is_dropout:
            continue
        module = event.module
        rate = event.rate if module is None else _module_rate(module)
        schedule = schedules.get(event.path)
        rows.append(
            DropoutSite(
                path=event.path,
                technique=event.type_name,
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


def _module_rate(module: nn.Module) -> float | None:
    for name in ("p", "drop_prob", "drop_rate"):
        value = getattr(module, name, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


Severity = Literal["error", "warning", "info"]


@dataclass
class Finding:
    """One audit result: what is wrong, where, how bad, and how to fix it."""

    severity: Severity
    code: str
    path: str
    message: str
    fix: str


@dataclass
class AuditReport:
    """The findings of :func:`audit`; empty on a model that follows the best practices."""

    findings: list[Finding] = field(default_factory=list)

    @property
    def codes(self) -> set[str]:
        return {finding.code for finding in self.findings}

    def __len__(self) -> int:
        return len(self.findings)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.findings)

    def __str__(self) -> str:
        if not self.findings:
            return "audit: no findings"
        return "\n".join(
            f"[{f.severity}] {f.code} at {f.path or '<root>'}: {f.message}\n    fix: {f.fix}"
            for f in self.findings
        )


def _is_alpha(event: _Event) -> bool:
    alpha_types = (dk.AlphaDropout, dk.FeatureAlphaDropout, nn.AlphaDropout, nn.FeatureAlphaDropout)
    return isinstance(event.module, alpha_types) or "alpha" in event.type_name


def _unscaled(module: nn.Module | None) -> bool:
    if isinstance(module, dk.Dropout):
        return module.mode == "standard"
    return module is not None and getattr(module, "scale_by_keep", True) is False


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


def _residual_sites(model: nn.Module, paths: set[str]) -> tuple[set[str], str | None]:
    """Dropout modules among ``paths`` whose output is added to a tensor that shares an ancestor
    with their input (a residual branch), found by FX tracing with dropout as leaves."""
    import torch.fx

    class _Tracer(torch.fx.Tracer):
        def is_leaf_module(self, module: nn.Module, name: str) -> bool:
            return is_dropout_like(module) or super().is_leaf_module(module, name)

    try:
        graph = _Tracer().trace(model)
    except Exception as error:  # any tracing failure means the check cannot run
        return set(), f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
    ancestors: dict[torch.fx.Node, set[torch.fx.Node]] = {}
    for node in graph.nodes:
        found: set[torch.fx.Node] = set()
        for parent in node.all_input_nodes:
            found |= {parent} | ancestors[parent]
        ancestors[node] = found
    adds = [n for n in graph.nodes
            if n.target in (torch.add, "add", "add_", torch.Tensor.add) or n.name.startswith("add")
            or getattr(n.target, "__name__", "") in ("add", "iadd")]  # fmt: skip
    hits = set()
    for node in graph.nodes:
        if node.op != "call_module" or node.target not in paths:
            continue
        for add in adds:
            inputs = add.all_input_nodes
            if len(inputs) != 2 or node not in ancestors[add]:
                continue
            on_first = node in ({inputs[0]} | ancestors[inputs[0]])
            other = inputs[1] if on_first else inputs[0]
            if node in ({other} | ancestors[other]):
                continue
            if (ancestors[node] | {node}) & (ancestors[other] | {other}) - {node}:
                hits.add(str(node.target))
    return hits, None


def audit(model: nn.Module, example_input: Any) -> AuditReport:
    """Check ``model``'s dropout against the best practices of the literature.

    Runs the model a few times under ``no_grad`` (its state, steps and modes are restored).
    Findings (``code``: severity):

    * ``dropout-before-batchnorm`` (warning): a BatchNorm is the next layer after dropout
      (activations, pooling and identity skipped): the variance shift between train and eval
      hurts accuracy (Li et al. 2019). Put dropout after the last BatchNorm.
    * ``dropout-on-output`` (warning): dropout is the last layer run, so it perturbs the
      predictions themselves. Remove it or set its rate to 0.
    * ``rate-out-of-range`` (warning; error at ``p = 1``): above 0.5 for hidden units, above 0.2
      for inputs, above 0.1 for alpha dropout (Srivastava et al. 2014; Klambauer et al. 2017).
    * ``active-in-eval`` (error): after ``model.eval()`` a dropout module still samples, or two
      eval runs differ.
    * ``functional-ignores-training`` (error): an ``F.dropout`` call with ``training=True`` inside
      a module in eval mode (the classic forgotten ``training=self.training``).
    * ``duplicated-dropout`` (warning): two dropout layers in a row with nothing but
      activations between them.
    * ``residual-unscaled`` (warning): dropout without inverted scaling (``mode="standard"``,
      ``scale_by_keep=False``) inside a residual branch, so the branch's expected contribution
      differs between training and eval. Found by FX tracing; an ``info`` finding says when the
      model cannot be traced.
    * ``unreachable-dropout`` (warning): in a training-mode forward (global RNG state kept),
      attention dropout fused into ``scaled_dot_product_attention`` (``dropout_p > 0``), which
      dropkit cannot reach; an eager attention implementation plus
      :func:`~dropkit.surgery.route_functional` makes it reachable.

    Args:
        model: any ``nn.Module``.
        example_input: a tensor, a tuple of positional arguments, or a dict of keyword
            arguments.

    Returns:
        an :class:`AuditReport` (iterable of :class:`Finding`; ``report.codes``).

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.3),
        ...                             torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
        >>> sorted(audit(model, torch.randn(3, 4)).codes)
        ['dropout-before-batchnorm']

    References:
        Li, Chen, Hu & Yang, "Understanding the Disharmony between Dropout and Batch
        Normalization by Variance Shift", CVPR 2019.
    """
    report = AuditReport()
    findings = report.findings
    snapshot = _snapshot(model)
    try:
        was_training = model.training
        if not was_training:
            for path, module in model.named_modules():
                if is_dropout_like(module) and module.training and _module_rate(module) != 0:
                    findings.append(Finding(
                        "error", "active-in-eval", path,
                        f"{type(module).__name__} is in training mode inside a model in eval "
                        "mode: it keeps sampling at inference (MC mode left on?)",
                        "call model.eval() after MC sampling, or dropkit's MC helpers that "
                        "restore modes",
                    ))  # fmt: skip
        model.eval()
        stuck = [
            path for path, module in model.named_modules()
            if is_dropout_like(module) and module.training and _module_rate(module) != 0
        ]  # fmt: skip
        for path in stuck:
            if path not in {f.path for f in findings}:
                findings.append(Finding(
                    "error", "active-in-eval", path,
                    "still in training mode after model.eval() (does it override train()?)",
                    "let train()/eval() reach this module",
                ))  # fmt: skip
        with torch.no_grad():
            events, first = _trace(model, example_input)
            _, second = _trace(model, example_input)
        if not _outputs_equal(first, second) and not any(
            f.code == "active-in-eval" for f in findings
        ):
            findings.append(Finding(
                "error", "active-in-eval", "",
                "two forward passes in eval mode gave different outputs",
                "find the layer that samples in eval (see functional-ignores-training) and make "
                "it follow self.training",
            ))  # fmt: skip
        findings.extend(_placement_findings(model, events, first))
        fused, error = _fused_dropout_sites(model, example_input)
        if error is not None:
            findings.append(Finding(
                "info", "fused-check-skipped", "",
                f"could not run the model in training mode to look for fused attention "
                f"dropout ({error})",
                "check by hand for scaled_dot_product_attention(dropout_p > 0) in the model",
            ))  # fmt: skip
        for site, rate in fused:
            findings.append(Finding(
                "warning", "unreachable-dropout", site,
                f"attention dropout (dropout_p={rate:g}) is fused into "
                "scaled_dot_product_attention: dropkit cannot seed, schedule or MC-sample it",
                "load the model with an eager attention implementation (Hugging Face: "
                "attn_implementation='eager') and route it with "
                "dropkit.surgery.route_functional, or set its rate to 0",
            ))  # fmt: skip
    finally:
        _restore(model, snapshot)
    return report


def _event_rate(event: _Event) -> float | None:
    return event.rate if event.module is None else _module_rate(event.module)


def _dropout_source(
    tensor: object, producers: dict[int, int], events: Sequence[_Event]
) -> int | None:
    """The index of the dropout event ``tensor`` comes from through transparent layers only
    (activations, pooling, identity), or None. In eval, dropout returns its input itself, so a
    tensor's last producer is the dropout that passed it on."""
    seen = 0
    while isinstance(tensor, Tensor) and id(tensor) in producers and seen < len(events):
        index = producers[id(tensor)]
        event = events[index]
        if event.is_dropout:
            return index
        if not isinstance(event.module, _TRANSPARENT) or not event.inputs:
            return None
        tensor = event.inputs[0]
        seen += 1
    return None


def _placement_findings(model: nn.Module, events: list[_Event], model_output: Any) -> list[Finding]:
    findings: list[Finding] = []
    routed = any(isinstance(m, FunctionalDropoutRouter) for m in model.modules())
    producers: dict[int, int] = {}
    consumers: dict[int, list[_Event]] = {}
    for index, event in enumerate(events):
        if event.inputs:
            source = _dropout_source(event.inputs[0], producers, events)
            if source is not None and source != index:
                consumers.setdefault(source, []).append(event)
        if isinstance(event.output, Tensor):
            producers[id(event.output)] = index
    outputs = model_output.to_tuple() if hasattr(model_output, "to_tuple") else model_output
    outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    output_sources = {_dropout_source(t, producers, events) for t in outputs}
    sites = [(i, e) for i, e in enumerate(events) if e.is_dropout]
    first_weighted = next(
        (i for i, e in enumerate(events)
         if e.module is not None and any(True for _ in e.module.parameters(False))),
        len(events),
    )  # fmt: skip
    for index, event in sites:
        rate = _event_rate(event)
        active = rate is None or rate > 0
        if event.kind == "functional" and event.training_arg and not event.owner_training:
            if routed:
                findings.append(Finding(
                    "info", "functional-ignores-training", event.path,
                    f"{event.type_name} is called with training=True while its module is in "
                    "eval mode; the functional-dropout router keeps it from sampling",
                    "pass training=self.training in the model's code",
                ))  # fmt: skip
            else:
                findings.append(Finding(
                    "error", "functional-ignores-training", event.path,
                    f"{event.type_name} is called with training=True while its module is in "
                    "eval mode: it drops units at inference",
                    "pass training=self.training, or route it with "
                    "dropkit.surgery.route_functional",
                ))  # fmt: skip
        if not active:
            continue
        if rate is not None:
            findings.extend(_rate_findings(event, rate, index < first_weighted))
        for consumer in consumers.get(index, []):
            if isinstance(consumer.module, nn.modules.batchnorm._BatchNorm) and not _is_alpha(
                event
            ):
                findings.append(Finding(
                    "warning", "dropout-before-batchnorm", event.path,
                    f"dropout feeds {consumer.type_name} ({consumer.path}): the variance shift "
                    "between training and inference hurts accuracy (Li et al. 2019)",
                    "move dropout after the last BatchNorm, or use a low rate there",
                ))  # fmt: skip
            elif consumer.is_dropout and _event_rate(consumer) != 0:
                findings.append(Finding(
                    "warning", "duplicated-dropout", consumer.path,
                    f"dropout follows dropout ({event.path}) with nothing but activations "
                    "between: the rates compound",
                    "keep one of them, with the combined rate 1 - (1 - p1)(1 - p2)",
                ))  # fmt: skip
        if index in output_sources:
            findings.append(Finding(
                "warning", "dropout-on-output", event.path,
                "the model's output comes straight from dropout: it perturbs the predictions",
                "remove it (dropkit.surgery.remove) or set its rate to 0 (preset 'output')",
            ))  # fmt: skip
    unscaled = {e.path for _, e in sites if _unscaled(e.module)}
    if unscaled:
        residual, error = _residual_sites(model, unscaled)
        if error is not None:
            findings.append(Finding(
                "info", "residual-check-skipped", "",
                f"could not FX-trace the model to check residual branches ({error})",
                "check by hand that dropout in residual branches scales by 1/(1-p)",
            ))  # fmt: skip
        for path in sorted(residual):
            findings.append(Finding(
                "warning", "residual-unscaled", path,
                "dropout without 1/(1-p) scaling inside a residual branch: the branch's "
                "expected contribution differs between training and inference",
                "use inverted dropout (mode='inverted', scale_by_keep=True)",
            ))  # fmt: skip
    return findings


def _rate_findings(event: _Event, rate: float, is_input: bool) -> list[Finding]:
    if rate >= 1.0:
        return [Finding("error", "rate-out-of-range", event.path,
                        "rate 1 drops every unit", "use a rate below 0.5")]  # fmt: skip
    limit, where = (0.1, "alpha dropout (Klambauer et al. 2017: 0.05-0.1)") if _is_alpha(event) \
        else (0.2, "input dropout (usual 0.1-0.2)") if is_input \
        else (0.5, "hidden units (usual 0.3-0.5)")  # fmt: skip
    if rate > limit:
        return [Finding(
            "warning", "rate-out-of-range", event.path,
            f"rate {rate:g} is above the usual maximum {limit:g} for {where}",
            f"lower the rate to at most {limit:g} (dropkit.surgery.set_rates)",
        )]  # fmt: skip
    return []
