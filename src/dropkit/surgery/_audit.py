"""``audit``: best-practice findings on a model's dropout sites (placement, rates, scaling,
residual branches)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

import dropkit.nn as dk
from dropkit.functional._checks import check_module
from dropkit.surgery._convert import is_dropout_like
from dropkit.surgery._functional import FunctionalDropoutRouter
from dropkit.surgery._learned import learned_findings
from dropkit.surgery._trace import (
    _Event,
    _fused_dropout_sites,
    _module_rate,
    _outputs_equal,
    _restore,
    _snapshot,
    _trace,
)

__all__ = ["AuditReport", "Finding", "audit"]

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
    * ``learned-rate`` (info): a learned-rate module (concrete, variational, standout) and its
      current rates; ``active-in-eval`` (error) when one samples in an eval model.
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
    check_module(model)
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
        findings.extend(learned_findings(model, was_training, snapshot[1]))
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
