"""Fused dropout modules: the module contract, and forward = one functional call."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as torch_functional

import dropkit.functional as F
from dropkit import kernels, nn
from tests.contract import check_module_contract

BIAS = torch.linspace(-1, 1, 7)
RESIDUAL = torch.linspace(2, 3, 7 * 5).reshape(5, 7)


class _FixedOperands(nn.BiasActDropoutAdd):
    """One-input view for the contract harness: the bias and residual are fixed."""

    def forward(self, x):
        return super().forward(x, BIAS, RESIDUAL)


class _FixedBiasDropoutAdd(nn.BiasDropoutAdd):
    def forward(self, x):
        return super().forward(x, BIAS, RESIDUAL)


@pytest.mark.parametrize(
    ("activation", "backend"),
    # On the CPU backend gelu is within 1.5e-6 of PyTorch's (oneDNN's) gelu, not bit-equal (see
    # docs/cpu.md); gelu_tanh is bit-equal on every backend.
    [("gelu", "reference"), ("gelu_tanh", "auto")],
)
def test_bias_act_dropout_contract(activation, backend):
    approximate = "tanh" if activation == "gelu_tanh" else "none"
    with kernels.use_backend(backend):
        check_module_contract(
            lambda: nn.BiasActDropout(0.3, activation, seed=1),
            torch.randn(5, 7),
            eval_identity=False,
            eval_expected=lambda module, x: torch_functional.gelu(x, approximate=approximate),
        )


def test_bias_act_dropout_add_contract():
    check_module_contract(
        lambda: _FixedOperands(0.3, "silu", seed=2),
        torch.randn(5, 7),
        eval_identity=False,
        eval_expected=lambda module, x: RESIDUAL + torch_functional.silu(x + BIAS),
    )


def test_bias_dropout_add_contract():
    check_module_contract(
        lambda: _FixedBiasDropoutAdd(0.3, seed=3),
        torch.randn(5, 7),
        eval_identity=False,
        eval_expected=lambda module, x: RESIDUAL + (x + BIAS),
    )


def test_forward_is_the_functional_op_at_the_module_step():
    block = nn.BiasActDropoutAdd(0.25, "relu", seed=9)
    x = torch.randn(5, 7)
    first = block(x, BIAS, RESIDUAL)
    second = block(x, BIAS, RESIDUAL)
    assert torch.equal(first, F.bias_act_dropout_add(x, BIAS, RESIDUAL, 0.25, "relu", seed=9))
    assert torch.equal(
        second, F.bias_act_dropout_add(x, BIAS, RESIDUAL, 0.25, "relu", seed=9, step=1)
    )


def test_repr_and_bad_activation():
    assert repr(nn.BiasActDropout(0.1, "gelu_tanh", seed=0)) == (
        "BiasActDropout(p=0.1, activation='gelu_tanh')"
    )
    with pytest.raises(ValueError, match="activation must be one of"):
        nn.BiasActDropoutAdd(0.1, "swish")


def test_public_names():
    import dropkit

    assert {"BiasDropoutAdd", "BiasActDropout", "BiasActDropoutAdd"} <= set(dropkit.nn.__all__)
    assert {"bias_dropout_add", "bias_act_dropout", "bias_act_dropout_add"} <= set(
        dropkit.functional.__all__
    )
