"""convert / to_torch / insert / remove / set_rates on plain torch models."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import dropkit
from dropkit import surgery


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Dropout(0.1)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.d2 = nn.Dropout2d(0.2)
        self.seq = nn.Conv1d(4, 4, 1)
        self.d1 = nn.Dropout1d(0.25)
        self.vol = nn.Dropout3d(0.3)
        self.alpha = nn.AlphaDropout(0.05)
        self.falpha = nn.FeatureAlphaDropout(0.05)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.d2(self.conv(self.inp(x)))
        n, c, height, width = h.shape
        h = self.d1(self.seq(h.flatten(2))).view(n, c, height, width)
        h = self.vol(h.unsqueeze(2)).squeeze(2)
        h = self.falpha(self.alpha(h))
        return self.fc(h.flatten(1))


EXPECTED_TYPES = {
    "inp": dropkit.nn.Dropout,
    "d2": dropkit.nn.SpatialDropout2d,
    "d1": dropkit.nn.SpatialDropout1d,
    "vol": dropkit.nn.SpatialDropout3d,
    "alpha": dropkit.nn.AlphaDropout,
    "falpha": dropkit.nn.FeatureAlphaDropout,
}


def test_convert_every_torch_dropout_keeps_rates_mode_and_eval_outputs():
    torch.manual_seed(0)
    model = _Net().eval()
    model.d2.train()  # a per-module mode must survive conversion
    original = copy.deepcopy(model)
    x = torch.randn(2, 3, 8, 8)
    model.d2.eval()
    expected = model(x)
    model.d2.train()

    report = surgery.convert(model, seed=7)
    assert report.model is model
    assert sorted(path for path, _, _ in report.converted) == sorted(EXPECTED_TYPES)
    assert report.unsupported == []
    for path, kind in EXPECTED_TYPES.items():
        converted = model.get_submodule(path)
        assert type(converted) is kind
        assert converted.p == pytest.approx(original.get_submodule(path).p)
        assert converted.training == original.get_submodule(path).training
    model.eval()
    assert torch.equal(model(x), expected)
    # Seeds derive from the model-wide seed and the path: reproducible, distinct per site.
    assert int(model.inp.seed) != int(model.d2.seed)
    again = surgery.convert(copy.deepcopy(original), seed=7).model
    assert int(again.inp.seed) == int(model.inp.seed)


def test_converted_model_trains_and_round_trips_to_torch():
    torch.manual_seed(0)
    model = _Net()
    torch_model = copy.deepcopy(model)
    surgery.convert(model)
    model.train()
    x = torch.randn(2, 3, 8, 8)
    loss = model(x).square().mean()
    loss.backward()
    assert model.fc.weight.grad is not None and torch.isfinite(model.fc.weight.grad).all()

    report = surgery.to_torch(model)
    for path in EXPECTED_TYPES:
        assert type(model.get_submodule(path)) is type(torch_model.get_submodule(path))
    assert len(report.converted) == len(EXPECTED_TYPES)
    model.eval(), torch_model.eval()
    model.load_state_dict(torch_model.state_dict())
    assert torch.equal(model(x), torch_model(x))


def test_root_module_itself_is_replaced():
    report = surgery.convert(nn.Dropout(0.3))
    assert isinstance(report.model, dropkit.nn.Dropout) and report.model.p == pytest.approx(0.3)


class MyDropout(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_unknown_dropout_type_is_reported_not_skipped():
    model = nn.Sequential(nn.Dropout(0.1), MyDropout())
    with pytest.raises(surgery.ConversionError, match=r"1 \(.*MyDropout\): unknown dropout-like"):
        surgery.convert(model)
    assert type(model[0]) is nn.Dropout  # nothing changed when the error is raised
    with pytest.warns(UserWarning, match="not converted 1"):
        report = surgery.convert(model, strict=False)
    assert type(model[0]) is dropkit.nn.Dropout
    assert [row[0] for row in report.unsupported] == ["1"]
    assert "MyDropout" in str(report)


def test_torchvision_stochastic_depth_converts_both_ways():
    torchvision = pytest.importorskip("torchvision")
    for mode in ("row", "batch"):
        model = nn.Sequential(nn.Linear(2, 2), torchvision.ops.StochasticDepth(0.2, mode))
        surgery.convert(model)
        assert isinstance(model[1], dropkit.nn.DropPath)
        assert model[1].p == pytest.approx(0.2) and model[1].mode == mode
        surgery.to_torch(model)
        assert isinstance(model[1], torchvision.ops.StochasticDepth) and model[1].mode == mode


def test_timm_drop_path_and_drop_block_convert_both_ways():
    timm_drop = pytest.importorskip("timm.layers.drop")
    model = nn.Sequential(
        timm_drop.DropBlock2d(0.15, 5, gamma_scale=0.5, scale_by_keep=False),
        timm_drop.DropPath(0.3, scale_by_keep=False),
    )
    surgery.convert(model)
    block, path = model
    assert isinstance(block, dropkit.nn.DropBlock2d) and block.block_size == (5, 5)
    assert block.p == pytest.approx(0.15) and block.gamma_scale == 0.5 and block.scale == "none"
    assert isinstance(path, dropkit.nn.DropPath) and not path.scale_by_keep
    surgery.to_torch(model)
    assert isinstance(model[0], timm_drop.DropBlock2d) and model[0].block_size == 5
    assert isinstance(model[1], timm_drop.DropPath) and model[1].drop_prob == pytest.approx(0.3)


def test_to_torch_reports_modules_without_equivalent():
    model = nn.Sequential(dropkit.nn.GaussianDropout(0.1), dropkit.nn.Dropout(0.1, mode="standard"))
    with pytest.raises(surgery.ConversionError, match=r"Gaussian.*mode='standard'"):
        surgery.to_torch(model)


def test_register_conversion_extends_the_registry():
    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p = 0.3

    surgery.register_conversion(Custom, lambda m: dropkit.nn.Dropout(m.p), direction="to_dropkit")
    model = surgery.convert(nn.Sequential(Custom())).model
    assert isinstance(model[0], dropkit.nn.Dropout) and model[0].p == pytest.approx(0.3)
    with pytest.raises(ValueError, match=r"direction must be one of"):
        surgery.register_conversion(Custom, lambda m: m, direction="sideways")  # type: ignore[arg-type]


def test_insert_after_type_and_remove_again():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    keys = set(model.state_dict())
    x = torch.randn(16, 4)
    hidden = model[1](model[0](x))
    report = surgery.insert(model, after=nn.ReLU, p=0.5, seed=1)
    assert [row[0] for row in report.converted] == ["1_dropout", "3_dropout"]
    assert keys <= set(model.state_dict())  # existing keys unchanged
    model.train()
    assert (hidden != 0).sum() > (model[1](model[0](x)) != 0).sum()  # the hook drops units
    copied = copy.deepcopy(model)  # hooks follow the copy's own dropout modules
    assert torch.equal(copied(x), model(x))

    removal = surgery.remove(model)
    assert sorted(row[0] for row in removal.converted) == ["1_dropout", "3_dropout"]
    assert set(model.state_dict()) == keys
    assert torch.equal(model[1](model[0](x)), hidden)


def test_insert_structured_technique_by_name():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 1))
    surgery.insert(model, after=nn.ReLU, technique="drop_block2d", p=0.2, seed=3)
    inserted = [m for m in model.modules() if isinstance(m, dropkit.nn.DropBlock2d)]
    assert len(inserted) == 1 and inserted[0].p == pytest.approx(0.2)


def test_insert_bad_input():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    with pytest.raises(ValueError, match=r"pattern 'rleu' matches no module"):
        surgery.insert(model, after="rleu")
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        surgery.insert(model, after=nn.ReLU, p=1.5)
    with pytest.raises(ValueError, match=r"technique must be one of"):
        surgery.insert(model, after=nn.ReLU, technique="dropconnect")
    assert surgery.insert(model, after="nothing", strict=False).converted == []


def test_remove_replaces_with_identity_and_notes_standard_mode():
    model = nn.Sequential(
        nn.Linear(2, 2), nn.Dropout(0.1), dropkit.nn.Dropout(0.2, mode="standard")
    )
    report = surgery.remove(model)
    assert all(isinstance(model[i], nn.Identity) for i in (1, 2))
    assert any("mode='standard'" in note for note in report.notes)
    with pytest.raises(ValueError, match=r"pattern 'drop' matches no dropout module"):
        surgery.remove(nn.Sequential(nn.Dropout(0.1)), "drop")


def test_set_rates_patterns_presets_and_bad_input():
    model = nn.Sequential()
    model.add_module("drop_in", dropkit.nn.Dropout(0.5))
    model.add_module("fc1", nn.Linear(4, 4))
    model.add_module("drop_hidden", nn.Dropout(0.1))
    model.add_module("fc2", nn.Linear(4, 4))
    model.add_module("drop_out", dropkit.nn.Dropout(0.3))
    assert surgery.set_rates(model, {"drop_*": 0.4, "drop_in": "input_low"}) == pytest.approx(
        {"drop_in": 0.1, "drop_hidden": 0.4, "drop_out": 0.4}
    )
    assert surgery.preset_rates(model) == {
        "drop_in": "input",
        "drop_hidden": "hidden",
        "drop_out": "output",
    }
    surgery.set_rates(model, "presets")
    assert (model.drop_in.p, model.drop_hidden.p, model.drop_out.p) == pytest.approx(
        (0.2, 0.5, 0.0)
    )

    with pytest.raises(ValueError, match=r"rates\['drop_in'\] must be in \[0, 1\], got 1.5"):
        surgery.set_rates(model, {"drop_in": 1.5})
    with pytest.raises(ValueError, match=r"near matches: \['drop_hidden'"):
        surgery.set_rates(model, {"drop_hiden": 0.2})
    with pytest.raises(ValueError, match=r"preset name in"):
        surgery.set_rates(model, {"drop_in": "huge"})
    assert surgery.set_rates(model, {"drop_hiden": 0.2}, strict=False) == {}
