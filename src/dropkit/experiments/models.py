"""Small models whose dropout sites are filled by a technique, with a rate per site.

Every model names its dropout sites ``drop1``, ``drop2``, ... (attributes of the model), so a
``{name: rate}`` mapping addresses them, as :func:`dropkit.surgery.set_rates` does.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dropkit.experiments.techniques import Technique
from dropkit.functional._checks import check_p

__all__ = ["MODELS", "DropoutSites", "build_model", "model_sites"]

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
    """The kinds of model ``name``'s dropout sites ``drop1, drop2, ...`` in order."""
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
    raise ValueError(f"model must be one of {MODELS}, got {name!r}")
