"""Model surgery: convert, to_torch, remove, insert, set_rates."""

from __future__ import annotations

import hashlib
import itertools
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

import dropkit.nn as dk
from dropkit import _techniques
from dropkit._patterns import ModuleSelector, matches, no_match_error
from dropkit.functional._checks import check_module, check_p, check_seed
from dropkit.schedules._scheduler import rate_modules, set_module_rate
from dropkit.surgery._registry import Direction, lookup

__all__ = [
    "PRESETS",
    "ConversionError",
    "ConversionReport",
    "convert",
    "insert",
    "is_dropout_like",
    "preset_rates",
    "remove",
    "set_rates",
    "site_seed",
    "to_torch",
    "torch_state_dict",
]

#: Usual rates by position (Srivastava et al. 2014: inputs 0.1-0.2, hidden 0.3-0.5, none on
#: the output layer).
PRESETS: dict[str, float] = {
    "input": 0.2,
    "input_low": 0.1,
    "hidden": 0.5,
    "hidden_low": 0.3,
    "output": 0.0,
}

_DROPOUT_NAME = re.compile(r"drop(out|path|block|connect)?|stochasticdepth", re.IGNORECASE)


class ConversionError(TypeError):
    """A module that looks like dropout could not be converted (see ``report.unsupported``)."""


@dataclass
class ConversionReport:
    """What a surgery call did: ``converted`` ``(path, from, to)`` rows, ``unsupported``
    ``(path, type, reason)`` rows, free-text ``notes``, and the resulting ``model`` (a new object
    only when the root module itself was replaced)."""

    model: nn.Module
    converted: list[tuple[str, str, str]] = field(default_factory=list)
    unsupported: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)} module(s)"]
        lines += [f"  {path or '<root>'}: {old} -> {new}" for path, old, new in self.converted]
        if self.unsupported:
            lines.append(f"not converted {len(self.unsupported)} module(s)")
            lines += [f"  {p or '<root>'}: {t}: {why}" for p, t, why in self.unsupported]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def site_seed(seed: int, name: str) -> int:
    """A 64-bit seed for the dropout site ``name`` derived from a model-wide ``seed``: stable
    across runs and processes, distinct per site."""
    check_seed(seed)
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def is_dropout_like(module: nn.Module) -> bool:
    """Whether ``module`` looks like a dropout layer: a dropkit or ``torch.nn`` dropout, or a
    leaf module whose class name says so (``DropPath``, ``MyDropout``, ``StochasticDepth``).
    Learned-rate layers (:class:`~dropkit.nn.LearnedDropoutModule`: concrete, variational,
    standout) are not: they hold weights, so ``remove`` must not delete them; ``summary`` and
    ``audit`` list them on their own."""
    if isinstance(module, (dk.DropoutModule, nn.modules.dropout._DropoutNd)):
        return True
    if isinstance(module, dk.LearnedDropoutModule) or any(True for _ in module.children()):
        return False
    return bool(_DROPOUT_NAME.search(type(module).__name__))


def _type_name(module: nn.Module) -> str:
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def _device_of(model: nn.Module) -> torch.device | None:
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return None if tensor is None else tensor.device


def _replace(root: nn.Module, path: str, new: nn.Module) -> nn.Module:
    """Put ``new`` at ``path`` in ``root``; returns the (possibly new) root."""
    if not path:
        return new
    parent_path, _, child = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, child, new)
    return root


def _check_model_and_seed(model: object, seed: object) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if seed is not None:
        check_seed(seed)


