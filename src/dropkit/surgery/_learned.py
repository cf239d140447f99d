"""``surgery.convert(model, technique=...)`` for the learned-rate techniques: a model's dropout
becomes concrete dropout or standout, or its Linear/Conv2d layers become variational-dropout
layers (with the model's dropout removed: their weight noise replaces it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

import dropkit.nn as dk
from dropkit import _techniques
from dropkit.functional._learned import check_init_rate
from dropkit.nn._learned import LearnedDropoutModule
from dropkit.nn._variational import log_sigma2_at_rate

if TYPE_CHECKING:
    from dropkit.surgery._audit import Finding
    from dropkit.surgery._convert import ConversionReport

__all__ = ["convert_learned", "layer_twin", "learned_findings", "site_twin"]

#: Dropout with an elementwise mask (becomes ConcreteDropout / Standout) and with a
#: whole-channel mask (becomes SpatialConcreteDropout).
ELEMENTWISE = (nn.Dropout, dk.Dropout, dk.GaussianDropout)
CHANNEL = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, dk.SpatialDropout1d, dk.SpatialDropout2d,
           dk.SpatialDropout3d)  # fmt: skip


def initial_rate(module: nn.Module, p: float | None) -> float | None:
    """The initial learned rate: ``p`` when given, else the module's own rate if in (0, 1)."""
    if p is not None:
        return check_init_rate(p, "p")
    rate = float(getattr(module, "p", 0.0))
    return rate if 0.0 < rate < 1.0 else None


def site_twin(technique: str, module: nn.Module, rate: float) -> nn.Module | str:
    """The learned-rate module of ``technique`` (``"concrete"`` or ``"standout"``) for the
    dropout ``module``, starting at ``rate``, or why there is none."""
    channel = isinstance(module, CHANNEL)
    if not channel and not isinstance(module, ELEMENTWISE):
        return f"{technique} replaces elementwise or channel dropout, not {type(module).__name__}"
    if technique == "concrete":
        return (dk.SpatialConcreteDropout if channel else dk.ConcreteDropout)(init_p=rate)
    if channel:
        return "standout is elementwise: a channel dropout has no standout twin"
    return dk.Standout(init_p=rate)


def layer_twin(technique: str, module: nn.Module, p: float | None) -> nn.Module | str:
    """The variational layer of ``technique`` (``"vd"`` or ``"svd"``) for an ``nn.Linear`` or
    ``nn.Conv2d``, holding a copy of its weights (so the mean output is unchanged), or why
    there is none. ``p``: the initial rate (None: the layer's default)."""
    rate: dict[str, Any] = {} if p is None else {"init_p": check_init_rate(p, "p")}
    new: Any
    if type(module) is nn.Linear:
        linear = dk.VariationalDropoutLinear if technique == "vd" else dk.LinearSVDO
        new = linear(module.in_features, module.out_features, module.bias is not None, **rate)
    elif type(module) is nn.Conv2d:
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            return (
                f"padding_mode={module.padding_mode!r}, padding={module.padding!r}: only zero "
                "padding by ints has a variational twin"
            )
        conv = dk.VariationalDropoutConv2d if technique == "vd" else dk.Conv2dSVDO
        new = conv(
            module.in_channels, module.out_channels, module.kernel_size,  # type: ignore[arg-type]
            module.stride, module.padding, module.dilation,  # type: ignore[arg-type]
            module.groups, module.bias is not None, **rate,
        )  # fmt: skip
    else:
        return f"{type(module).__name__} has no variational twin (Linear and Conv2d have)"
    weight, bias = module.weight, module.bias
    new = new.to(weight.device, weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if isinstance(bias, Tensor):
            new.bias.copy_(bias)
        if technique == "svd" and p is not None:  # init_p ties log σ² to the (copied) weights
            new.log_sigma2.copy_(log_sigma2_at_rate(rate["init_p"], new.weight))
    return new


def convert_learned(
    model: nn.Module, technique: str, p: float | None, strict: bool, seed: int | None
) -> ConversionReport:
    """:func:`dropkit.surgery.convert` with a learned-rate ``technique`` (see there)."""
    from dropkit.surgery._convert import (
        ConversionReport,
        _device_of,
        _place,
        _type_name,
        apply_plan,
        is_dropout_like,
    )

    spec = _techniques.get(technique)
    if not spec.learned:
        raise ValueError(
            f"technique must be a learned-rate technique "
            f"{[n for n, s in _techniques.TECHNIQUES.items() if s.learned]} or None (torch -> "
            f"dropkit), got {technique!r}"
        )
    name = spec.name
    report = ConversionReport(model)
    plan: list[tuple[str, nn.Module, nn.Module]] = []
    device = _device_of(model)
    for path, module in model.named_modules():
        if isinstance(module, LearnedDropoutModule) or any(
            path.startswith(f"{done}.") for done, _, _ in plan if done
        ):
            continue
        result: nn.Module | str | None = None
        if spec.replaces:
            if _type_name(module) in spec.replaces:
                result = layer_twin(name, module, p)
            elif is_dropout_like(module) and not getattr(module, "routes_functional_dropout", 0):
                result = nn.Identity()  # the layers' weight noise replaces it
        elif is_dropout_like(module) and not getattr(module, "routes_functional_dropout", 0):
            rate = initial_rate(module, p)
            if rate is None:
                report.notes.append(
                    f"{path or '<root>'}: rate {getattr(module, 'p', None)} left as is (a "
                    "learned rate starts inside (0, 1): pass p= to start it there)"
                )
                continue
            result = site_twin(name, module, rate)
        if result is None:
            continue
        if isinstance(result, str):
            report.unsupported.append((path, _type_name(module), result))
            continue
        plan.append((path, module, _place(result, module, path, seed, device)))
    apply_plan(report, plan, strict, f"model to {name}")
    report.notes.append(
        f"{name} learns its rates: add dropkit.regularization(model, dataset_size=N) to the loss"
    )
    return report


def learned_findings(
    model: nn.Module, was_training: bool, modes: dict[nn.Module, bool]
) -> list[Finding]:
    """:func:`dropkit.surgery.audit`'s findings on learned-rate modules: an ``info`` row with
    each one's current rates, and ``active-in-eval`` for one that samples in an eval model
    (left in training or MC mode). ``modes``: every module's training flag before the audit."""
    from dropkit.surgery._audit import Finding

    findings = []
    for path, module in model.named_modules():
        if not isinstance(module, LearnedDropoutModule):
            continue
        rates = module.drop_rates().float().reshape(-1)
        spread = "" if rates.numel() == 1 else (
            f" (mean of {rates.numel()}, from {float(rates.min()):.3g} to "
            f"{float(rates.max()):.3g})"
        )  # fmt: skip
        findings.append(Finding(
            "info", "learned-rate", path,
            f"{type(module).__name__} learns its rate ({module.technique}): p = {module.p:.3g} "
            f"now{spread}",
            "train with loss + dropkit.regularization(model, dataset_size=N); "
            "dropkit.learned_rates(model) lists every rate",
        ))  # fmt: skip
        if not was_training and (modes.get(module, False) or module.mc):
            left_on = "MC mode" if module.mc else "training mode"
            findings.append(Finding(
                "error", "active-in-eval", path,
                f"{type(module).__name__} is in {left_on} inside a model in eval mode: it keeps "
                "sampling at inference",
                "use dropkit.mc_mode as a context manager (it restores the modes), or call "
                "module.set_mc_mode(False) / model.eval()",
            ))  # fmt: skip
    return findings
