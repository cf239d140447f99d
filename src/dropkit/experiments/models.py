"""Small models whose dropout sites are filled by a technique, with a rate per site, and the
user's own models (``--model module:function``).

Every built-in model names its dropout sites ``drop1``, ``drop2``, ... (attributes of the
model), so a ``{name: rate}`` mapping addresses them, as :func:`dropkit.surgery.set_rates` does.
A user's model is a *factory* ``(technique, p) -> nn.Module``: it puts
``technique.make_layer(kind, p)`` wherever it wants dropout (``kind`` is ``"dense"``,
``"conv1d"``, ``"conv2d"`` or ``"sequence"``).
"""

from __future__ import annotations

import importlib
import itertools
import math
import os
import sys
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from dropkit.experiments._errors import UsageError
from dropkit.experiments.techniques import Technique, get_technique
from dropkit.functional._checks import check_p

__all__ = [
    "MODELS",
    "DropoutSites",
    "ModelFactory",
    "build_model",
    "check_factory",
    "is_custom",
    "load_factory",
    "model_sites",
    "register_factory",
    "registered_factories",
]

MODELS = ("mlp", "cnn", "gru")


class DropoutSites(nn.Module):
    """Base: builds ``drop1..dropK`` from a technique and records each site's kind."""

    site_kinds: list[str]

    def _add_sites(self, kinds: list[str], technique: Technique, rates: Sequence[float]) -> None:
        if len(rates) != len(kinds):
            raise ValueError(
                f"rates must have {len(kinds)} entries (one per site), got {len(rates)}"
            )
        self.site_kinds = kinds
        for index, (kind, rate) in enumerate(zip(kinds, rates, strict=True), start=1):
            usable = technique.uses_rate and kind in technique.site_kinds
            layer = technique.make_layer(kind, rate) if usable else nn.Identity()
            self.add_module(f"drop{index}", layer)

    def site(self, index: int) -> nn.Module:
        return self.get_submodule(f"drop{index}")


class MLP(DropoutSites):
    """``Linear -> ReLU -> dropout`` per hidden layer, then a linear head (Greydanus 2020's MLP
    with the default ``hidden=(100, 100)``)."""

    def __init__(
        self,
        in_features: int,
        outputs: int,
        technique: Technique,
        rates: Sequence[float],
        hidden: Sequence[int] = (100, 100),
    ) -> None:
        super().__init__()
        widths = [in_features, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.head = nn.Linear(widths[-1], outputs)
        self._add_sites(["dense"] * len(hidden), technique, rates)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        for index, layer in enumerate(self.hidden, start=1):
            x = self.site(index)(torch.relu(layer(x)))
        return self.head(x)


class CNN1d(DropoutSites):
    """Greydanus 2020's ConvBase: three ``Conv1d(stride 2) -> ReLU -> dropout``, a linear head."""

    def __init__(
        self,
        length: int,
        outputs: int,
        technique: Technique,
        rates: Sequence[float],
        channels: int = 25,
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [
                nn.Conv1d(1, channels, 5, stride=2, padding=1),
                nn.Conv1d(channels, channels, 3, stride=2, padding=1),
                nn.Conv1d(channels, channels, 3, stride=2, padding=1),
            ]
        )
        for kernel in (5, 3, 3):  # stride 2, padding 1
            length = (length + 2 - kernel) // 2 + 1
        self.head = nn.Linear(channels * length, outputs)
        self._add_sites(["conv1d"] * 3, technique, rates)

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(x.shape[0], 1, -1)
        for index, conv in enumerate(self.convs, start=1):
            x = self.site(index)(torch.relu(conv(x)))
        return self.head(x.flatten(1))


class CNN2d(DropoutSites):
    """Two ``Conv2d(3x3) -> ReLU -> MaxPool(2) -> dropout`` blocks, ``Linear -> ReLU ->
    dropout``, a linear head."""

    def __init__(
        self,
        shape: Sequence[int],
        outputs: int,
        technique: Technique,
        rates: Sequence[float],
        channels: Sequence[int] = (16, 32),
        hidden: int = 128,
    ) -> None:
        super().__init__()
        in_channels, height, width = shape
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(in_channels, channels[0], 3, padding=1),
                nn.Conv2d(channels[0], channels[1], 3, padding=1),
            ]
        )
        flat = channels[1] * (height // 4) * (width // 4)
        self.fc = nn.Linear(flat, hidden)
        self.head = nn.Linear(hidden, outputs)
        self._add_sites(["conv2d", "conv2d", "dense"], technique, rates)

    def forward(self, x: Tensor) -> Tensor:
        for index, conv in enumerate(self.convs, start=1):
            x = self.site(index)(torch.max_pool2d(torch.relu(conv(x)), 2))
        return self.head(self.site(3)(torch.relu(self.fc(x.flatten(1)))))


class GRUClassifier(DropoutSites):
    """Two stacked GRUs with dropout between them (a sequence site) and on the last state
    (a dense site). Input ``(N, T, F)``; a 1-D signal ``(N, L)`` is ``T = L, F = 1``; an image
    ``(N, C, H, W)`` is read row by row."""

    def __init__(
        self,
        features: int,
        outputs: int,
        technique: Technique,
        rates: Sequence[float],
        hidden: int = 64,
    ) -> None:
        super().__init__()
        self.gru1 = nn.GRU(features, hidden, batch_first=True)
        self.gru2 = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, outputs)
        self._add_sites(["sequence", "dense"], technique, rates)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(-1)
        elif x.dim() == 4:  # (N, C, H, W) -> rows as time steps
            x = x.permute(0, 2, 1, 3).flatten(2)
        hidden, _ = self.gru1(x)
        hidden, _ = self.gru2(self.site(1)(hidden))
        return self.head(self.site(2)(hidden[:, -1]))