def _surgery(
    model: nn.Module,
    direction: Direction,
    strict: bool,
    seed: int | None,
) -> ConversionReport:
    _check_model_and_seed(model, seed)
    plan: list[tuple[str, nn.Module, nn.Module]] = []
    report = ConversionReport(model)
    device = _device_of(model)
    for path, module in model.named_modules():
        if direction == "to_torch":
            if not isinstance(module, (dk.DropoutModule, dk.LearnedDropoutModule)):
                continue
        elif isinstance(module, dk.DropoutModule):
            continue  # dropkit's drop-ins derive from torch.nn dropout classes: never reconvert
        entry = lookup(module, direction)
        if entry is None:
            if (
                direction == "to_dropkit"
                and is_dropout_like(module)
                and not isinstance(module, dk.DropoutModule)
            ):
                report.unsupported.append(
                    (path, _type_name(module), "unknown dropout-like type; register a conversion "
                     "with dropkit.surgery.register_conversion")
                )  # fmt: skip
            continue
        result = entry if isinstance(entry, str) else entry(module)
        if isinstance(result, str):
            report.unsupported.append((path, _type_name(module), result))
            continue
        plan.append((path, module, _place(result, module, path, seed, device)))
    return apply_plan(report, plan, strict, "model")


def _place(
    result: nn.Module, module: nn.Module, path: str, seed: int | None, device: torch.device | None
) -> nn.Module:
    """``result`` made ready to stand in for ``module``: its site seed, device and mode."""
    if seed is not None and isinstance(result, (dk.DropoutModule, dk.LearnedDropoutModule)):
        result.reset_seed(site_seed(seed, path))
    if device is not None:
        result = result.to(device)
    result.train(module.training)
    return result


def apply_plan(
    report: ConversionReport,
    plan: list[tuple[str, nn.Module, nn.Module]],
    strict: bool,
    what: str,
) -> ConversionReport:
    """Carry out a conversion plan: refuse it whole (strict) if anything is unsupported, else
    swap every planned module and warn once per module left as it was."""
    if report.unsupported and strict:
        listing = "; ".join(f"{p or '<root>'} ({t}): {why}" for p, t, why in report.unsupported)
        raise ConversionError(
            f"cannot convert {len(report.unsupported)} module(s) of {what}: {listing} "
            "(pass strict=False to convert the rest and report these)"
        )
    for path, module, result in plan:
        report.model = _replace(report.model, path, result)
        report.converted.append((path, type(module).__name__, _type_name(result)))
    for path, kind, why in report.unsupported:
        # stacklevel: this function, the conversion, the public entry point, the user's line
        warnings.warn(f"dropkit: not converted {path or '<root>'} ({kind}): {why}", stacklevel=4)
    return report


def convert(
    model: nn.Module,
    *,
    strict: bool = True,
    seed: int | None = None,
    technique: str | None = None,
    p: float | None = None,
) -> ConversionReport:
    """Replace every ``torch.nn`` dropout of ``model`` (in place) by its dropkit equivalent, or
    (with ``technique``) swap the model's dropout for a learned-rate technique.

    ``Dropout`` → :class:`dropkit.nn.Dropout`, ``Dropout1d/2d/3d`` →
    ``SpatialDropout1d/2d/3d``, ``AlphaDropout``/``FeatureAlphaDropout`` → their dropkit twins,
    plus whatever :func:`register_conversion` adds. Rates and training mode are kept, so eval
    outputs are unchanged. Modules that look like dropout but have no conversion (timm
    ``DropPath``/``DropBlock2d``, torchvision ``StochasticDepth`` in this build, unknown
    ``*Drop*`` classes) are reported: an error listing them when ``strict`` (default), else a
    warning each and rows in ``report.unsupported``. Nothing is changed when the error is raised.

    Args:
        model: any ``nn.Module``.
        strict: raise :class:`ConversionError` on modules that cannot be converted.
        seed: derive each site's seed from this model-wide seed and its path
            (:func:`site_seed`); by default each draws one from PyTorch's generator.
        technique: a learned-rate technique of the registry instead of the torch -> dropkit
            conversion: ``"concrete"`` (each elementwise dropout becomes
            :class:`~dropkit.nn.ConcreteDropout`, each channel dropout
            :class:`~dropkit.nn.SpatialConcreteDropout`), ``"standout"`` (each elementwise
            dropout becomes a layer-less :class:`~dropkit.nn.Standout`), ``"vd"`` / ``"svd"``
            (each ``nn.Linear`` / ``nn.Conv2d`` becomes its variational twin holding the same
            weights, and every dropout module becomes ``nn.Identity``: the weight noise
            replaces it). Other dropout types are left as they are; add
            :func:`dropkit.regularization` to the loss (``report.notes`` says so).
        p: the initial learned rate (in (0, 1)); None: each dropout's own rate (concrete,
            standout; a rate-0 dropout is then left as is, with a note) or the layer's default
            (vd: 0.2; svd: the paper's ``log σ² = -10``).

    Returns:
        a :class:`ConversionReport`; ``report.model`` is the converted model.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.1))
        >>> convert(model, seed=0).converted
        [('1', 'Dropout', 'dropkit.nn._elementwise.Dropout')]
        >>> convert(model, technique="concrete").converted
        [('1', 'Dropout', 'dropkit.nn._concrete.ConcreteDropout')]
    """
    if technique is not None:
        from dropkit.surgery._learned import convert_learned

        return convert_learned(model, technique, p, strict, seed)
    if p is not None:
        raise TypeError("convert: p= sets the initial rate of a learned technique= only")
    return _surgery(model, "to_dropkit", strict, seed)


