"""Model factories for ``--model tests.experiments._factories:NAME`` in the tests."""

from __future__ import annotations

from torch import nn

from dropkit.experiments.techniques import Technique


def small_mlp(technique: Technique, p: float) -> nn.Module:
    """Four features to two classes, one dropout site."""
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), technique.make_layer("dense", p),
                         nn.Linear(16, 2))  # fmt: skip


def regressor(technique: Technique, p: float) -> nn.Module:
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), technique.make_layer("dense", p),
                         nn.Linear(8, 1))  # fmt: skip


def not_a_module(technique: Technique, p: float) -> object:
    return "a string"


def wrong_outputs(technique: Technique, p: float) -> nn.Module:
    return nn.Linear(4, 7)


NOT_CALLABLE = 3
