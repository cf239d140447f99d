"""DropoutScheduler: rates at the right step, state_dict resume, no recompiles."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import dropkit
from dropkit import schedules as S


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        dropkit.nn.Dropout(0.0),
        nn.Linear(8, 8),
        dropkit.nn.Dropout(0.0),
        nn.Linear(8, 8),
        dropkit.nn.GaussianDropout(0.0),
    )


def test_rates_seen_by_modules_at_the_right_step():
    model = _model()
    scheduler = S.DropoutScheduler(
        model, {"0": S.constant(0.1), dropkit.nn.Dropout: S.linear(0.0, 0.4, 4)}
    )
    seen = []
    for _ in range(6):
        seen.append((model[0].p, model[2].p))
        scheduler.step()
    # The pattern rule wins for module 0; the type rule binds module 2; step t trains with s(t).
    assert [a for a, _ in seen] == pytest.approx([0.1] * 6)
    assert [b for _, b in seen] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.4])
    assert model[4].p == 0.0  # GaussianDropout matched no rule
    assert scheduler.current_step == 6


def test_state_dict_round_trip_resumes_mid_schedule():
    model = _model()
    rules = {"*": S.piecewise([(0, 0.0), (10, 0.5)])}
    scheduler = S.DropoutScheduler(model, rules)
    for _ in range(4):
        scheduler.step()
    saved_model = copy.deepcopy(model.state_dict())
    saved_scheduler = copy.deepcopy(scheduler.state_dict())
    for _ in range(3):
        scheduler.step()
    expected = scheduler.rates()

    resumed_model = _model()
    resumed_model.load_state_dict(saved_model)
    assert resumed_model[2].p == pytest.approx(0.2)  # the rate travels in the model's state
    resumed = S.DropoutScheduler(resumed_model, rules)
    resumed.load_state_dict(saved_scheduler)
    assert resumed.current_step == 4
    for _ in range(3):
        resumed.step()
    assert resumed.rates() == pytest.approx(expected)


def test_rate_changes_never_recompile():
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(8, 64), dropkit.nn.Dropout(0.0), nn.ReLU(), dropkit.nn.Dropout(0.0)
    )
    scheduler = S.DropoutScheduler(model, {dropkit.nn.Dropout: S.linear(0.05, 0.5, 5)})
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    x = torch.randn(16, 8)
    torch._dynamo.utils.counters.clear()
    outputs = []
    with torch.no_grad():
        for _ in range(5):
            outputs.append(compiled(x))
            scheduler.step()
    counters = torch._dynamo.utils.counters
    assert counters["stats"]["unique_graphs"] == 1
    assert sum(counters["recompiles"].values()) == 0
    # The new rates reached the compiled graph: the last Dropout's zero fraction tracks its rate
    # (ReLU zeros about half before it: keep fraction (1 - p) / 2 over 1024 units).
    nonzero = [float((out != 0).float().mean()) for out in outputs]
    for fraction, rate in zip(nonzero, (0.05, 0.1625, 0.275, 0.3875, 0.5), strict=True):
        assert abs(fraction - (1 - rate) ** 2 / 2) < 0.06


def test_pattern_matching_nothing_lists_near_matches():
    model = nn.Sequential()
    model.add_module("encoder_dropout", dropkit.nn.Dropout(0.1))
    with pytest.raises(
        ValueError,
        match=r"'encoder_droput' matches no dropout module.*near matches: \['encoder_dropout'\]",
    ):
        S.DropoutScheduler(model, {"encoder_droput": S.constant(0.2)})
    scheduler = S.DropoutScheduler(model, {"encoder_droput": S.constant(0.2)}, strict=False)
    assert scheduler.rates() == {}


def test_schedule_giving_a_bad_rate_is_reported():
    model = _model()
    with pytest.raises(ValueError, match=r"gave an invalid rate at step 0"):
        S.DropoutScheduler(model, {"0": lambda t: 1.5})


def test_non_callable_schedule_is_rejected():
    with pytest.raises(TypeError, match=r"schedule for '0' must be callable"):
        S.DropoutScheduler(_model(), {"0": 0.1})  # type: ignore[dict-item]


def test_torch_dropout_is_driven_too():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.0))
    scheduler = S.DropoutScheduler(model, {nn.Dropout: S.linear(0.0, 0.2, 2)})
    scheduler.step()
    assert model[1].p == pytest.approx(0.1)