def to_torch(model: nn.Module, *, strict: bool = True) -> ConversionReport:
    """Replace every dropkit dropout of ``model`` (in place) by its ``torch.nn`` equivalent, for
    export to code without dropkit. Modules with no equivalent (Gaussian or locked dropout,
    standard mode, a ``noise_shape``) are reported as in :func:`convert`.

    Example:
        >>> import torch, dropkit
        >>> model = torch.nn.Sequential(dropkit.nn.Dropout(0.1))
        >>> type(to_torch(model).model[0]).__name__
        'Dropout'
    """
    return _surgery(model, "to_torch", strict, None)


def torch_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """``model.state_dict()`` without dropkit's own buffers (each dropout module's ``rate``,
    ``seed`` and ``step``): what the same model with ``torch.nn`` dropout holds, so it loads
    ``strict=True`` into the unconverted model (or after :func:`to_torch`).

    The other direction needs no helper: a ``torch.nn`` model's state dict loads ``strict=True``
    into the converted model, whose dropout modules keep their rates, seeds and steps.

    Example:
        >>> import copy
        >>> plain = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.1))
        >>> converted = convert(copy.deepcopy(plain), seed=0).model
        >>> plain.load_state_dict(torch_state_dict(converted), strict=True)
        <All keys matched successfully>
    """
    own = {
        f"{path}.{name}" if path else name
        for path, module in model.named_modules()
        if isinstance(module, dk.DropoutModule)
        for name in module.dropkit_buffers
    }
    return {k: v for k, v in model.state_dict().items() if k not in own}


class _DropoutAfter:
    """Forward hook applying the dropout stored at ``parent.<name>`` to a module's output.

    The dropout is looked up by name at each call, so converting or re-rating it keeps working,
    and ``copy.deepcopy`` maps ``parent`` to the copy's parent.
    """

    def __init__(self, parent: nn.Module, name: str) -> None:
        self.parent = parent
        self.name = name

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        dropout = getattr(self.parent, self.name, None)
        if dropout is None:
            return output
        if not isinstance(output, Tensor):
            raise TypeError(
                f"dropkit.surgery.insert: {type(module).__name__} returned "
                f"{type(output).__name__}, but dropout can only follow a module returning a "
                "Tensor"
            )
        return dropout(output)


_Technique = str | type[nn.Module] | Callable[[float], nn.Module]


def _make_technique(technique: _Technique, p: float) -> nn.Module:
    if isinstance(technique, str):
        try:
            spec = _techniques.get(technique)
        except ValueError:
            raise ValueError(
                f"technique must be one of {_techniques.names(aliases=True)} or a module "
                f"factory, got {technique!r}"
            ) from None
        if spec.replaces:
            raise ValueError(
                f"technique {spec.name!r} replaces layers (noise on their weights), it is not "
                f"inserted after them: use dropkit.surgery.convert(model, technique={spec.name!r})"
            )
        return spec.build(p)
    if not callable(technique):
        raise TypeError(f"technique must be a name or a callable p -> module, got {technique!r}")
    return technique(p)


