"""Learned rates work with the rest of dropkit (issue 12, "beyond the papers"): surgery.convert,
summary and audit, MC mode and uncertainty.sample, DropoutScheduler on the concrete
temperature, and what each technique saves for backward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dropkit
import dropkit.functional._learned as FL
from dropkit import surgery


def _mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 16), nn.ReLU(),
        nn.Dropout(0.2), nn.Linear(16, 3),
    )  # fmt: skip


def _learned_models() -> dict[str, nn.Module]:
    models = {}
    for technique in ("concrete", "standout", "vd", "svd"):
        torch.manual_seed(0)
        model = _mlp()
        surgery.convert(model, technique=technique, p=0.2 if technique == "svd" else None)
        models[technique] = model
    return models


# ----------------------------------------------------------------------------- surgery.convert


def test_convert_concrete_keeps_rates_and_eval_outputs():
    torch.manual_seed(0)
    model, x = _mlp(), torch.randn(5, 6)
    expected = model.eval()(x)
    report = surgery.convert(model, technique="concrete", seed=1)
    assert [row[:2] for row in report.converted] == [("2", "Dropout"), ("5", "Dropout")]
    assert [type(model[i]) for i in (2, 5)] == [dropkit.nn.ConcreteDropout] * 2
    assert [round(r.mean, 6) for r in dropkit.learned_rates(model)] == [0.3, 0.2]
    assert not model[2].training  # the mode is kept
    assert torch.equal(model(x), expected)  # eval: the identity, as before
    assert model[2].seed.item() == surgery.site_seed(1, "2") - 2**64 * (
        surgery.site_seed(1, "2") >= 2**63
    )
    assert any("dropkit.regularization" in note for note in report.notes)


def test_convert_concrete_channel_dropout_becomes_spatial():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Dropout2d(0.25))
    surgery.convert(model, technique="concrete")
    assert type(model[1]) is dropkit.nn.SpatialConcreteDropout
    assert model[1].p == pytest.approx(0.25)
    with pytest.warns(UserWarning, match="no standout twin"):
        report = surgery.convert(
            nn.Sequential(nn.Dropout2d(0.25)), technique="standout", strict=False
        )
    assert len(report.unsupported) == 1
    with pytest.raises(surgery.ConversionError, match="no standout twin"):
        surgery.convert(nn.Sequential(nn.Dropout2d(0.25)), technique="standout")


def test_convert_rate_zero_is_left_unless_p_is_given():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.0))
    report = surgery.convert(model, technique="concrete")
    assert type(model[1]) is nn.Dropout and "rate 0.0 left as is" in str(report)
    surgery.convert(model, technique="concrete", p=0.1)
    assert type(model[1]) is dropkit.nn.ConcreteDropout and model[1].p == pytest.approx(0.1)


@pytest.mark.parametrize("technique", ["vd", "svd"])
def test_convert_variational_swaps_layers_keeps_weights_and_removes_dropout(technique):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Dropout2d(0.1), nn.Flatten(),
        nn.Linear(3 * 4 * 4, 5), nn.Dropout(0.5), nn.Linear(5, 2),
    )  # fmt: skip
    x = torch.randn(2, 1, 4, 4)
    expected = model.eval()(x)
    surgery.convert(model, technique=technique, p=0.1)
    kinds = {"vd": (dropkit.nn.VariationalDropoutConv2d, dropkit.nn.VariationalDropoutLinear),
             "svd": (dropkit.nn.Conv2dSVDO, dropkit.nn.LinearSVDO)}[technique]  # fmt: skip
    assert type(model[0]) is kinds[0] and type(model[4]) is kinds[1]
    assert type(model[2]) is nn.Identity and type(model[5]) is nn.Identity
    assert all(r.mean == pytest.approx(0.1, abs=1e-6) for r in dropkit.learned_rates(model))
    torch.testing.assert_close(model(x), expected)  # the mean weights are the old weights
    model.train()
    assert not torch.equal(model(x), model(x))


def test_convert_bad_technique_and_p():
    with pytest.raises(ValueError, match="learned-rate technique"):
        surgery.convert(_mlp(), technique="gaussian")
    with pytest.raises(ValueError, match=r"technique must be one of"):
        surgery.convert(_mlp(), technique="concret")
    with pytest.raises(ValueError, match=r"p must be in \(0, 1\)"):
        surgery.convert(_mlp(), technique="concrete", p=1.0)
    with pytest.raises(TypeError, match="p= sets the initial rate"):
        surgery.convert(_mlp(), p=0.1)
    with pytest.raises(ValueError, match=r"use dropkit.surgery.convert\(model, technique='vd'\)"):
        surgery.insert(_mlp(), after=nn.ReLU, technique="vd")


def test_remove_and_torch_convert_leave_learned_layers_alone():
    for technique, model in _learned_models().items():
        learned = [
            n for n, m in model.named_modules() if isinstance(m, dropkit.nn.LearnedDropoutModule)
        ]
        assert not surgery.convert(model).unsupported, technique
        surgery.remove(model)
        assert learned == [
            n for n, m in model.named_modules() if isinstance(m, dropkit.nn.LearnedDropoutModule)
        ]
        with pytest.warns(UserWarning, match="learned rate has no torch.nn equivalent"):
            assert len(surgery.to_torch(model, strict=False).unsupported) == len(learned)


# ----------------------------------------------------------------------------- summary, audit


def test_summary_lists_learned_rates_in_execution_order():
    models = _learned_models()
    x = torch.randn(4, 6)
    rows = surgery.summary(models["concrete"], x, print_table=False)
    assert [(r.path, r.technique, r.before) for r in rows] == [
        ("2", "ConcreteDropout (learned concrete)", "Linear (3)"),
        ("5", "ConcreteDropout (learned concrete)", "Linear (6)"),
    ]
    with torch.no_grad():
        models["concrete"][2].p_logit.fill_(0.0)  # a learned rate moved to 0.5
    rows = surgery.summary(models["concrete"], print_table=False)
    assert [r.rate for r in rows] == [pytest.approx(0.5), pytest.approx(0.2)]
    svd_rows = surgery.summary(models["svd"], x, print_table=False)
    assert [r.path for r in svd_rows] == ["0", "3", "6"]
    assert all(r.rate == pytest.approx(0.2, abs=1e-6) and r.mode == "train" for r in svd_rows)
    model = models["vd"].eval()
    with dropkit.mc_mode(model):
        assert {r.mode for r in surgery.summary(model, print_table=False)} == {
            "mc (samples in eval)"
        }
    assert {r.mode for r in surgery.summary(model, print_table=False)} == {"eval"}


def test_audit_lists_learned_rates_and_catches_mc_left_on():
    model = _learned_models()["concrete"].eval()
    x = torch.randn(4, 6)
    report = surgery.audit(model, x)
    learned = [f for f in report if f.code == "learned-rate"]
    assert [(f.path, f.severity) for f in learned] == [("2", "info"), ("5", "info")]
    assert "p = 0.3 now" in learned[0].message
    assert "active-in-eval" not in report.codes
    model[5].set_mc_mode(True)  # e.g. after mc_mode(model) called as a function, not restored
    stuck = [f for f in surgery.audit(model, x) if f.code == "active-in-eval"]
    assert [(f.path, "MC mode" in f.message) for f in stuck] == [("5", True)]


# ----------------------------------------------------------------------------- MC sampling


@pytest.mark.parametrize("technique", ["concrete", "standout", "vd", "svd"])
def test_eval_is_deterministic_mc_mode_and_sample_are_stochastic(technique):
    model = _learned_models()[technique].eval()
    x = torch.randn(8, 6)
    assert torch.equal(model(x), model(x))
    with dropkit.mc_mode(model):
        first, second = model(x), model(x)
    assert not torch.equal(first, second)
    assert torch.equal(model(x), model(x)) and not any(
        getattr(m, "mc", False) for m in model.modules()
    )
    samples = dropkit.uncertainty.sample(model, x, samples=5, seed=3)
    assert samples.shape == (5, 8, 3)
    assert all(not torch.equal(samples[0], samples[s]) for s in range(1, 5))
    again = dropkit.uncertainty.sample(model, x, samples=5, seed=3, batch_budget=1 << 14)
    assert torch.equal(samples, again)  # the same samples whatever the chunking
    assert not torch.equal(samples, dropkit.uncertainty.sample(model, x, samples=5, seed=4))


# ----------------------------------------------------------------------------- scheduler


def test_scheduler_anneals_the_concrete_temperature():
    model = _learned_models()["concrete"]
    scheduler = dropkit.schedules.DropoutScheduler(
        model, {dropkit.nn.ConcreteDropout: dropkit.schedules.linear(0.5, 0.1, 4)},
        attribute="temperature",
    )  # fmt: skip
    assert scheduler.rates() == {"2": pytest.approx(0.5), "5": pytest.approx(0.5)}
    temperatures = []
    for _ in range(5):
        scheduler.step()
        temperatures.append(model[2].temperature)
    assert temperatures == pytest.approx([0.4, 0.3, 0.2, 0.1, 0.1])
    assert model.state_dict()["5.temperature_t"] == pytest.approx(0.1)
    assert [r.mean for r in dropkit.learned_rates(model)] == pytest.approx([0.3, 0.2])
    # The relaxation sharpens as it cools: at t = 0.1 the mask is far closer to 0/1 than at 2.
    layer, x = model[2].train(), torch.ones(4096, 16)
    layer.temperature = 2.0
    smooth = layer(x) * (1 - 0.3)
    layer.temperature = 0.1
    sharp = layer(x) * (1 - 0.3)
    binary_gap = lambda z: torch.minimum(z, 1 - z).abs().mean()  # noqa: E731
    assert binary_gap(sharp) < 0.5 * binary_gap(smooth)
    with pytest.raises(ValueError, match="invalid temperature at step 0"):
        dropkit.schedules.DropoutScheduler(model, {"2": lambda t: 0.0}, attribute="temperature")
    with pytest.raises(ValueError, match="ConcreteDropout module"):
        dropkit.schedules.DropoutScheduler(model, {"3": lambda t: 0.1}, attribute="temperature")
    with pytest.raises(ValueError, match="attribute must be 'p' or 'temperature'"):
        dropkit.schedules.DropoutScheduler(model, {}, attribute="rate")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- saved tensors


def _saved(function):
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        output = function()
    return output, saved


def test_standout_saves_no_mask():
    h = torch.randn(64, 32, requires_grad=True)
    logit = torch.randn(64, 32, requires_grad=True)
    out, saved = _saved(lambda: FL.standout(h, logit, seed=0))
    assert [t for t in saved if t.numel() > 1] == [h, logit]  # no mask, no σ(logit)
    assert saved[0] is h and saved[1] is logit
    out.sum().backward()  # the mask regenerated in backward is the forward's
    kept = (out != 0) | (h == 0)
    torch.testing.assert_close(h.grad, kept.float())


def test_local_reparameterisation_saves_no_noise():
    x = torch.randn(64, 32, requires_grad=True)
    weight = torch.randn(16, 32, requires_grad=True)
    variance = torch.rand(16, 32, requires_grad=True)
    out, saved = _saved(lambda: FL.local_reparam_linear(x, weight, variance, seed=0))
    output_sized = [t for t in saved if t.shape == out.shape]
    assert len(output_sized) == 1  # the output variance x² varᵀ; not std, not ε
    torch.testing.assert_close(output_sized[0], (x * x) @ variance.t())
    # and backward redraws the same ε: the gradient matches plain autograd with ε given.
    epsilon = (out - x @ weight.t()).detach() / torch.sqrt((x * x) @ variance.t() + 1e-8).detach()
    out.sum().backward()
    x2, v2 = x.detach().clone().requires_grad_(), variance.detach().clone().requires_grad_()
    reference = x2 @ weight.detach().t() + torch.sqrt((x2 * x2) @ v2.t() + 1e-8) * epsilon
    reference.sum().backward()
    torch.testing.assert_close(variance.grad, v2.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-4, atol=1e-5)


def test_concrete_module_saves_no_mask_sized_tensor_beyond_its_layer_input():
    layer = dropkit.nn.ConcreteDropout(nn.Linear(32, 16), seed=0)
    x = torch.randn(64, 32)
    _, saved = _saved(lambda: layer(x))
    big = [t for t in saved if t.shape == x.shape]
    assert big[0] is x and len(big) == 2  # x (the rate's gradient), the Linear's input
