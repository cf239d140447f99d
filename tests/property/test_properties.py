"""Property-based tests (hypothesis) over shapes, dtypes, layouts, rates, offsets and batch
splits: split invariance, backend agreement, keep fraction within binomial 5 sigma, eval
identity. Bounded for CI: a fixed profile (derandomized, few examples, no deadline)."""

from __future__ import annotations

import math

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import dropkit.functional as F  # noqa: E402
from dropkit import kernels, rng  # noqa: E402

settings.register_profile("dropkit-ci", max_examples=15, deadline=None, derandomize=True)
settings.load_profile("dropkit-ci")

shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple)
rates = st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]) | st.floats(0.0, 1.0)
seeds = st.integers(0, 2**64 - 1)
offsets = st.integers(0, 2**40)
dtypes = st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.float16])
layouts = st.sampled_from(["contiguous", "transposed", "sliced", "channels_last"])


def _make(shape: tuple[int, ...], dtype: torch.dtype, layout: str) -> torch.Tensor:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    if layout == "transposed" and x.dim() >= 2:
        return x.transpose(0, 1).contiguous().transpose(0, 1)
    if layout == "sliced":
        return torch.cat([x, x], dim=-1)[..., : shape[-1]]
    if layout == "channels_last" and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


@given(shape=shapes, p=rates, seed=seeds, dtype=dtypes, layout=layouts)
def test_eval_identity_and_layout_independence(shape, p, seed, dtype, layout):
    x = _make(shape, dtype, layout)
    assert F.dropout(x, p, training=False, seed=seed) is x
    y = F.dropout(x, p, seed=seed)
    reference = F.dropout(x.contiguous(), p, seed=seed)
    assert torch.equal(y, reference)  # the mask follows the logical index, not memory


@given(
    batch=st.integers(2, 8), rest=st.lists(st.integers(1, 5), max_size=2).map(tuple),
    p=rates, seed=seeds, offset=offsets, split=st.integers(1, 7),
)  # fmt: skip
def test_split_invariance(batch, rest, p, seed, offset, split):
    split = min(split, batch - 1)
    x = torch.randn((batch, *rest))
    full = F.dropout(x, p, seed=seed, offset=offset)
    per_row = math.prod(rest)
    first = F.dropout(x[:split], p, seed=seed, offset=offset)
    second = F.dropout(x[split:], p, seed=seed, offset=offset + split * per_row)
    assert torch.equal(torch.cat([first, second]), full)


@given(numel=st.integers(2000, 20000), p=st.floats(0.0, 1.0), seed=seeds, offset=offsets)
def test_keep_fraction_within_5_sigma(numel, p, seed, offset):
    kept = rng.keep_mask((numel,), p, seed=seed, offset=offset).sum().item()
    keep = 1.0 - rng.p_eff(p)
    sigma = math.sqrt(numel * keep * (1.0 - keep))
    assert abs(kept - numel * keep) <= 5 * sigma + 1e-9


@given(shape=shapes, p=rates, seed=seeds, offset=offsets)
def test_rng_split_invariance(shape, p, seed, offset):
    numel = math.prod(shape)
    whole = rng.keep_mask((numel,), p, seed=seed, offset=offset)
    cut = numel // 2
    head = rng.keep_mask((cut,), p, seed=seed, offset=offset)
    tail = rng.keep_mask((numel - cut,), p, seed=seed, offset=offset + cut)
    assert torch.equal(torch.cat([head, tail]), whole)
    assert torch.equal(rng.keep_mask(shape, p, seed=seed, offset=offset).reshape(-1), whole)


_AVAILABLE = kernels.available_backends()
_BACKENDS = [name for name in ("reference", "cpu", "triton") if name in _AVAILABLE]


@pytest.mark.skipif(len(_BACKENDS) < 2, reason="needs the reference and cpu backends")
@given(shape=shapes, p=rates, seed=seeds, offset=st.integers(0, 2**20), dtype=dtypes)
def test_backend_agreement_dropout_exact(shape, p, seed, offset, dtype):
    x = torch.randn(shape).to(dtype)
    outputs = []
    for backend in _BACKENDS:
        with kernels.use_backend(backend):
            outputs.append(F.dropout(x, p, seed=seed, offset=offset))
    for other in outputs[1:]:
        assert torch.equal(other, outputs[0])  # Bernoulli dropout is bit-exact on every backend


@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 7), st.integers(1, 7)),
    p=st.floats(0.0, 0.5), seed=seeds, block=st.integers(1, 4),
)  # fmt: skip
def test_structured_ops_eval_identity_and_zeros(shape, p, seed, block):
    x = torch.randn(shape)
    assert F.drop_block2d(x, p, False, block_size=block, seed=seed) is x
    assert F.spatial_dropout(x, p, False, seed=seed) is x
    assert F.drop_path(x, p, False, seed=seed) is x
    y = F.spatial_dropout(x, p, seed=seed)
    dropped = (y == 0).flatten(2).all(-1)  # whole channels are zero or none is
    assert torch.equal(dropped, (y == 0).flatten(2).any(-1) & dropped)
    z = F.drop_block2d(x, p, block_size=block, seed=seed)
    assert z.shape == x.shape and torch.isfinite(z).all()


# -- every registered technique (dropkit._techniques): the same properties per module --------

from dropkit import _techniques  # noqa: E402

_SPECS = list(_techniques.TECHNIQUES.values())


def _strided(x: torch.Tensor) -> torch.Tensor:
    """``x``'s values in a non-contiguous tensor (every other element of a wider buffer)."""
    wide = torch.stack([x, torch.full_like(x, float("nan"))], dim=-1)
    return wide[..., 0]


@pytest.mark.parametrize("spec", _SPECS, ids=[spec.name for spec in _SPECS])
@settings(max_examples=4)
@given(p=st.floats(0.0, 0.9), seed=seeds, step=st.integers(0, 2**40))
def test_every_technique_eval_identity_determinism_layout(spec, p, seed, step):
    learned = getattr(spec, "learned", False)
    if learned:  # a learned rate starts in the open interval (0, 1)
        p = min(max(p, 0.05), 0.9)
    x = torch.randn(spec.test_shape, generator=torch.Generator().manual_seed(seed % 2**32))
    module = spec.build(p)
    module.reset_seed(seed)
    module.step.fill_(step)
    y = module(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    module.step.fill_(step)
    assert torch.equal(module(_strided(x)), y)  # same (seed, step): same bits, any layout
    if spec.eval_identity:
        assert module.eval()(x) is x
    if learned:
        return
    zero = spec.build(0.0).train()
    assert torch.equal(zero(x), x)  # rate 0 changes nothing in training either


@pytest.mark.parametrize("op", [F.dropout, F.gaussian_dropout, F.alpha_dropout])
@settings(max_examples=8)
@given(
    batch=st.integers(2, 6), width=st.integers(1, 9), p=st.floats(0.0, 0.9), seed=seeds,
    offset=offsets, split=st.integers(1, 5),
)  # fmt: skip
def test_elementwise_ops_split_invariance(op, batch, width, p, seed, offset, split):
    split = min(split, batch - 1)
    x = torch.randn(batch, width)
    full = op(x, p, seed=seed, offset=offset)
    head = op(x[:split], p, seed=seed, offset=offset)
    tail = op(x[split:], p, seed=seed, offset=offset + split * width)
    assert torch.equal(torch.cat([head, tail]), full)
