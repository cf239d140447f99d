"""Every elementwise module passes the contract; module-specific behaviour."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import dropkit
from dropkit import rng
from tests.contract import check_module_contract

MODULES = {
    "Dropout": (lambda: dropkit.nn.Dropout(0.5, seed=1), (4, 6, 5)),
    "DropoutNoiseShape": (lambda: dropkit.nn.Dropout(0.5, noise_shape=(None, 1, None)), (4, 6, 5)),
    "SpatialDropout1d": (lambda: dropkit.nn.SpatialDropout1d(0.5, seed=2), (4, 6, 5)),
    "SpatialDropout2d": (lambda: dropkit.nn.SpatialDropout2d(0.5, seed=3), (4, 6, 5, 3)),
    "SpatialDropout3d": (lambda: dropkit.nn.SpatialDropout3d(0.5, seed=4), (4, 6, 2, 3, 2)),
    "LockedDropout": (lambda: dropkit.nn.LockedDropout(0.5, time_dim=1, seed=5), (4, 6, 5)),
    "GaussianDropout": (lambda: dropkit.nn.GaussianDropout(0.5, seed=6), (4, 6, 5)),
    "AlphaDropout": (lambda: dropkit.nn.AlphaDropout(0.5, seed=7), (4, 6, 5)),
    "FeatureAlphaDropout": (lambda: dropkit.nn.FeatureAlphaDropout(0.5, seed=8), (4, 6, 5)),
}

# Awkward inputs: odd sizes in float32 (with torch.compile), bf16, channels_last where 4-D.
CASES = [
    (name, variant)
    for name, (_, shape) in MODULES.items()
    for variant in ("odd", "bf16", "channels_last")
    if variant != "channels_last" or len(shape) == 4
]


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_contract(name, variant):
    factory, shape = MODULES[name]
    x = torch.randn(shape).to(torch.bfloat16 if variant == "bf16" else torch.float32)
    if variant == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    torch.manual_seed(0)
    check_module_contract(factory, x, check_compile=variant == "odd")


def test_standard_mode_eval_rule():
    check_module_contract(
        lambda: dropkit.nn.Dropout(0.3, mode="standard", seed=1),
        torch.randn(5, 7),
        eval_identity=False,
        eval_expected=lambda m, x: x * (1 - m.p_eff),
    )


def test_seed_drawn_from_default_generator():
    torch.manual_seed(11)
    a = dropkit.nn.Dropout(0.5)
    torch.manual_seed(11)
    b = dropkit.nn.Dropout(0.5)
    assert int(a.seed) == int(b.seed)
    assert int(dropkit.nn.Dropout(0.5).seed) != int(a.seed)


def test_p_property_reads_and_writes_rate():
    m = dropkit.nn.Dropout(0.25, seed=1)
    assert m.p == 0.25
    m.p = 0.75
    assert float(m.rate) == 0.75 and m.p_eff == rng.p_eff(0.75)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got 1.5"):
        m.p = 1.5
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\), got 1.0"):
        dropkit.nn.GaussianDropout(1.0)


def test_rate_is_never_cast_by_half():
    model = nn.Sequential(nn.Linear(4, 4), dropkit.nn.Dropout(0.1, seed=1))
    model.to(torch.bfloat16)
    assert model[1].rate.dtype == torch.float32 and model[1].p == pytest.approx(0.1)
    assert model[0].weight.dtype == torch.bfloat16


def test_reset_seed_restarts_the_stream():
    m = dropkit.nn.Dropout(0.5, seed=3)
    x = torch.randn(100)
    first = m(x)
    m(x)
    m.reset_seed(3)
    assert int(m.step) == 0 and torch.equal(m(x), first)


def test_resumed_run_reproduces_masks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), dropkit.nn.Dropout(0.5), nn.Linear(16, 2))
    x = torch.randn(4, 8)
    for _ in range(3):
        model(x)
    checkpoint = copy.deepcopy(model.state_dict())
    expected = [model(x) for _ in range(2)]
    torch.manual_seed(123)  # a different process state
    resumed = nn.Sequential(nn.Linear(8, 16), dropkit.nn.Dropout(0.5), nn.Linear(16, 2))
    resumed.load_state_dict(checkpoint)
    assert all(torch.equal(resumed(x), e) for e in expected)


def test_drop_in_for_torch_signatures():
    assert dropkit.nn.Dropout(p=0.2, inplace=True).inplace
    assert dropkit.nn.SpatialDropout2d(p=0.2, inplace=False).p == pytest.approx(0.2)
    assert dropkit.nn.AlphaDropout(p=0.2, inplace=False).p == pytest.approx(0.2)


def test_spatial_module_unbatched_input():
    m = dropkit.nn.SpatialDropout2d(0.5, seed=1)
    y = m(torch.ones(8, 5, 5))
    per_channel = (y != 0).flatten(1)
    assert bool((per_channel.all(-1) | ~per_channel.any(-1)).all())
    with pytest.raises(ValueError, match=r"SpatialDropout2d expects a 4-D \(batched\) or 3-D"):
        m(torch.ones(5, 5))


def test_compile_model_with_every_module_matches_eager():
    torch.manual_seed(0)

    class Everything(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.spatial2d = dropkit.nn.SpatialDropout2d(0.2)
            self.spatial3d = dropkit.nn.SpatialDropout3d(0.2)
            self.spatial1d = dropkit.nn.SpatialDropout1d(0.2)
            self.locked = dropkit.nn.LockedDropout(0.2, time_dim=2)
            self.dropout = dropkit.nn.Dropout(0.3)
            self.standard = dropkit.nn.Dropout(0.3, mode="standard")
            self.gaussian = dropkit.nn.GaussianDropout(0.2)
            self.alpha = dropkit.nn.AlphaDropout(0.1)
            self.feature_alpha = dropkit.nn.FeatureAlphaDropout(0.1)
            self.head = nn.Linear(8 * 6 * 6, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.spatial2d(torch.relu(self.conv(x)))
            h = self.spatial3d(h.unsqueeze(2)).squeeze(2)
            h = self.locked(self.spatial1d(h.flatten(2))).reshape(x.shape[0], -1)
            h = self.standard(self.dropout(h))
            h = self.feature_alpha(self.alpha(self.gaussian(h)))
            return self.head(h)

    eager = Everything()
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, fullgraph=True)
    x = torch.randn(2, 3, 6, 6)
    for _ in range(2):
        torch.testing.assert_close(compiled(x), eager(x), rtol=1e-6, atol=1e-6)
    eager.eval()
    compiled_model.eval()
    torch.testing.assert_close(compiled(x), eager(x), rtol=1e-6, atol=1e-6)


def test_compiled_dropout_is_bit_exact():
    m = dropkit.nn.Dropout(0.5, seed=9)
    eager = copy.deepcopy(m)
    compiled = torch.compile(m, fullgraph=True)
    x = torch.randn(64, 65)
    for _ in range(3):
        assert torch.equal(compiled(x), eager(x))


def test_rate_change_does_not_recompile():
    torch._dynamo.reset()
    m = dropkit.nn.Dropout(0.5, seed=9)
    counter = torch._dynamo.testing.CompileCounter()
    compiled = torch.compile(m, fullgraph=True, backend=counter)
    x = torch.randn(32)
    compiled(x)
    m.p = 0.1
    y = compiled(x)
    assert counter.frame_count == 1
    assert torch.equal(y != 0, dropkit.functional.dropout(x, 0.1, seed=9, step=1) != 0)


def test_torch_export():
    model = nn.Sequential(nn.Linear(4, 4), dropkit.nn.Dropout(0.5, seed=1))
    exported = torch.export.export(model, (torch.randn(3, 4),))
    targets = [str(n.target) for n in exported.graph.nodes if n.op == "call_function"]
    assert any("dropkit.dropout" in t for t in targets), targets
