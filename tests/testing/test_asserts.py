"""dropkit.testing: the assertions catch what they promise, and the pytest plugin seeds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dropkit
from dropkit.testing import (
    assert_dropout_active,
    assert_expectation_preserved,
    assert_inference_deterministic,
)

pytest_plugins = ["pytester"]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), dropkit.nn.Dropout(0.3))


def test_inference_determinism_passes_and_restores_state():
    model = _model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert_inference_deterministic(model, torch.randn(4, 8))
    assert model.training
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_inference_determinism_catches_stuck_module_and_forgotten_training():
    model = _model()
    original_train = model[2].train
    model[2].train = lambda mode=True: original_train(True)  # ignores eval()
    with pytest.raises(AssertionError, match=r"modules still sampling: \['2'\]"):
        assert_inference_deterministic(model, torch.randn(4, 8))

    class Forgetful(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.dropout(x, 0.5)

    with pytest.raises(AssertionError, match="functional dropout that ignores"):
        assert_inference_deterministic(Forgetful(), torch.randn(16))


def test_dropout_active():
    model = _model()
    assert_dropout_active(model, torch.randn(4, 8))
    model[2].p = 0.0
    with pytest.raises(AssertionError, match=r"identical outputs: dropout is not active.*\['2'\]"):
        assert_dropout_active(model, torch.randn(4, 8))
    with pytest.raises(AssertionError, match="dropout modules found: none"):
        assert_dropout_active(nn.Linear(2, 2), torch.randn(3, 2))


@pytest.mark.parametrize(
    "module",
    [
        dropkit.nn.Dropout(0.3, seed=1),
        dropkit.nn.Dropout(0.5, seed=2, mode="standard"),
        dropkit.nn.GaussianDropout(0.4, seed=3),
        dropkit.nn.SpatialDropout1d(0.3, seed=4),
    ],
    ids=["inverted", "standard", "gaussian", "spatial"],
)
def test_expectation_preserved_for_unbiased_techniques(module):
    torch.manual_seed(0)
    assert_expectation_preserved(module, torch.randn(2, 4, 8), samples=800)


def test_expectation_check_catches_a_biased_module():
    class Biased(dropkit.nn.Dropout):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = super().forward(x)
            return out * (1.0 - self.p) if self.training else out  # undoes the 1/(1-p) scaling

    torch.manual_seed(0)
    with pytest.raises(AssertionError, match="beyond the 5-sigma bound"):
        assert_expectation_preserved(Biased(0.3, seed=0), torch.randn(64) + 1.0, samples=400)


def test_pytest_plugin_seeds_with_option_and_marker(pytester, monkeypatch):
    # Load the plugin explicitly, as an uninstalled checkout would, whether or not the installed
    # package's pytest11 entry point is present.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(
        """
        import pytest, torch

        def test_default(dropkit_seed):
            assert dropkit_seed == 11
            expected = torch.rand(3, generator=torch.Generator().manual_seed(11))
            assert torch.equal(torch.rand(3), expected)

        @pytest.mark.dropkit_seed(5)
        def test_marker(dropkit_seed):
            assert dropkit_seed == 5
            expected = torch.rand(2, generator=torch.Generator().manual_seed(5))
            assert torch.equal(torch.rand(2), expected)
        """
    )
    result = pytester.runpytest_inprocess("-p", "dropkit.testing.plugin", "--dropkit-seed", "11")
    result.assert_outcomes(passed=2)
