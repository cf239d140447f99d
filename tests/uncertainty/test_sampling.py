"""The sampling engine: shapes, reproducibility, chunking invariance, reducers, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dropkit
from dropkit.uncertainty import sample


def _mlp(dtype: torch.dtype = torch.float64) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(5, 32), nn.BatchNorm1d(32), nn.ReLU(), dropkit.nn.Dropout(0.3),
        nn.Linear(32, 32), nn.ReLU(), dropkit.nn.Dropout(0.3), nn.Linear(32, 4),
    ).to(dtype)  # fmt: skip


def _x(batch: int = 9) -> torch.Tensor:
    return torch.randn(batch, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_shape_is_samples_batch_rest():
    net = _mlp()
    assert sample(net, _x(), samples=7, seed=0).shape == (7, 9, 4)
    assert sample(net, _x(1), samples=1, seed=0).shape == (1, 1, 4)


def test_seed_reproduces_and_differs():
    net = _mlp()
    a = sample(net, _x(), samples=6, seed=5)
    assert torch.equal(a, sample(net, _x(), samples=6, seed=5))
    assert not torch.equal(a, sample(net, _x(), samples=6, seed=6))
    assert not torch.equal(a[0], a[1])  # samples differ from each other


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    # Same masks; a GEMM's rounding may depend on its row count (BLAS blocking), by ~1 ulp.
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_chunking_invariance_bitwise_masks():
    """Exact elementwise layers around dropout: bit-identical for any budget (transcendental
    ops may round differently in SIMD bodies and scalar tails, GEMMs by row count)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.ReLU(), dropkit.nn.Dropout(0.4), nn.Hardtanh(), dropkit.nn.Dropout(0.2))
    x = torch.randn(9, 33)
    whole = sample(net, x, samples=12, seed=3, batch_budget=2**30)
    for budget in (40_000, 13_000):  # a few samples per chunk, then one or two
        assert torch.equal(whole, sample(net, x, samples=12, seed=3, batch_budget=budget))


def test_chunking_invariance_mlp():
    net = _mlp()
    whole = sample(net, _x(), samples=12, seed=3, batch_budget=2**30)
    for budget in (120_000, 60_000):
        chunked = sample(net, _x(), samples=12, seed=3, batch_budget=budget)
        _close(whole, chunked)


def test_sample_s_is_independent_of_batch_size_and_count():
    net = _mlp()
    full = sample(net, _x(9), samples=8, seed=2)
    _close(full[:, :4], sample(net, _x(9)[:4], samples=8, seed=2))
    assert torch.equal(full[:5], sample(net, _x(9), samples=5, seed=2))


def test_each_sample_is_a_plain_forward_with_its_steps():
    """Sample s equals a train-mode forward whose dropout modules use step h(seed, s) + call."""
    from dropkit import _mc_context

    net = _mlp()
    x = _x()
    out = sample(net, x, samples=3, seed=11)
    steps = _mc_context.sample_steps(11, 0, 3)
    dropouts = [m for m in net.modules() if isinstance(m, dropkit.nn.Dropout)]
    net.eval()
    for s in range(3):
        h = x
        for layer in net:
            if isinstance(layer, dropkit.nn.Dropout):
                h = dropkit.functional.dropout(h, layer.p, seed=layer.seed, step=steps[s])
            else:
                h = layer(h)
        _close(out[s], h.detach())
    assert len(dropouts) == 2


def test_steps_and_modes_are_left_as_they_were():
    net = _mlp().train()
    for m in net.modules():
        if isinstance(m, dropkit.nn.DropoutModule):
            m.step.fill_(17)
    bn_mean = net[1].running_mean.clone()
    sample(net, _x(), samples=4, seed=0)
    assert all(m.training for m in net.modules())
    assert all(int(m.step) == 17 for m in net.modules() if isinstance(m, dropkit.nn.DropoutModule))
    assert torch.equal(net[1].running_mean, bn_mean)


def test_batch_consistent_masks_are_shared_across_inputs():
    torch.manual_seed(0)
    net = nn.Sequential(dropkit.nn.Dropout(0.5))
    ones = torch.ones(6, 40)
    out = sample(net, ones, samples=5, seed=0, batch_consistent=True)
    assert torch.equal(out, out[:, :1].expand_as(out))  # same mask for every input
    assert not torch.equal(out[0], out[1])  # a new mask per sample
    independent = sample(net, ones, samples=5, seed=0)
    assert not torch.equal(independent[:, 0], independent[:, 1])


