"""The fused ``drop_path_add`` op (``x + drop_path(branch)`` in one pass): the bits of the two-op
composition on every backend, forward and backward; gradcheck; torch.compile; nothing of the
input's size saved for backward. The spec-level parity (every layout and mask) is in
``test_gpu_parity.py``'s table."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo.testing

import dropkit.functional as F
from dropkit import kernels
from dropkit.kernels import _ops

BACKENDS = ["reference", "cpu", "triton"]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# (shape, mode, batch_dim): per sample, the whole batch, samples along dim 1, a long row.
CALLS = [
    ((8, 3, 5), "row", 0),
    ((8, 3, 5), "batch", 0),
    ((2, 6, 7), "row", 1),
    ((3, 2100), "row", 0),
]


def _inputs(shape, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen).to(dtype).requires_grad_() for _ in range(3)]


def _forward_backward(op, x, branch, grad):
    leaves = [x.detach().clone().requires_grad_(), branch.detach().clone().requires_grad_()]
    y = op(*leaves)
    return (y.detach(), *torch.autograd.grad(y, leaves, grad))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("shape", "mode", "batch_dim"), CALLS, ids=str)
def test_same_bits_as_the_composition(backend, dtype, shape, mode, batch_dim):
    if backend == "triton":
        pytest.importorskip("triton")
    x, branch, grad = _inputs(shape, dtype)
    kwargs = {"mode": mode, "batch_dim": batch_dim, "seed": 2**33 + 7, "step": 4, "offset": 3}

    def fused(a, b):
        return F.drop_path_add(a, b, 0.4, **kwargs)

    def composed(a, b):
        return a + F.drop_path(b, 0.4, **kwargs)

    with kernels.use_backend("reference"):
        expected = _forward_backward(composed, x, branch, grad)
    with kernels.use_backend(backend):
        got = _forward_backward(fused, x, branch, grad)
    for have, want in zip(got, expected, strict=True):
        assert torch.equal(have, want)
    # Whole samples are dropped: the output there is exactly the residual.
    if mode == "row" and batch_dim == 0:
        dropped = (got[2] == 0).flatten(1).all(1)
        assert torch.equal(got[0][dropped], x.detach()[dropped])


def test_reaches_the_fused_op_and_unscaled_mode():
    x, branch, _ = _inputs((6, 4), torch.float32)
    calls = []
    real = kernels._dispatch.run

    def spy(spec, *args, **kwargs):
        calls.append(spec.name)
        return real(spec, *args, **kwargs)

    kernels._dispatch.run = spy
    try:
        y = F.drop_path_add(x, branch, 0.5, scale_by_keep=False, seed=1)
    finally:
        kernels._dispatch.run = real
    assert calls == ["drop_path_add_unscaled"]
    assert torch.equal(y, x + F.drop_path(branch, 0.5, scale_by_keep=False, seed=1))


def test_eval_zero_rate_and_mixed_dtypes_take_the_plain_add():
    x, branch, _ = _inputs((4, 3), torch.float32)
    assert torch.equal(F.drop_path_add(x, branch, 0.5, training=False), x + branch)
    assert torch.equal(F.drop_path_add(x, branch, 0.0), x + branch)
    half = branch.detach().to(torch.bfloat16)
    y = F.drop_path_add(x, half, 0.5, seed=2)
    assert y.dtype == torch.float32
    assert torch.equal(y, x + F.drop_path(half, 0.5, seed=2))


def test_gradcheck_and_saves_nothing_of_the_input_size():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    branch = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    for backend in ("reference", "cpu"):
        with kernels.use_backend(backend):
            assert torch.autograd.gradcheck(
                lambda a, b: F.drop_path_add(a, b, 0.5, seed=3, step=1), (x, branch)
            )
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = F.drop_path_add(x, branch, 0.5, seed=1)
    y.sum().backward()
    assert saved and all(t.numel() <= 1 for t in saved)


def test_grouped_step_draws_each_group_as_its_own_call():
    x, branch, _ = _inputs((6, 4), torch.float32)
    rate, seed = torch.tensor(0.5), torch.tensor(9)
    steps = torch.tensor([1, 2, 2**40])
    got = _ops.drop_path_add(x, branch, rate, seed, steps, 0, [2, 1], True)
    parts = [
        _ops.drop_path_add(a, b, rate, seed, s, 0, [2, 1], True)
        for a, b, s in zip(x.split(2), branch.split(2), steps, strict=True)
    ]
    assert torch.equal(got, torch.cat(parts))


def test_compile_fullgraph_one_op_and_no_recompile_on_rate_change():
    torch._dynamo.reset()
    counter = torch._dynamo.testing.CompileCounter()
    x, branch, _ = _inputs((8, 16), torch.float32)
    x, branch = x.detach(), branch.detach()

    def op(a, b, rate):
        return F.drop_path_add(a, b, rate, seed=5, step=2)

    compiled = torch.compile(op, fullgraph=True, backend=counter)
    for rate in (0.3, 0.6):
        rate_t = torch.tensor(rate)
        assert torch.equal(compiled(x, branch, rate_t), op(x, branch, rate_t))
    assert counter.frame_count == 1
    inductor = torch.compile(op, fullgraph=True)
    assert torch.equal(inductor(x, branch, torch.tensor(0.3)), op(x, branch, torch.tensor(0.3)))


def test_export_sees_one_op():
    class Block(torch.nn.Module):
        def forward(self, a, b):
            return F.drop_path_add(a, b, 0.5, seed=1)

    exported = torch.export.export(Block(), (torch.randn(4, 3), torch.randn(4, 3)))
    targets = [str(n.target) for n in exported.graph.nodes if n.op == "call_function"]
    assert sum("dropkit.drop_path_add" in t for t in targets) == 1, targets


@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_fast_paths_do_not_fall_back_and_keep_nan_out_of_dropped_samples(backend, monkeypatch):
    if backend == "triton":
        pytest.importorskip("triton")
    from dropkit.kernels.reference import ReferenceBackend

    def no_fallback(*args, **kwargs):
        raise AssertionError("ran the reference lowering")

    x, branch, _ = _inputs((16, 300), torch.bfloat16)
    x, branch = x.detach(), branch.detach()
    branch[:, 0] = float("nan")
    with kernels.use_backend("reference"):
        expected = x + F.drop_path(branch, 0.5, seed=4, step=1)
    monkeypatch.setattr(ReferenceBackend, "residual_add", no_fallback)
    with kernels.use_backend(backend):
        got = F.drop_path_add(x, branch, 0.5, seed=4, step=1)
    # A dropped sample outputs the residual exactly (select, not multiply: no NaN leaks); a
    # kept one is NaN where the branch is (NaN payloads may differ between libraries).
    torch.testing.assert_close(got, expected, rtol=0, atol=0, equal_nan=True)
    dropped = ~torch.isnan(got[:, 0])
    assert 0 < int(dropped.sum()) < 16 and torch.equal(got[dropped], x[dropped])