def insert(
    model: nn.Module,
    after: ModuleSelector,
    technique: _Technique = "dropout",
    p: float = 0.1,
    *,
    strict: bool = True,
    seed: int | None = None,
) -> ConversionReport:
    """Add dropout after every module selected by ``after`` (a name pattern or a type).

    The new dropout is registered beside its host as ``<host>_dropout`` (so existing
    ``state_dict`` keys are unchanged) and applied to the host's output by a forward hook;
    :func:`remove` takes it out again.

    Args:
        model: any ``nn.Module``.
        after: ``fnmatch`` pattern over qualified names, or a module type.
        technique: a registered technique name (``dropkit._techniques``: ``"dropout"``,
            ``"alpha"``, ``"feature_alpha"``, ``"gaussian"``, ``"spatial1d/2d/3d"``,
            ``"locked"``, ``"drop_path"``, ``"drop_block2d/3d"``, or an alias such as
            ``"gaussian_dropout"``), or a callable ``p -> module``.
        p: the rate, in [0, 1].
        strict: a selector that matches nothing is an error listing near matches.
        seed: model-wide seed for the new sites (see :func:`site_seed`).

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
        >>> [row[0] for row in insert(model, after=torch.nn.ReLU, p=0.2).converted]
        ['1_dropout']
    """
    _check_model_and_seed(model, seed)
    p = check_p(p)
    named = {n: m for n, m in model.named_modules() if n and not is_dropout_like(m)}
    selected = [n for n, m in named.items() if matches(after, n, m)]
    if not selected and strict:
        raise no_match_error(after, named, "module")
    report = ConversionReport(model)
    device = _device_of(model)
    for path in selected:
        host = model.get_submodule(path)
        parent_path, _, child = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        name = f"{child}_dropout"
        while hasattr(parent, name):
            name += "_"
        dropout = _make_technique(technique, p)
        if seed is not None and isinstance(dropout, (dk.DropoutModule, dk.LearnedDropoutModule)):
            dropout.reset_seed(site_seed(seed, path))
        if device is not None:
            dropout = dropout.to(device)
        dropout.train(host.training)
        parent.add_module(name, dropout)
        host.register_forward_hook(_DropoutAfter(parent, name))
        full = f"{parent_path}.{name}" if parent_path else name
        report.converted.append((full, "(inserted)", _type_name(dropout)))
    return report


def remove(
    model: nn.Module, selector: ModuleSelector | None = None, *, strict: bool = True
) -> ConversionReport:
    """Take dropout out of ``model``: every dropout-like module (or those ``selector`` picks) is
    replaced by ``nn.Identity``, and dropout added by :func:`insert` is unhooked.

    A dropkit ``Dropout(mode="standard")`` scales by ``1 - p`` at inference; removing it
    changes eval outputs, which the report notes. Functional dropout (``F.dropout`` in
    ``forward``) lives in the model's code: it is switched off only where it is routed
    (:func:`route_functional`), by setting the router's rate to 0.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.1))
        >>> type(remove(model).model[1]).__name__
        'Identity'
    """
    sites = {n: m for n, m in model.named_modules() if is_dropout_like(m)}
    selected = [n for n, m in sites.items() if selector is None or matches(selector, n, m)]
    if selector is not None and not selected and strict:
        raise no_match_error(selector, sites, "dropout module")
    report = ConversionReport(model)
    removed = set(selected)
    paths = {id(m): n for n, m in model.named_modules()}
    for module in list(model.modules()):
        for key, hook in list(module._forward_hooks.items()):
            if isinstance(hook, _DropoutAfter):
                parent_path = paths[id(hook.parent)]
                path = f"{parent_path}.{hook.name}" if parent_path else hook.name
                if path in removed:
                    del module._forward_hooks[key]
                    delattr(hook.parent, hook.name)
                    report.converted.append((path, "(inserted)", "(removed)"))
                    removed.discard(path)
    for path in selected:
        if path not in removed:
            continue
        module = sites[path]
        if getattr(module, "routes_functional_dropout", False):
            # The F.dropout calls are in the model's code: disable them through the router.
            module.p = 0.0
            report.converted.append((path, type(module).__name__, "rate 0 (routed calls off)"))
            continue
        if isinstance(module, dk.Dropout) and module.mode == "standard":
            report.notes.append(
                f"{path}: mode='standard' scaled eval outputs by 1 - p = {1 - module.p_eff:g}; "
                "they are now unscaled"
            )
        report.model = _replace(report.model, path, nn.Identity())
        report.converted.append((path, type(module).__name__, "torch.nn.Identity"))
    return report


