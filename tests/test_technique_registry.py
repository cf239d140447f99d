"""The technique registry (``dropkit._techniques``) is the one list surgery, compare/search, the
benchmark and these tables read; every entry keeps its promises there."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import dropkit
from dropkit import _techniques, benchmark, surgery
from dropkit.experiments.techniques import TECHNIQUES as COMPARE_TECHNIQUES
from dropkit.experiments.techniques import get_technique
from dropkit.surgery import _registry
from tests.contract import check_learned_contract, check_module_contract

SPECS = list(_techniques.TECHNIQUES.values())
IDS = [spec.name for spec in SPECS]


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_entry_builds_its_module_and_keeps_the_contract(spec):
    module = spec.build(0.3)
    assert type(module) is spec.module
    assert module.p == pytest.approx(0.3)
    example = torch.randn(spec.test_shape, generator=torch.Generator().manual_seed(0))

    def factory() -> nn.Module:
        seeded = spec.build(0.3)
        seeded.reset_seed(0)
        return seeded

    check = check_learned_contract if spec.learned else check_module_contract
    kwargs = {} if spec.learned else {"check_compile": False}
    check(factory, example, eval_identity=spec.eval_identity, **kwargs)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_entry_round_trips_through_surgery(spec):
    if spec.replaces:  # weight noise: convert swaps the layers, insert refuses it
        with pytest.raises(ValueError, match=rf"convert\(model, technique='{spec.name}'\)"):
            surgery.insert(nn.Sequential(nn.ReLU()), after=nn.ReLU, technique=spec.name)
        model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.2))
        report = surgery.convert(model, technique=spec.name, p=0.25)
        assert type(model[0]) is spec.module and type(model[1]) is nn.Identity
        assert model[0].p == pytest.approx(0.25) and not report.unsupported
        return
    if spec.learned:  # a learned rate replaces the model's dropout at the same rate
        model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.25))
        surgery.convert(model, technique=spec.name)
        assert type(model[1]) is spec.module and model[1].p == pytest.approx(0.25)
    # Inserted by every name it answers to ...
    for name in (spec.name, *spec.aliases):
        model = nn.Sequential(nn.Identity(), nn.ReLU())
        report = surgery.insert(model, after=nn.ReLU, technique=name, p=0.25)
        assert [row[:2] for row in report.converted] == [("1_dropout", "(inserted)")]
        assert type(model.get_submodule("1_dropout")) is spec.module
    # ... and back and forth between torch and dropkit where the registry says it can.
    model = nn.Sequential(spec.build(0.25))
    if not spec.to_torch:
        with pytest.warns(UserWarning, match="not converted"):
            back = surgery.to_torch(model, strict=False)
        assert [row[1].rpartition(".")[2] for row in back.unsupported] == [spec.module.__name__]
        assert type(model[0]) is spec.module
        return
    back = surgery.to_torch(model, strict=False)
    assert not back.unsupported and not isinstance(model[0], dropkit.nn.DropoutModule)
    foreign = _qualified(type(model[0]))
    assert foreign in spec.converts_from, f"to_torch made {foreign}, not in converts_from"
    again = surgery.convert(model)
    assert not again.unsupported
    assert type(model[0]) is spec.module and model[0].p == pytest.approx(0.25)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_converts_from_is_registered_in_surgery(spec):
    keys = {k if isinstance(k, str) else _qualified(k) for k in _registry._FACTORIES["to_dropkit"]}
    assert set(spec.converts_from) <= keys


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_entry_appears_in_compare_search_and_bench(spec):
    ops = benchmark._ops()
    assert (spec.name in ops) == spec.bench
    compared = spec.compare_sites is not None or bool(spec.replaces)
    assert (spec.name in COMPARE_TECHNIQUES) == compared
    if compared:
        assert get_technique(spec.name).learned == spec.learned
    if spec.replaces:
        assert set(spec.replaces) <= set(_techniques.LAYER_TYPES)
        assert get_technique(spec.name).transform is not None
    for alias in spec.aliases:
        assert _techniques.get(alias) is spec
        if spec.bench:
            assert benchmark._canonical_op(alias) == spec.name
        if spec.compare_sites is not None:
            assert get_technique(alias).name == spec.name  # search resolves through it too
    if spec.compare_sites is not None:
        technique = get_technique(spec.name)
        assert technique.site_kinds == spec.compare_sites
        for kind in spec.compare_sites:
            assert type(technique.make_layer(kind, 0.1)) is spec.module


def test_bench_runs_an_alias_under_the_name_asked_for():
    results = benchmark.run_benchmarks(
        ops=["gaussian_dropout"], sizes=[256], dtypes=[torch.float32], min_time_s=0.0
    )
    assert {r.op for r in results} == {"gaussian_dropout"}
    with pytest.raises(ValueError, match="ops must be among"):
        benchmark.run_benchmarks(ops=["gaussian_noise"], sizes=[256], min_time_s=0.0)


def test_names_are_one_vocabulary():
    names = _techniques.names()
    assert names == sorted(_techniques.TECHNIQUES)
    assert set(names) <= set(_techniques.names(aliases=True))
    with pytest.raises(ValueError, match=r"technique must be one of \['alpha'"):
        _techniques.get("dropconnect")


_FIELDS = {
    "name": "dropout_test", "module": dropkit.nn.Dropout, "functional": dropkit.functional.dropout,
    "paper": "a test entry", "test_shape": (2, 3), "converts_from": (), "to_torch": False,
    "compare_sites": None, "bench": False,
}  # fmt: skip
_REQUIRED = [
    f.name
    for f in dataclasses.fields(_techniques.TechniqueSpec)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
]


def test_required_fields_are_the_declared_ones():
    assert sorted(_REQUIRED) == sorted(_FIELDS)


@pytest.mark.parametrize("missing", sorted(_FIELDS))
def test_entry_missing_a_field_fails_loudly(missing):
    fields = {k: v for k, v in _FIELDS.items() if k != missing}
    with pytest.raises(TypeError, match=missing):
        _techniques.TechniqueSpec(**fields)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rate_arg": "drop_prob"}, "Dropout takes no argument 'drop_prob'"),
        ({"module_kwargs": {"block_size": 3}}, "takes no argument 'block_size'"),
        ({"aliases": ("gaussian_dropout",)}, "already taken by 'gaussian'"),
        ({"name": "not a name"}, "name must be an identifier"),
        ({"test_shape": ()}, "test_shape must be positive ints"),
        ({"compare_sites": frozenset({"graph"})}, "compare_sites must be among"),
        ({"paper": None}, "field 'paper' is None"),
        ({"module": torch.relu}, "module must be an nn.Module subclass"),
    ],
)
def test_bad_entry_is_refused_naming_the_field(change, message):
    spec = _techniques.TechniqueSpec(**{**_FIELDS, **change})
    with pytest.raises(ValueError, match=message):
        _techniques.register(spec)
    assert "dropout_test" not in _techniques.TECHNIQUES and "not a name" not in _techniques.names()


def test_register_is_one_declaration():
    spec = _techniques.register(
        _techniques.TechniqueSpec(**{**_FIELDS, "aliases": ("dropout_test_alias",)})
    )
    try:
        model = nn.Sequential(nn.ReLU())
        surgery.insert(model, after=nn.ReLU, technique="dropout_test_alias", p=0.1)
        assert type(model.get_submodule("0_dropout")) is dropkit.nn.Dropout
        assert _techniques.get("dropout_test") is spec
    finally:
        del _techniques.TECHNIQUES["dropout_test"]
        for alias in ("dropout_test", "dropout_test_alias"):
            _techniques._ALIASES.pop(alias)
