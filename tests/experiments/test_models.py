"""Models, the technique registry, the rate seam and the schedule seam."""

from __future__ import annotations

import pytest
import torch

import dropkit
from dropkit import surgery
from dropkit.experiments import techniques
from dropkit.experiments.models import build_model, model_sites
from dropkit.experiments.techniques import TECHNIQUES, get_technique

SHAPES = {"signal": (40,), "image": (1, 8, 8)}


@pytest.mark.parametrize("model", ["mlp", "cnn", "gru"])
@pytest.mark.parametrize("shape", ["signal", "image"])
@pytest.mark.parametrize("technique", sorted(TECHNIQUES))
def test_every_model_takes_every_technique(model, shape, technique):
    torch.manual_seed(0)
    net = build_model(model, SHAPES[shape], 10, get_technique(technique), 0.2)
    x = torch.randn(5, *SHAPES[shape])
    assert net(x).shape == (5, 10)
    spec = TECHNIQUES[technique]
    # learned-rate site modules (concrete, standout) derive from LearnedDropoutModule; the
    # weight-noise techniques (vd, svd) fill no site and convert the model's layers instead
    site_type = dropkit.nn.LearnedDropoutModule if spec.learned else dropkit.nn.DropoutModule
    kinds = model_sites(model, SHAPES[shape])
    for index, kind in enumerate(kinds, start=1):
        site = net.site(index)
        applies = technique != "none" and spec.transform is None and kind in spec.site_kinds
        dropkit_site = isinstance(site, (dropkit.nn.DropoutModule, dropkit.nn.LearnedDropoutModule))
        assert dropkit_site == applies, (index, kind)
        if applies:
            assert isinstance(site, site_type), (index, kind)
            if technique == "standout":  # its rate is the mean of input-dependent probabilities
                assert 0.05 < site.p < 0.4
            else:
                assert site.p == pytest.approx(0.2, abs=1e-6)
    if spec.transform is not None:
        net = spec.transform(net, 0.2)
        assert net(x).shape == (5, 10)
        assert any(isinstance(m, dropkit.nn.LearnedDropoutModule) for m in net.modules())
        assert not any(type(m) in (torch.nn.Linear, torch.nn.Conv2d) for m in net.modules())
    net.eval()
    assert torch.equal(net(x), net(x))  # eval mode is deterministic


def test_spatial_and_locked_pick_their_modules():
    spatial = build_model("cnn", (1, 8, 8), 10, get_technique("spatial"), [0.1, 0.2, 0.3])
    assert isinstance(spatial.drop1, dropkit.nn.SpatialDropout2d)
    assert isinstance(spatial.drop3, torch.nn.Identity)  # the dense site is not a conv map
    locked = build_model("gru", (40,), 10, get_technique("locked"), 0.25)
    assert isinstance(locked.drop1, dropkit.nn.LockedDropout) and locked.drop1.time_dim == 1


def test_per_site_rates_and_set_rates():
    net = build_model("mlp", (40,), 10, get_technique("dropout"), [0.1, 0.4])
    assert (net.drop1.p, net.drop2.p) == pytest.approx((0.1, 0.4))
    surgery.set_rates(net, {"drop2": 0.05, "nothing*": 0.9}, strict=False)
    assert (net.drop1.p, net.drop2.p) == pytest.approx((0.1, 0.05))
    surgery.set_rates(net, {"drop*": 0.3})
    assert (net.drop1.p, net.drop2.p) == pytest.approx((0.3, 0.3))
    with pytest.raises(ValueError, match="rates must have 2 entries"):
        build_model("mlp", (40,), 10, get_technique("dropout"), [0.1])
    with pytest.raises(ValueError, match=r"rate of drop1 must be in \[0, 1\)"):
        build_model("mlp", (40,), 10, get_technique("dropout"), 1.0)
    with pytest.raises(ValueError, match="model must be one of"):
        model_sites("resnet", (40,))
    with pytest.raises(ValueError, match="technique must be one of"):
        get_technique("magic")


def test_technique_schedule_shapes():
    curriculum = techniques.curriculum_schedule(0.5, 10)
    assert curriculum(0) == 0.0 and 0.49 < curriculum(9) <= 0.5
    assert all(curriculum(e) <= curriculum(e + 1) for e in range(9))
    early = techniques.early_schedule(0.3, 8)
    assert [early(e) for e in range(4)] == [0.3, 0.3, 0.0, 0.0]
    late = techniques.late_schedule(0.3, 8)
    assert [late(e) for e in range(4)] == [0.0, 0.0, 0.3, 0.3]


def test_width_overrides_the_hidden_size():
    mlp = build_model("mlp", (40,), 10, get_technique("dropout"), 0.1, width=7)
    assert [layer.out_features for layer in mlp.hidden] == [7, 7]
    cnn = build_model("cnn", (1, 8, 8), 10, get_technique("dropout"), 0.1, width=9)
    assert cnn.fc.out_features == 9
    gru = build_model("gru", (40,), 10, get_technique("locked"), 0.1, width=5)
    assert gru.gru1.hidden_size == 5
