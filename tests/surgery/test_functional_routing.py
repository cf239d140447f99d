"""F.dropout inside forward: routed through dropkit, seeded, MC-capable, reported."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dropkit.functional as dkf
from dropkit import surgery


class _Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 64)
        self.norm = nn.BatchNorm1d(64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.dropout(self.fc(x), 0.3, self.training)
        h = self.norm(h)
        return F.dropout2d(h.view(-1, 4, 4, 4), p=0.5, training=self.training).flatten(1)


def _routed(seed: int = 3) -> tuple[nn.Module, surgery.FunctionalDropoutRouter]:
    torch.manual_seed(0)
    model = _Functional()
    return model, surgery.route_functional(model, seed=seed)


def test_routed_calls_are_seeded_and_reproducible():
    x = torch.randn(4, 8)
    first, _ = _routed()
    second, _ = _routed()
    first.train(), second.train()
    torch.manual_seed(1)
    a = first(x)
    torch.manual_seed(2)  # the global generator no longer matters
    b = second(x)
    assert torch.equal(a, b)
    assert not torch.equal(first(x), a)  # the step advances between training calls
    third, _ = _routed(seed=4)
    third.train()
    assert not torch.equal(third(x), a)  # another seed, other masks


def test_routed_masks_match_dropkit_functional_with_the_site_seed():
    class Plain(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.dropout(F.dropout(x, 0.3, self.training), 0.2, self.training)

    model = Plain()
    router = surgery.route_functional(model, seed=5)
    x = torch.randn(4, 64)
    out = model(x)
    assert list(router.sites) == [":dropout#0", ":dropout#1"]
    first = dkf.dropout(x, 0.3, seed=surgery.site_seed(int(router.seed), ":dropout#0"), step=0)
    expected = dkf.dropout(
        first, 0.2, seed=surgery.site_seed(int(router.seed), ":dropout#1"), step=0
    )
    assert torch.equal(out, expected)
    assert int(router.step) == 1


def test_mc_mode_reaches_routed_calls_and_eval_is_deterministic():
    model, router = _routed()
    model.eval()
    x = torch.randn(4, 8)
    assert torch.equal(model(x), model(x))
    router.train()  # MC mode: the rest of the model (BatchNorm) stays in eval
    mc_first, mc_second = model(x), model(x)
    assert not torch.equal(mc_first, mc_second)
    assert not model.norm.training
    fresh, fresh_router = _routed()
    fresh.eval(), fresh_router.train()
    assert torch.equal(fresh(x), mc_first)  # MC samples are reproducible too


def test_router_state_travels_in_state_dict():
    model, _ = _routed()
    model.train()
    x = torch.randn(4, 8)
    model(x)
    clone = copy.deepcopy(model)
    restored, _ = _routed(seed=99)
    restored.load_state_dict(model.state_dict())
    expected = model(x)
    assert torch.equal(restored(x), expected)
    assert torch.equal(clone(x), expected)  # a deep copy's hooks drive the copy's router


def test_router_fixes_dropout_that_ignores_training():
    class Forgetful(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.dropout(x, 0.5)  # training defaults to True

    model = Forgetful().eval()
    x = torch.ones(64)
    assert not torch.equal(model(x), model(x))
    surgery.route_functional(model, seed=0)
    assert torch.equal(model(x), x)


def test_rate_override_and_unroute():
    model, router = _routed()
    surgery.set_rates(model, {"dropkit_functional": 1.0})
    model.train()
    assert torch.equal(model(torch.randn(4, 8)), torch.zeros(4, 64))
    assert "p=1" in repr(router)
    surgery.unroute_functional(model)
    assert not hasattr(model, "dropkit_functional")
    assert all(not m._forward_pre_hooks for m in model.modules())
    with pytest.raises(ValueError, match="no 'dropkit_functional' router"):
        surgery.unroute_functional(model)


def test_fused_attention_dropout_is_reported_not_routed():
    class Attention(nn.Module):
        def forward(self, q: torch.Tensor) -> torch.Tensor:
            return F.scaled_dot_product_attention(q, q, q, dropout_p=0.1 if self.training else 0.0)

    model = Attention()
    router = surgery.route_functional(model, seed=0)
    model(torch.randn(1, 2, 4, 8))
    assert list(router.unrouted) == [":scaled_dot_product_attention#0"]
    assert "fused into scaled_dot_product_attention" in router.report()


def test_remove_switches_routed_functional_dropout_off():
    model, router = _routed()
    model.train()
    x = torch.randn(4, 8)
    report = surgery.remove(model)
    assert ("dropkit_functional", "FunctionalDropoutRouter", "rate 0 (routed calls off)") in (
        report.converted
    )
    assert router.override and router.p == 0.0
    model.norm.eval()  # compare without BatchNorm's batch statistics
    expected = model.norm(model.fc(x)).flatten(1)
    assert torch.equal(model(x), expected)


def test_position_presets_leave_the_router_alone():
    model, router = _routed()
    assert "dropkit_functional" not in surgery.preset_rates(model)
    surgery.set_rates(model, "presets", strict=False)
    assert not router.override
