"""The backend contract stated in README.md and docs/differences.md: which ops are bit-exact
across backends and which are bounded, and the bound.

Bit-exact (every backend, every dtype): every Bernoulli-masked op whose arithmetic is a select
and one multiply (dropout both modes, spatial/locked dropout, alpha dropout, bias-dropout-add,
the ReLU fused ops). Bounded: Gaussian dropout (normals from log/sin/cos) and the fused GELU ops
(erf): ``|backend - reference| <= 16 * eps32 * (1 + sigma) * max(|x|, 1)`` with
``sigma = sqrt(p / (1 - p))`` (1 + sigma := 1 for GELU), eps32 the float32 machine epsilon;
their masks are bit-identical (tests/kernels).
Measured worst case over 5 seeds, 4x64x512 inputs of scale 10:
5.7 eps32 (Gaussian, p = 0.3), 22.2 eps32 (p = 0.9, sigma = 3), 8.9 eps32 (GELU)
(this file's ops over seeds 0-4, ``x = randn * 10``).
"""

from __future__ import annotations

import math

import pytest
import torch

import dropkit.functional as F
from dropkit.kernels import available_backends, use_backend

pytestmark = pytest.mark.skipif(
    "cpu" not in available_backends(), reason="the CPU backend (numba) is not installed"
)
EPS32 = torch.finfo(torch.float32).eps
DTYPES = [torch.float32, torch.float64, torch.bfloat16]


def _bias(x: torch.Tensor) -> torch.Tensor:
    return torch.linspace(-1, 1, x.shape[-1], dtype=x.dtype)


EXACT = {
    "dropout": lambda x: F.dropout(x, 0.3, seed=1, step=2),
    "dropout_standard": lambda x: F.dropout(x, 0.3, mode="standard", seed=1, step=2),
    "spatial_dropout": lambda x: F.spatial_dropout(x, 0.3, seed=1, step=2),
    "locked_dropout": lambda x: F.locked_dropout(x, 0.3, time_dim=1, seed=1, step=2),
    "alpha_dropout": lambda x: F.alpha_dropout(x, 0.1, seed=1, step=2),
    "bias_dropout_add": lambda x: F.bias_dropout_add(x, _bias(x), x, 0.3, seed=1, step=2),
    "bias_relu_dropout": lambda x: F.bias_act_dropout(x, _bias(x), 0.3, "relu", seed=1),
}
BOUNDED = {
    "gaussian_dropout_p0.3": (lambda x: F.gaussian_dropout(x, 0.3, seed=1, step=2), 0.3),
    "gaussian_dropout_p0.9": (lambda x: F.gaussian_dropout(x, 0.9, seed=1, step=2), 0.9),
    "bias_gelu_dropout": (lambda x: F.bias_act_dropout(x, _bias(x), 0.3, "gelu", seed=1), None),
    "bias_gelu_dropout_add": (
        lambda x: F.bias_act_dropout_add(x, _bias(x), x, 0.3, "gelu", seed=1),
        None,
    ),
}


def _input(dtype: torch.dtype) -> torch.Tensor:
    return (torch.randn(4, 33, 257, generator=torch.Generator().manual_seed(0)) * 10).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", sorted(EXACT))
def test_bit_exact_ops(name, dtype):
    x = _input(dtype)
    with use_backend("reference"):
        expected = EXACT[name](x)
    with use_backend("cpu"):
        got = EXACT[name](x)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", sorted(BOUNDED))
def test_bounded_ops_stay_within_the_stated_bound(name, dtype):
    op, p = BOUNDED[name]
    x = _input(dtype)
    with use_backend("reference"):
        expected = op(x)
    with use_backend("cpu"):
        got = op(x)
    sigma = 0.0 if p is None else math.sqrt(p / (1 - p))
    bound = 16 * EPS32 * (1 + sigma) * x.double().abs().clamp_min(1)
    if dtype == torch.bfloat16:  # one final rounding to bfloat16 on top
        bound = bound + torch.finfo(torch.bfloat16).eps * expected.double().abs()
    diff = (got.double() - expected.double()).abs()
    assert bool((diff <= bound).all()), float((diff / bound).max())
