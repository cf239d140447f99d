"""MC mode: dropout samples, everything else stays in eval, and the exact state comes back."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dropkit
from dropkit.uncertainty import MCCapable, is_mc_capable, mc_mode


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), dropkit.nn.Dropout(0.5), nn.LayerNorm(8),
        nn.Linear(8, 3), dropkit.nn.GaussianDropout(0.2),
    )  # fmt: skip


class _FunctionalDropout(nn.Module):
    """A stand-in for surgery's wrapper of functional dropout: samples only in MC mode."""

    def __init__(self) -> None:
        super().__init__()
        self.mc = False

    def set_mc_mode(self, enabled: bool) -> bool:
        previous, self.mc = self.mc, enabled
        return previous

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropkit.functional.dropout(x, 0.5, self.training or self.mc, seed=3)


def test_batchnorm_stats_untouched_and_dropout_samples():
    net = _net()
    bn = net[1]
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    x = torch.randn(16, 4)
    with mc_mode(net):
        assert not bn.training and not net[3].training and not net[0].training
        assert net[2].training and net[5].training
        first, second = net(x), net(x)
    assert not torch.equal(first, second)  # dropout sampled
    for key, value in bn.state_dict().items():
        assert torch.equal(value, before[key]), key  # running stats and counter untouched


def test_restores_exact_mixed_modes():
    net = _net()
    net.train()
    net[1].eval()  # a mixed state must come back exactly
    net[2].eval()
    modes = [m.training for m in net.modules()]
    with mc_mode(net):
        pass
    assert [m.training for m in net.modules()] == modes


def test_restores_on_exception():
    net = _net().eval()
    modes = [m.training for m in net.modules()]
    with pytest.raises(RuntimeError, match="boom"), mc_mode(net):
        assert net[2].training
        raise RuntimeError("boom")
    assert [m.training for m in net.modules()] == modes


def test_function_form_and_restore():
    net = _net().eval()
    handle = dropkit.mc_mode(net)
    assert net[2].training and not net[1].training
    handle.restore()
    assert not any(m.training for m in net.modules())


def test_mc_capable_protocol_is_switched_and_restored():
    wrapper = _FunctionalDropout()
    net = nn.Sequential(nn.Linear(4, 4), wrapper).eval()
    assert is_mc_capable(wrapper) and isinstance(wrapper, MCCapable)
    assert not is_mc_capable(net[0])
    x = torch.ones(2, 4)
    assert torch.equal(net(x), net[0](x))
    with mc_mode(net):
        assert wrapper.mc
        assert (net(x) == 0).any()
    assert not wrapper.mc


def test_rejects_non_module():
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        mc_mode(lambda x: x)  # type: ignore[arg-type]
