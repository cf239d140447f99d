"""The technique registry: every dropout technique declared once.

One :class:`TechniqueSpec` per technique names its module class, its functional op, its rate
argument and what it plugs into. The registry feeds:

- ``dropkit.surgery.insert(model, after, technique=NAME)`` (every entry, by name or alias),
- ``dropkit compare`` / ``search`` (entries with ``compare_sites``; see
  :mod:`dropkit.experiments.techniques`, which adds the schedule and composite techniques),
- ``dropkit bench --suite ops`` (entries with ``bench=True``; the PyTorch counterpart lives in
  :mod:`dropkit.benchmark`),
- the test tables (``tests/test_technique_registry.py`` runs every entry through the module
  contract and a ``surgery`` round trip).

Names are the short ones users type (``"gaussian"``, ``"alpha"``, ``"spatial2d"``); the
functional names (``"gaussian_dropout"``, ...) are accepted everywhere as aliases and resolve
to the same entry (:func:`get`). Adding a technique is one :func:`register` call at the bottom
of this file (see ``docs/contributing.md``).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

import dropkit.functional as F
import dropkit.nn as dk

__all__ = [
    "LAYER_TYPES",
    "SITE_KINDS",
    "TECHNIQUES",
    "TechniqueSpec",
    "get",
    "names",
    "register",
]

#: Kinds of dropout site a model exposes to ``dropkit compare`` (``(N, F)``, ``(N, C, L)``,
#: ``(N, C, H, W)``, ``(N, T, H)``).
SITE_KINDS = ("dense", "conv1d", "conv2d", "sequence")

#: The layers a weight-noise technique (``replaces``) swaps: ``torch.nn`` Linear and Conv2d.
LAYER_TYPES = ("torch.nn.modules.linear.Linear", "torch.nn.modules.conv.Conv2d")


@dataclass(frozen=True, kw_only=True)
class TechniqueSpec:
    """One dropout technique, declared once.

    Every field without a default must be given (a missing one is a ``TypeError`` at the
    declaration); :func:`register` checks the values.

    Attributes:
        name: canonical name (surgery, compare, search, bench, tests).
        module: the :mod:`dropkit.nn` class.
        functional: the :mod:`dropkit.functional` op the module calls.
        paper: one line (author year), shown by ``dropkit compare --help`` and reports.
        test_shape: an input shape the module accepts, for the test tables.
        converts_from: qualified names of foreign module types ``surgery.convert`` turns into
            ``module`` (``()`` for none); each must be registered in ``surgery/_registry.py``.
        to_torch: whether ``surgery.to_torch`` has an equivalent for ``module`` (with default
            arguments).
        compare_sites: site kinds ``dropkit compare``/``search`` put it at, or ``None`` when
            compare does not offer it by this name.
        bench: whether ``dropkit bench --suite ops`` times it.
        rate_arg: the constructor's rate argument (``module(**{rate_arg: p}, **module_kwargs)``).
        module_kwargs: further constructor arguments used by :meth:`build`.
        aliases: other accepted names (e.g. the functional name).
        eval_identity: the test table checks that eval mode returns the input itself (False
            for a module with its own inference rule).
        learned: the rate is a parameter learned with the model (``rate_arg`` is its initial
            value) and the training objective adds :func:`dropkit.regularization`; the module
            is a :class:`~dropkit.nn.LearnedDropoutModule`, not a ``DropoutModule``.
        replaces: qualified names of the layer types the technique replaces instead of filling
            dropout sites (variational dropout puts its noise on the weights of Linear/Conv2d
            layers): ``surgery.convert(model, technique=name)`` swaps those layers and removes
            the model's dropout, ``surgery.insert`` refuses it, and ``dropkit compare`` applies
            it to the whole model. ``()`` for a dropout-site technique.
    """

    name: str
    module: type[nn.Module]
    functional: Callable[..., Any]
    paper: str
    test_shape: tuple[int, ...]
    converts_from: tuple[str, ...]
    to_torch: bool
    compare_sites: frozenset[str] | None
    bench: bool
    rate_arg: str = "p"
    module_kwargs: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    eval_identity: bool = True
    learned: bool = False
    replaces: tuple[str, ...] = ()

    def build(self, p: float) -> nn.Module:
        """A new module at rate ``p``."""
        return self.module(**{self.rate_arg: p}, **self.module_kwargs)


TECHNIQUES: dict[str, TechniqueSpec] = {}
_ALIASES: dict[str, str] = {}


def _check(spec: TechniqueSpec) -> None:
    def fail(what: str) -> None:
        raise ValueError(f"technique {spec.name!r}: {what}")

    if not isinstance(spec, TechniqueSpec):
        raise TypeError(f"register takes a TechniqueSpec, got {spec!r}")
    for item in dataclasses.fields(spec):
        if getattr(spec, item.name) is None and item.name != "compare_sites":
            fail(f"field {item.name!r} is None")
    if not spec.name.isidentifier():
        fail("name must be an identifier")
    if not (isinstance(spec.module, type) and issubclass(spec.module, nn.Module)):
        fail(f"module must be an nn.Module subclass, got {spec.module!r}")
    if not callable(spec.functional):
        fail(f"functional must be callable, got {spec.functional!r}")
    if not spec.paper.strip():
        fail("paper must name the source")
    parameters = inspect.signature(spec.module).parameters
    for argument in (spec.rate_arg, *spec.module_kwargs):
        if argument not in parameters:
            fail(f"{spec.module.__name__} takes no argument {argument!r}")
    if not spec.test_shape or not all(isinstance(n, int) and n > 0 for n in spec.test_shape):
        fail(f"test_shape must be positive ints, got {spec.test_shape!r}")
    if spec.replaces and spec.compare_sites is not None:
        fail("a technique that replaces layers has no compare_sites (compare converts the model)")
    if spec.compare_sites is not None and not spec.compare_sites <= set(SITE_KINDS):
        fail(f"compare_sites must be among {SITE_KINDS}, got {sorted(spec.compare_sites)}")
    for alias in (spec.name, *spec.aliases):
        owner = _ALIASES.get(alias, spec.name)
        if owner != spec.name:
            fail(f"name {alias!r} is already taken by {owner!r}")


def register(spec: TechniqueSpec) -> TechniqueSpec:
    """Add (or replace) ``spec``; ValueError naming the field when a value is wrong."""
    _check(spec)
    old = TECHNIQUES.pop(spec.name, None)
    if old is not None:
        for alias in old.aliases:
            _ALIASES.pop(alias, None)
    TECHNIQUES[spec.name] = spec
    for alias in (spec.name, *spec.aliases):
        _ALIASES[alias] = spec.name
    return spec


def get(name: str) -> TechniqueSpec:
    """The entry called ``name`` (canonical or alias); ValueError listing the names otherwise."""
    if name not in _ALIASES:
        raise ValueError(f"technique must be one of {names()}, got {name!r}")
    return TECHNIQUES[_ALIASES[name]]


def names(*, aliases: bool = False) -> list[str]:
    """The registered names, sorted (with the aliases when ``aliases``)."""
    return sorted(_ALIASES if aliases else TECHNIQUES)


_ALL_SITES = frozenset(SITE_KINDS)

for _spec in (
    TechniqueSpec(
        name="dropout", module=dk.Dropout, functional=F.dropout,
        paper="inverted Bernoulli dropout (Srivastava 2014)", test_shape=(4, 8),
        converts_from=("torch.nn.modules.dropout.Dropout",), to_torch=True,
        compare_sites=_ALL_SITES, bench=True,
    ),
    TechniqueSpec(
        name="gaussian", module=dk.GaussianDropout, functional=F.gaussian_dropout,
        paper="multiplicative Gaussian noise (Srivastava 2014 §10)", test_shape=(4, 8),
        converts_from=(), to_torch=False, compare_sites=_ALL_SITES, bench=True,
        aliases=("gaussian_dropout",),
    ),
    TechniqueSpec(
        name="alpha", module=dk.AlphaDropout, functional=F.alpha_dropout,
        paper="alpha dropout (Klambauer 2017)", test_shape=(4, 8),
        converts_from=("torch.nn.modules.dropout.AlphaDropout",), to_torch=True,
        compare_sites=_ALL_SITES, bench=True, aliases=("alpha_dropout",),
    ),
    TechniqueSpec(
        name="feature_alpha", module=dk.FeatureAlphaDropout, functional=F.feature_alpha_dropout,
        paper="channel-wise alpha dropout (Klambauer 2017)", test_shape=(2, 4, 3, 3),
        converts_from=("torch.nn.modules.dropout.FeatureAlphaDropout",), to_torch=True,
        compare_sites=None, bench=True, aliases=("feature_alpha_dropout",),
    ),
    *(
        TechniqueSpec(
            name=f"spatial{d}d", module=module, functional=F.spatial_dropout,
            paper="whole-channel dropout (Tompson 2015)", test_shape=(2, 4, *(3,) * d),
            converts_from=(f"torch.nn.modules.dropout.Dropout{d}d",), to_torch=True,
            compare_sites=None, bench=d == 2,
            aliases=("spatial_dropout",) if d == 2 else (),
        )
        for d, module in ((1, dk.SpatialDropout1d), (2, dk.SpatialDropout2d),
                          (3, dk.SpatialDropout3d))
    ),
    TechniqueSpec(
        name="locked", module=dk.LockedDropout, functional=F.locked_dropout,
        paper="one mask over time in sequences (Gal & Ghahramani 2016)", test_shape=(3, 2, 4),
        converts_from=(), to_torch=False, compare_sites=frozenset({"sequence"}), bench=True,
        module_kwargs={"time_dim": 1},  # batch-first (N, T, H), compare's sequence sites
        aliases=("locked_dropout",),
    ),
    TechniqueSpec(
        name="drop_path", module=dk.DropPath, functional=F.drop_path,
        paper="stochastic depth (Huang 2016)", test_shape=(4, 8),
        converts_from=("timm.layers.drop.DropPath",
                       "torchvision.ops.stochastic_depth.StochasticDepth"),
        to_torch=True, compare_sites=None, bench=False, rate_arg="drop_prob",
        aliases=("stochastic_depth",),
    ),
    TechniqueSpec(
        name="drop_block2d", module=dk.DropBlock2d, functional=F.drop_block2d,
        paper="DropBlock (Ghiasi 2018)", test_shape=(2, 4, 16, 16),
        converts_from=("timm.layers.drop.DropBlock2d",), to_torch=True, compare_sites=None,
        bench=False, rate_arg="drop_prob",
    ),
    TechniqueSpec(
        name="drop_block3d", module=dk.DropBlock3d, functional=F.drop_block3d,
        paper="DropBlock (Ghiasi 2018)", test_shape=(2, 4, 12, 12, 12), converts_from=(),
        to_torch=False, compare_sites=None, bench=False, rate_arg="drop_prob",
    ),
):  # fmt: skip
    register(_spec)

# Learned rates (issue 12). ``rate_arg`` is the initial rate; the loss adds
# dropkit.regularization(model, dataset_size=N) (dropkit compare does). Concrete dropout and
# standout fill dropout sites; variational dropout replaces the Linear/Conv2d layers (the noise
# is on their weights), so its test module is an 8 -> 8 Linear.
_TEST_LINEAR = {"in_features": 8, "out_features": 8}
for _spec in (
    TechniqueSpec(
        name="concrete", module=dk.ConcreteDropout, functional=F.concrete_dropout,
        paper="learned rate, relaxed Bernoulli mask (Gal, Hron & Kendall 2017)",
        test_shape=(4, 8), converts_from=(), to_torch=False, compare_sites=_ALL_SITES,
        bench=False, rate_arg="init_p", aliases=("concrete_dropout",), learned=True,
    ),
    TechniqueSpec(
        name="standout", module=dk.Standout, functional=F.standout,
        paper="adaptive keep probabilities from the activations (Ba & Frey 2013)",
        test_shape=(4, 8), converts_from=(), to_torch=False, compare_sites=_ALL_SITES,
        bench=False, rate_arg="init_p", eval_identity=False,
        learned=True,
    ),
    TechniqueSpec(
        name="vd", module=dk.VariationalDropoutLinear, functional=F.local_reparam_linear,
        paper="variational dropout, learned alpha (Kingma, Salimans & Welling 2015)",
        test_shape=(4, 8), converts_from=(), to_torch=False, compare_sites=None, bench=False,
        rate_arg="init_p", module_kwargs=_TEST_LINEAR,
        eval_identity=False, learned=True, replaces=LAYER_TYPES,
    ),
    TechniqueSpec(
        name="svd", module=dk.LinearSVDO, functional=F.local_reparam_linear,
        paper="sparse variational dropout (Molchanov, Ashukha & Vetrov 2017)",
        test_shape=(4, 8), converts_from=(), to_torch=False, compare_sites=None, bench=False,
        rate_arg="init_p", module_kwargs=_TEST_LINEAR, aliases=("sparse_vd",),
        eval_identity=False, learned=True, replaces=LAYER_TYPES,
    ),
):  # fmt: skip
    register(_spec)