def test_streaming_reducers_match_full_samples():
    net = _mlp()
    full = sample(net, _x(), samples=10, seed=4)
    budget = 60_000  # several chunks
    mean = sample(net, _x(), samples=10, seed=4, batch_budget=budget, reduce="mean")
    moments = sample(net, _x(), samples=10, seed=4, batch_budget=budget, reduce="moments")
    torch.testing.assert_close(mean, full.mean(0), rtol=0, atol=1e-12)
    torch.testing.assert_close(moments.variance, full.var(0, correction=0), rtol=0, atol=1e-12)
    probs = nn.Sequential(net, nn.Softmax(-1))
    summary = sample(probs, _x(), samples=10, seed=4, batch_budget=budget, reduce="classification")
    full_probs = full.softmax(-1)
    torch.testing.assert_close(summary.mean, full_probs.mean(0))
    torch.testing.assert_close(
        summary.mutual_information, dropkit.uncertainty.mutual_information(full_probs)
    )
    torch.testing.assert_close(
        summary.variation_ratio, dropkit.uncertainty.variation_ratio(full_probs)
    )
    logits = dropkit.uncertainty.ClassificationReducer(from_logits=True)
    from_logits = sample(net, _x(), samples=10, seed=4, reduce=logits)
    torch.testing.assert_close(from_logits.predictive_entropy, summary.predictive_entropy)


def test_functional_dropout_in_forward_takes_part():
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3, 3)
            self.drop = dropkit.nn.Dropout(0.0)  # makes the model MC-capable

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return dropkit.functional.dropout(self.drop(self.linear(x)), 0.5, seed=9, step=0)

    out = sample(Functional(), torch.ones(4, 3), samples=6, seed=0)
    assert not torch.equal(out[0], out[1])


def test_bad_inputs():
    net = _mlp()
    with pytest.raises(ValueError, match="samples must be an int >= 1"):
        sample(net, _x(), samples=0)
    with pytest.raises(ValueError, match=r"batch_budget=10 bytes is too small .* at least \d+"):
        sample(net, _x(), samples=3, batch_budget=10)
    with pytest.raises(ValueError, match="batch_budget must be an int >= 1"):
        sample(net, _x(), batch_budget=0)
    with pytest.raises(ValueError, match="model has no dropkit dropout"):
        sample(nn.Sequential(nn.Linear(5, 2), nn.Dropout(0.5)), _x())
    with pytest.raises(ValueError, match="reduce must be None"):
        sample(net, _x(), reduce="median")
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        sample(lambda t: t, _x())  # type: ignore[arg-type]

    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(5, 2).double()
            self.drop = dropkit.nn.Dropout(0.5)  # present but never called

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x)

    unused = Unused()
    with pytest.raises(ValueError, match="made no dropkit dropout call"):
        sample(unused, _x())


@pytest.mark.parametrize(
    "dropout",
    [
        lambda: dropkit.nn.SpatialDropout2d(0.5),
        lambda: dropkit.nn.GaussianDropout(0.3),
        lambda: dropkit.nn.AlphaDropout(0.3),
    ],
    ids=["spatial", "gaussian", "alpha"],
)
def test_every_primitive_samples_per_sample_and_is_chunk_invariant(dropout):
    torch.manual_seed(0)
    net = nn.Sequential(nn.BatchNorm2d(4), dropout()).eval()
    x = torch.randn(3, 4, 5, 5)
    whole = sample(net, x, samples=6, seed=1, batch_budget=2**30)
    assert whole.shape == (6, 3, 4, 5, 5)
    assert not torch.equal(whole[0], whole[1])
    assert torch.equal(whole, sample(net, x, samples=6, seed=1, batch_budget=30_000))
    if isinstance(net[1], dropkit.nn.SpatialDropout2d):
        zero = (whole == 0).flatten(3)
        assert torch.equal(zero.all(-1), zero.any(-1))  # whole channels dropped


def test_surgery_routed_functional_dropout_samples_reproducibly():
    """F.dropout inside a plain torch model, routed by surgery, takes part in MC sampling."""
    from dropkit.surgery import route_functional

    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(6, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.dropout(self.linear(x), 0.5, self.training)

    torch.manual_seed(0)
    net = Plain().double().eval()
    route_functional(net, seed=3)
    x = torch.ones(5, 6, dtype=torch.float64)
    whole = sample(net, x, samples=6, seed=2)
    assert not torch.equal(whole[0], whole[1])
    assert (whole == 0).any()
    _close(whole, sample(net, x, samples=6, seed=2, batch_budget=3_000))
    assert not net.training
