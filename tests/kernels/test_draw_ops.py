"""The draw ops (``keep_mask``, ``uniform_noise``, ``normal_noise``): every backend gives the
draws of :mod:`dropkit.rng` bit for bit, ``auto`` serves them from the fast path, and DropKey's
op saves no logits-sized mask for backward."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo.testing

import dropkit.functional as F
from dropkit import kernels, rng
from dropkit.kernels import _ops
from tests.kernels._calls import OpCalls


def _backend_names() -> list[str]:
    names = ["reference", "cpu"]
    try:
        import triton  # noqa: F401
    except ImportError:
        return names
    return [*names, "triton"]


def _backend(name: str) -> OpCalls:
    with kernels.use_backend(name):
        return OpCalls(kernels.backend_for(kernels.SPECS["keep_mask"], torch.zeros(())))


def _expected(op: str, rate: float, seed: int, step: int, offset: int, shape: list[int]):
    if op == "keep_mask":
        return rng.keep_mask(shape, rate, seed=seed, step=step, offset=offset)
    if op == "uniform_noise":
        return rng.uniform(shape, seed=seed, step=step, offset=offset)
    return rng.normal(shape, seed=seed, step=step, offset=offset)


# Shapes: one element, a partial Philox block, several blocks, empty; offsets unaligned to both
# the 8-half and the 4-word blocks.
CASES = [([1], 0), ([7], 3), ([3, 5, 7], 13), ([4097], 1 << 33), ([0, 3], 5)]


@pytest.mark.parametrize("name", _backend_names())
@pytest.mark.parametrize("op", ["keep_mask", "uniform_noise", "normal_noise"])
@pytest.mark.parametrize(("shape", "offset"), CASES, ids=str)
def test_each_backend_gives_the_rng_draws(name, op, shape, offset):
    backend = _backend(name)
    assert backend.name == name
    for rate in (0.0, 0.3, 1.0) if op == "keep_mask" else (0.0,):
        draw = (torch.tensor(rate), rng.seed_tensor(0x1234_5678_9ABC), rng.step_tensor(7))
        actual = backend.draws(op, *draw, offset, shape)
        expected = _expected(op, rate, 0x1234_5678_9ABC, 7, offset, shape)
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        assert torch.equal(actual, expected), (name, op, rate)


def test_auto_serves_the_draws_from_the_cpu_backend():
    rate = torch.tensor(0.5)
    for op in ("keep_mask", "uniform_noise", "normal_noise"):
        assert kernels.backend_for(kernels.SPECS[op], rate).name == "cpu"


def test_public_draw_ops_equal_rng():
    seed, step = rng.seed_tensor(3), rng.step_tensor(2)
    rate = torch.tensor(0.25)
    keep = _ops.keep_mask(rate, seed, step, 5, [6, 4])
    assert torch.equal(keep, rng.keep_mask((6, 4), 0.25, seed=3, step=2, offset=5))
    assert torch.equal(
        _ops.uniform_noise(seed, step, 5, [9]), rng.uniform((9,), seed=3, step=2, offset=5)
    )
    assert torch.equal(
        _ops.normal_noise(seed, step, 5, [9]), rng.normal((9,), seed=3, step=2, offset=5)
    )


def test_draw_ops_compile_without_graph_breaks_or_recompiles_on_rate_change():
    counter = torch._dynamo.testing.CompileCounter()

    @torch.compile(backend=counter, fullgraph=True)
    def draws(rate, seed, step):
        keep = _ops.keep_mask(rate, seed, step, 0, [4, 4])
        return keep, _ops.uniform_noise(seed, step, 0, [5]), _ops.normal_noise(seed, step, 0, [5])

    seed, step = rng.seed_tensor(1), rng.step_tensor(0)
    for rate in (0.1, 0.6):
        keep, uniform, normal = draws(torch.tensor(rate), seed, step)
        assert torch.equal(keep, rng.keep_mask((4, 4), rate, seed=1))
        assert torch.equal(uniform, rng.uniform((5,), seed=1))
        assert torch.equal(normal, rng.normal((5,), seed=1))
    assert counter.frame_count == 1


def _saved_bytes(fn) -> int:
    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(t.numel() * t.element_size() for t in saved)


def test_drop_key_saves_no_logits_sized_mask():
    scores = torch.randn(2, 4, 64, 64, requires_grad=True)
    seed, step = rng.seed_tensor(4), rng.step_tensor(1)

    def old_path() -> None:  # the keep mask drawn outside the op: autograd keeps it for where
        keep = rng.keep_mask(scores.shape, 0.3, seed=seed, step=step)
        lowest = torch.tensor(torch.finfo(scores.dtype).min)
        torch.where(keep, scores, lowest)

    before = _saved_bytes(old_path)
    after = _saved_bytes(lambda: F.drop_key(scores, 0.3, seed=4, step=1))
    assert before >= scores.numel()  # one byte per logit
    assert after <= 64  # the 0-d rate, seed and step