def build_model(
    name: str,
    input_shape: Sequence[int],
    outputs: int,
    technique: Technique,
    rates: float | Sequence[float] = 0.0,
    width: int | None = None,
) -> DropoutSites:
    """Build model ``name`` (``mlp``, ``cnn`` or ``gru``) for inputs of ``input_shape``.

    ``cnn`` is 1-D for ``(L,)`` inputs and 2-D for ``(C, H, W)`` images. ``rates`` is one rate
    for every site or one per site (see :func:`model_sites`). ``width`` overrides the MLP's
    hidden width (100), the GRU's hidden size (64) or the 2-D CNN's dense layer (128).
    """
    kinds = model_sites(name, input_shape)
    per_site = [float(rates)] * len(kinds) if isinstance(rates, (int, float)) else list(rates)
    for index, rate in enumerate(per_site, start=1):
        check_p(rate, f"rate of drop{index}", allow_one=False)
    shape = tuple(input_shape)
    if name == "mlp":
        hidden = (width or 100,) * 2
        return MLP(math.prod(shape), outputs, technique, per_site, hidden=hidden)
    if name == "cnn":
        if len(shape) == 1:
            return CNN1d(shape[0], outputs, technique, per_site)
        return CNN2d(shape, outputs, technique, per_site, hidden=width or 128)
    features = 1 if len(shape) == 1 else shape[-1] * (shape[0] if len(shape) == 3 else 1)
    return GRUClassifier(features, outputs, technique, per_site, hidden=width or 64)


def model_sites(name: str, input_shape: Sequence[int]) -> list[str]:
    """The kinds of model ``name``'s dropout sites ``drop1, drop2, ...`` in order (a user's
    model, :func:`is_custom`, has one rate for all its sites: ``["any"]``)."""
    if is_custom(name):
        return ["any"]
    shape = tuple(input_shape)
    if name == "mlp":
        return ["dense", "dense"]
    if name == "cnn":
        if len(shape) == 1:
            return ["conv1d"] * 3
        if len(shape) == 3:
            return ["conv2d", "conv2d", "dense"]
        raise ValueError(f"model 'cnn' needs (L,) signals or (C, H, W) images, got inputs {shape}")
    if name == "gru":
        return ["sequence", "dense"]
    raise ValueError(f"model must be one of {MODELS} or a factory module:function, got {name!r}")


#: A user's model: ``(technique, p) -> nn.Module``.
ModelFactory = Callable[[Technique, float], nn.Module]
_FACTORIES: dict[str, ModelFactory] = {}


def is_custom(name: str) -> bool:
    """Whether ``name`` is a user's model factory (``module:function``), not a built-in."""
    return ":" in name


def register_factory(name: str, factory: ModelFactory) -> str:
    """Make ``factory`` the model called ``name`` (``module:function``) in this process and,
    through :func:`registered_factories`, in ``compare``'s workers; returns ``name``."""
    if not is_custom(name):
        raise UsageError(f"a model factory's name must be module:function, got {name!r}")
    _FACTORIES[name] = factory
    return name


def registered_factories(names: Sequence[str] | None = None) -> dict[str, ModelFactory]:
    """The factories added by :func:`register_factory` (those in ``names``, if given)."""
    return {k: v for k, v in _FACTORIES.items() if names is None or k in names}


def load_factory(spec: str) -> ModelFactory:
    """The factory ``module:function`` (registered, else imported; ``function`` may be dotted).

    Raises:
        UsageError: a malformed spec, a module that does not import, a missing attribute.
    """
    if spec in _FACTORIES:
        return _FACTORIES[spec]
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"--model must be module:function, got {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # as `python -m` would: the user's module beside them
    try:
        target: object = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise UsageError(
            f"--model {spec}: no module named {error.name!r} (is it on PYTHONPATH?)"
        ) from None
    except Exception as error:  # the user's module failed while importing
        raise UsageError(
            f"--model {spec}: importing {module_name!r} failed: {type(error).__name__}: {error}"
        ) from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UsageError(f"--model {spec}: module {module_name!r} has no {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise UsageError(
            f"--model {spec}: {attribute!r} is a {type(target).__name__}, not callable"
        )
    register_factory(spec, target)
    return _FACTORIES[spec]


def check_factory(
    spec: str, input_shape: Sequence[int], outputs: int, technique: str = "dropout"
) -> None:
    """Build the factory's model once and push two zero inputs through it.

    Raises:
        UsageError: it raised, did not return an ``nn.Module``, or gave the wrong output shape.
    """
    factory = load_factory(spec)
    for name, p in (("none", 0.0), (technique, 0.1)):
        try:
            model = factory(get_technique(name), p)
        except Exception as error:
            raise UsageError(
                f"--model {spec}: calling it with ({name}, p={p:g}) raised "
                f"{type(error).__name__}: {error}"
            ) from None
        if not isinstance(model, nn.Module):
            raise UsageError(
                f"--model {spec}: returned {type(model).__name__}, not a torch.nn.Module"
            )
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *input_shape))
    except Exception as error:
        raise UsageError(
            f"--model {spec}: a forward pass on inputs (2, {', '.join(map(str, input_shape))}) "
            f"raised {type(error).__name__}: {error}"
        ) from None
    wanted = [(2, outputs)] + ([(2,)] if outputs == 1 else [])
    if not isinstance(out, Tensor) or tuple(out.shape) not in wanted:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise UsageError(
            f"--model {spec}: output {shape} for inputs (2, {', '.join(map(str, input_shape))}); "
            f"the data need (N, {outputs})"
        )
