"""The registry of dropout techniques that ``dropkit compare`` and ``search`` can try.

A technique says which module to put at each dropout *site* of a model (a site has a kind:
``"dense"`` ``(N, F)``, ``"conv1d"`` ``(N, C, L)``, ``"conv2d"`` ``(N, C, H, W)`` or
``"sequence"`` ``(N, T, H)``), and optionally how the rate moves over training: a factory
``(target_rate, epochs) -> (epoch -> rate)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

import dropkit
from dropkit import _techniques, schedules
from dropkit._techniques import SITE_KINDS

__all__ = ["SITE_KINDS", "TECHNIQUES", "Technique", "get_technique", "register_technique"]

LayerFactory = Callable[[str, float], nn.Module]
ScheduleFactory = Callable[[float, int], Callable[[int], float]]
ModelTransform = Callable[[nn.Module, float], nn.Module]


@dataclass(frozen=True)
class Technique:
    """How one dropout technique fills a model's dropout sites.

    Attributes:
        name: registry key, as typed on the command line.
        description: one line for ``--help`` and reports.
        make_layer: ``(site_kind, rate) -> module``.
        schedule: ``(target_rate, epochs) -> (epoch -> rate)``, or None for a fixed rate.
        site_kinds: the site kinds it applies to; a model with none of them is skipped.
        uses_rate: False for ``none`` (its rate is always 0).
        transform: ``(model, rate) -> model`` applied to the built model (variational dropout
            swaps its Linear/Conv2d layers: ``surgery.convert(model, technique=...)``).
        learned: its rates are learned; the training loss adds :func:`dropkit.regularization`.
    """

    name: str
    description: str
    make_layer: LayerFactory
    schedule: ScheduleFactory | None = None
    site_kinds: frozenset[str] = frozenset(SITE_KINDS)
    uses_rate: bool = True
    transform: ModelTransform | None = None
    learned: bool = False

    def applies_to(self, site_kinds: list[str]) -> bool:
        return any(kind in self.site_kinds for kind in site_kinds)


# Per-epoch rate schedules from dropkit.schedules, shaped as ``(target_rate, epochs) -> schedule``.
def curriculum_schedule(rate: float, epochs: int) -> Callable[[int], float]:
    """Curriculum dropout (Morerio 2017) with ``gamma = 10 / epochs``: the target is nearly
    reached by the end of training."""
    return schedules.curriculum(rate, 10.0 / max(epochs, 1))


def early_schedule(rate: float, epochs: int) -> Callable[[int], float]:
    """Early dropout (Liu 2023): ``rate`` for the first quarter of the epochs, then 0."""
    return schedules.early(rate, max(1, round(0.25 * epochs)))


def late_schedule(rate: float, epochs: int) -> Callable[[int], float]:
    """Late dropout (Liu 2023): 0 for the first quarter of the epochs, then ``rate``."""
    return schedules.late(rate, max(1, round(0.25 * epochs)))


def _identity(kind: str, rate: float) -> nn.Module:
    return nn.Identity()


def _from_registry(name: str) -> LayerFactory:
    """The registered technique at its sites, plain dropout at the model's other sites."""
    spec = _techniques.get(name)
    sites = spec.compare_sites or frozenset()

    def make_layer(kind: str, rate: float) -> nn.Module:
        return spec.build(rate) if kind in sites else dropkit.nn.Dropout(rate)

    return make_layer


def _learned_layers(name: str) -> ModelTransform:
    """Variational dropout over the whole model: its Linear/Conv2d layers become the technique's
    layers (starting at ``rate``; 0: the layer's default) and its dropout sites are removed."""

    def transform(model: nn.Module, rate: float) -> nn.Module:
        from dropkit.surgery import convert

        return convert(model, technique=name, p=rate or None).model

    return transform


def _spatial(kind: str, rate: float) -> nn.Module:
    if kind in ("conv1d", "conv2d"):
        return _techniques.get(f"spatial{kind[4]}d").build(rate)
    return dropkit.nn.Dropout(rate)


TECHNIQUES: dict[str, Technique] = {}


def register_technique(technique: Technique) -> Technique:
    """Add (or replace) a technique in :data:`TECHNIQUES`; returns it."""
    TECHNIQUES[technique.name] = technique
    return technique


# The single-module techniques come from the technique registry (``dropkit._techniques``: the
# entries with ``compare_sites``); compare adds the baseline, the per-site spatial choice and
# the rate schedules over plain dropout.
_dropout = _from_registry("dropout")
for _technique in (
    Technique("none", "no dropout (the baseline)", _identity, uses_rate=False),
    *(
        Technique(
            spec.name,
            spec.paper,
            _from_registry(spec.name),
            site_kinds=spec.compare_sites,
            learned=spec.learned,
        )
        for spec in _techniques.TECHNIQUES.values()
        if spec.compare_sites is not None
    ),
    # Weight-noise techniques fill no site: they convert the model's layers. Sparse VD starts
    # from the paper's log σ² = -10 (its rates are all learned), Kingma VD from the rate.
    *(
        Technique(
            spec.name,
            spec.paper,
            _identity,
            uses_rate=spec.name != "svd",
            transform=_learned_layers(spec.name),
            learned=True,
        )
        for spec in _techniques.TECHNIQUES.values()
        if spec.replaces
    ),
    Technique(
        "spatial",
        "whole-channel dropout on conv maps (Tompson 2015): spatial1d/spatial2d per site",
        _spatial,
        site_kinds=frozenset({"conv1d", "conv2d"}),
    ),
    Technique(
        "curriculum", "rate rising from 0 to p (Morerio 2017)", _dropout, curriculum_schedule
    ),
    Technique("early", "dropout only early in training (Liu 2023)", _dropout, early_schedule),
    Technique("late", "dropout only late in training (Liu 2023)", _dropout, late_schedule),
):
    register_technique(_technique)


def get_technique(name: str) -> Technique:
    """The registered technique called ``name`` (or a registry alias of it); ValueError listing
    the choices otherwise."""
    if name not in TECHNIQUES and name in _techniques.names(aliases=True):
        name = _techniques.get(name).name  # an alias such as "gaussian_dropout"
    if name not in TECHNIQUES:
        raise ValueError(f"technique must be one of {sorted(TECHNIQUES)}, got {name!r}")
    return TECHNIQUES[name]
