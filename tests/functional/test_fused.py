"""Fused dropout blocks on the reference path: the mask of F.dropout, the values of the
composition, gradients, saved tensors and bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as torch_functional

import dropkit.functional as F
from dropkit import kernels
from dropkit.kernels.reference import activate

ACTIVATIONS = ["gelu", "gelu_tanh", "relu", "silu"]


@pytest.fixture(autouse=True)
def _reference_backend():
    # These tests pin the reference path, the ground truth; the CPU backend is held to it in
    # tests/kernels/test_cpu_fused.py (bit for bit, or within the stated bound for gelu, whose
    # CPU reference is oneDNN's kernel).
    with kernels.use_backend("reference"):
        yield


def _inputs(shape=(6, 33), dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=dtype)
    bias = torch.randn(shape[-1:], generator=gen, dtype=dtype)
    residual = torch.randn(shape, generator=gen, dtype=dtype)
    return x, bias, residual


def test_bias_dropout_add_is_the_composition_bit_for_bit():
    x, bias, residual = _inputs()
    fused = F.bias_dropout_add(x, bias, residual, 0.3, seed=4, step=2, offset=7)
    composed = residual + F.dropout(x + bias, 0.3, seed=4, step=2, offset=7)
    assert torch.equal(fused, composed)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_bias_act_dropout_add_is_the_composition_in_float32(activation):
    x, bias, residual = _inputs()
    fused = F.bias_act_dropout_add(x, bias, residual, 0.3, activation, seed=4, step=2)
    composed = residual + F.dropout(activate(x + bias, activation), 0.3, seed=4, step=2)
    assert torch.equal(fused, composed)
    alone = F.bias_act_dropout(x, bias, 0.3, activation, seed=4, step=2)
    assert torch.equal(alone, F.dropout(activate(x + bias, activation), 0.3, seed=4, step=2))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_use_float32_intermediates_and_round_once(dtype):
    x, bias, residual = _inputs(dtype=dtype)
    fused = F.bias_act_dropout_add(x, bias, residual, 0.2, "gelu", seed=1)
    h = x.float() + bias.float()
    expected = residual.float() + F.dropout(torch_functional.gelu(h), 0.2, seed=1)
    assert fused.dtype == dtype
    assert torch.equal(fused, expected.to(dtype))


def test_mask_is_the_dropout_mask():
    x, bias, residual = _inputs((64, 64))
    y = F.bias_act_dropout_add(x, bias, residual, 0.5, "silu", seed=9, step=3, offset=11)
    dropped = F.dropout(torch.ones(64, 64), 0.5, seed=9, step=3, offset=11) == 0
    assert torch.equal(y[dropped], residual[dropped])
    assert bool((y[~dropped] != residual[~dropped]).all())


def test_eval_and_edge_rates():
    x, bias, residual = _inputs()
    state = torch.get_rng_state()
    evaluated = F.bias_act_dropout_add(x, bias, residual, 0.5, "gelu", training=False)
    assert torch.equal(torch.get_rng_state(), state), "inference must not draw a seed"
    assert torch.equal(evaluated, residual + torch_functional.gelu(x + bias))
    assert torch.equal(F.bias_act_dropout_add(x, bias, residual, 0.0, "relu", seed=1),
                       residual + torch.relu(x + bias))  # fmt: skip
    assert torch.equal(F.bias_dropout_add(x, bias, residual, 1.0, seed=1), residual)
    assert torch.equal(F.bias_act_dropout(x, None, 1.0, "gelu", seed=1), torch.zeros_like(x))


def test_rate_tensor_equals_float():
    x, bias, residual = _inputs()
    assert torch.equal(
        F.bias_dropout_add(x, bias, residual, torch.tensor(0.37), seed=2),
        F.bias_dropout_add(x, bias, residual, 0.37, seed=2),
    )


@pytest.mark.parametrize("activation", ["identity", *ACTIVATIONS])
def test_gradcheck_float64(activation):
    x, bias, residual = (t.requires_grad_(True) for t in _inputs((3, 5), torch.float64))
    if activation == "relu":  # keep clear of the kink at 0, where finite differences fail
        with torch.no_grad():
            x.add_(torch.sign(x + bias) * 0.1)

    def op(x, bias, residual):
        if activation == "identity":
            return F.bias_dropout_add(x, bias, residual, 0.4, seed=3)
        return F.bias_act_dropout_add(x, bias, residual, 0.4, activation, seed=3)

    assert torch.autograd.gradcheck(op, (x, bias, residual))


def test_broadcast_residual_and_bias_gradients_are_reduced():
    x = torch.randn(4, 3, 5, requires_grad=True)
    bias = torch.randn(3, 1, requires_grad=True)
    residual = torch.randn(5, requires_grad=True)
    y = F.bias_act_dropout_add(x, bias, residual, 0.3, "gelu", seed=2)
    y.sum().backward()
    assert bias.grad.shape == (3, 1) and residual.grad.shape == (5,)
    assert torch.allclose(residual.grad, torch.full((5,), 12.0))


def _saved_storages(op, *tensors):
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        op(*tensors)
    return saved


def test_backward_saves_no_mask_and_no_intermediate():
    x, bias, residual = (t.requires_grad_(True) for t in _inputs((64, 32)))
    saved = _saved_storages(lambda *a: F.bias_dropout_add(*a, 0.3, seed=1), x, bias, residual)
    assert [t.data_ptr() for t in saved if t.numel() > 1] == [bias.data_ptr()]
    saved = _saved_storages(
        lambda *a: F.bias_act_dropout_add(*a, 0.3, "gelu", seed=1), x, bias, residual
    )
    large = [t for t in saved if t.numel() > 1]
    pointers = {x.data_ptr(), bias.data_ptr()}
    assert len(large) == 2 and {t.data_ptr() for t in large} == pointers


def test_bad_input():
    x, bias, residual = _inputs((3, 4))
    with pytest.raises(ValueError, match=r"bias shape \(5,\) does not broadcast to the input "
                       r"shape \(3, 4\)"):  # fmt: skip
        F.bias_dropout_add(x, torch.zeros(5), residual, 0.1, seed=1)
    with pytest.raises(ValueError, match=r"residual shape \(2, 3, 4\) does not broadcast"):
        F.bias_dropout_add(x, bias, torch.zeros(2, 3, 4), 0.1, seed=1)
    with pytest.raises(ValueError, match="bias is on meta but input is on cpu"):
        F.bias_act_dropout(x, torch.zeros(4, device="meta"), 0.1, "gelu", seed=1)
    with pytest.raises(ValueError, match=r"activation must be one of \('gelu'"):
        F.bias_act_dropout(x, bias, 0.1, "tanh", seed=1)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        F.bias_dropout_add(x, bias, residual, 1.5, seed=1)
    with pytest.raises(TypeError, match="bias must be a floating-point tensor"):
        F.bias_dropout_add(x, torch.ones(4, dtype=torch.int64), residual, 0.1, seed=1)


def test_compiles_fullgraph():
    x, bias, residual = _inputs()

    def block(x, bias, residual, step):
        return F.bias_act_dropout_add(x, bias, residual, 0.3, "gelu", seed=5, step=step)

    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    step = torch.tensor(3)
    assert torch.equal(compiled(x, bias, residual, step), block(x, bias, residual, step))