def preset_rates(model: nn.Module) -> dict[str, str]:
    """Classify each dropout module as ``"input"``, ``"hidden"`` or ``"output"`` by where it is
    defined: before the first module with parameters, after the last one, or between."""
    order = [(n, m) for n, m in model.named_modules() if not any(True for _ in m.children())]
    weighted = [i for i, (_, m) in enumerate(order) if any(True for _ in m.parameters(False))]
    first, last = (weighted[0], weighted[-1]) if weighted else (len(order), -1)
    # A functional-dropout router has no position of its own: its calls keep their own rates.
    rated = {n for n, m in rate_modules(model).items()
             if not getattr(m, "routes_functional_dropout", False)}  # fmt: skip
    positions = {}
    for index, (name, _) in enumerate(order):
        if name in rated:
            positions[name] = "input" if index < first else "output" if index > last else "hidden"
    return positions


def set_rates(
    model: nn.Module,
    rates: Mapping[ModuleSelector, float | str] | str,
    *,
    strict: bool = True,
) -> dict[str, float]:
    """Set layer-specific rates: ``{pattern or type: rate or preset name}``, applied in order
    (later entries override earlier ones), or ``"presets"`` to rate each dropout module by its
    position (:func:`preset_rates`: inputs 0.2, hidden 0.5, output 0).

    Preset names: ``"input"`` 0.2, ``"input_low"`` 0.1, ``"hidden"`` 0.5, ``"hidden_low"`` 0.3,
    ``"output"`` 0. Rates are written in place (dropkit ``rate`` buffers: no recompile).

    Returns:
        the new rate of every module that was set, by qualified name.

    Example:
        >>> import torch, dropkit
        >>> model = torch.nn.Sequential(dropkit.nn.Dropout(0.5), torch.nn.Linear(4, 4))
        >>> set_rates(model, {"0": "input_low"})
        {'0': 0.1}

    References:
        Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from
        Overfitting", JMLR 2014 (rates by position).
    """
    check_module(model)
    candidates = rate_modules(model)
    if isinstance(rates, str):
        if rates != "presets":
            raise ValueError(f"rates must be a mapping or 'presets', got {rates!r}")
        rates = {name: position for name, position in preset_rates(model).items()}
    resolved: list[tuple[ModuleSelector, float]] = []
    for selector, rate in rates.items():
        if isinstance(rate, str):
            if rate not in PRESETS:
                raise ValueError(
                    f"rates[{selector!r}] must be a float in [0, 1] or a preset name in "
                    f"{sorted(PRESETS)}, got {rate!r}"
                )
            rate = PRESETS[rate]
        resolved.append((selector, check_p(rate, f"rates[{selector!r}]")))
    changed: dict[str, float] = {}
    for selector, rate in resolved:
        selected = [n for n, m in candidates.items() if matches(selector, n, m)]
        if not selected and strict:
            raise no_match_error(selector, candidates, "dropout module")
        for name in selected:
            set_module_rate(candidates[name], rate)
            changed[name] = rate
    return changed
