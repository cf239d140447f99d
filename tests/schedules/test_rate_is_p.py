"""The schedules take the rate as ``p``, like the rest of dropkit; their old names (``rate``,
``target``) stay accepted as keyword aliases (issue 14 item 7)."""

from __future__ import annotations

import inspect

import pytest

from dropkit import schedules as S

RENAMED = {"constant": "rate", "warmup": "rate", "early": "rate", "late": "rate",
           "curriculum": "target"}  # fmt: skip
#: The other arguments of each, by keyword.
OTHERS = {"constant": {}, "warmup": {"warmup_steps": 10}, "early": {"until": 10},
          "late": {"start": 10}, "curriculum": {"gamma": 0.1}}  # fmt: skip


@pytest.mark.parametrize("name", sorted(RENAMED))
def test_rate_is_p_and_the_old_name_is_an_alias(name):
    make, old, others = getattr(S, name), RENAMED[name], OTHERS[name]
    assert next(iter(inspect.signature(make).parameters)) == "p"
    by_position = make(0.3, *others.values())
    by_p = make(p=0.3, **others)
    by_alias = make(**{old: 0.3}, **others)
    steps = [0, 5, 9, 10, 50]
    expected = [by_position(t) for t in steps]
    assert [by_p(t) for t in steps] == expected and [by_alias(t) for t in steps] == expected
    assert max(expected) > 0
    with pytest.raises(TypeError, match=rf"pass the rate once, as p \(not also as {old}="):
        make(0.3, **{old: 0.2}, **others)
    with pytest.raises(TypeError, match="pass the rate once"):
        make(p=0.3, **{old: 0.2}, **others)


def test_no_schedule_names_the_rate_otherwise():
    # Endpoints (start/end), depth maxima (max_rate) and step lists (rates) keep their names.
    allowed = {"rate", "target"}
    for name in S.__all__:
        obj = getattr(S, name)
        if not inspect.isfunction(obj):
            continue
        parameters = set(inspect.signature(obj).parameters)
        assert not parameters & allowed, f"{name} still takes {parameters & allowed}"
