"""One vocabulary: the rate is ``p`` in dropkit's API. Drop-ins for timm modules keep timm's name
first (every timm call works) with ``p=`` as a keyword alias; ADL takes ``drop_rate=`` as one."""

from __future__ import annotations

import inspect

import pytest
import torch

import dropkit
import dropkit.functional as F

DROP_INS = {"DropBlock2d": "drop_prob", "DropBlock3d": "drop_prob", "DropPath": "drop_prob",
            "PatchDropout": "prob"}  # fmt: skip
ALIASES = {**DROP_INS, "ADL": "drop_rate"}  # module -> its original library's name for the rate
OTHER_NAMES = {"drop_prob", "prob", "drop_rate", "rate", "dropout", "dropout_rate", "keep_prob"}


@pytest.mark.parametrize("owner", [dropkit.nn, F], ids=["nn", "functional"])
def test_the_rate_is_p_everywhere(owner) -> None:
    for name in owner.__all__:
        obj = getattr(owner, name)
        if not callable(obj):
            continue
        try:
            parameters = inspect.signature(obj).parameters
        except (TypeError, ValueError):
            continue
        others = OTHER_NAMES & set(parameters)
        if not others:
            continue
        assert others == {ALIASES.get(name)}, f"{owner.__name__}.{name}: {sorted(others)}"
        assert "p" in parameters, f"{owner.__name__}.{name} has an alias but no p"
        alias = parameters["p" if name in DROP_INS else ALIASES[name]]
        assert alias.kind is inspect.Parameter.KEYWORD_ONLY and alias.default is None


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_alias_sets_p_and_both_is_an_error(name: str) -> None:
    cls = getattr(dropkit.nn, name)
    alias = ALIASES[name]
    assert cls(p=0.3).p == pytest.approx(0.3)
    assert cls(0.3).p == pytest.approx(0.3)
    assert cls(**{alias: 0.3}).p == pytest.approx(0.3)
    with pytest.raises(TypeError, match=r"pass the rate once, not also as"):
        cls(0.2, **{("p" if name in DROP_INS else alias): 0.3})


def test_drop_in_attribute_aliases_follow_p() -> None:
    path = dropkit.nn.DropPath(drop_prob=0.2)
    path.drop_prob = 0.1
    assert path.p == pytest.approx(0.1)
    block = dropkit.nn.DropBlock2d(drop_prob=0.2, block_size=3, seed=0)
    block.train()
    y = block(torch.ones(2, 4, 8, 8))
    assert y.shape == (2, 4, 8, 8)
