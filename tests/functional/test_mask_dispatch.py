"""Every technique that draws a mask of its own (DropBlock, embedding dropout, ADL, patch
dropout, the variational RNN, DropHead, DropKey, DropConnect's Gaussian inference) gives the
same bits through the op layer as it did drawing straight from :mod:`dropkit.rng`, on every
backend: each test rebuilds the technique's result from ``rng.keep_mask`` / ``rng.uniform`` /
``rng.normal`` (the draws it used before it went through dispatch) and compares exactly."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as torch_f

import dropkit.functional as F
from dropkit import kernels, rng
from dropkit.functional._recurrent import _unrolled_direction
from dropkit.kernels._spec import compute_dtype, dropout_scale

BACKENDS = ["reference", "cpu"]
DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]


def _backends():
    try:
        import triton  # noqa: F401
    except ImportError:
        return BACKENDS
    return [*BACKENDS, "triton"]


@pytest.fixture(params=_backends())
def backend(request):
    with kernels.use_backend(request.param):
        yield request.param


def _randn(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _scale(rate: float, dtype: torch.dtype) -> torch.Tensor:
    return dropout_scale(rng.threshold_tensor(torch.tensor(rate)), compute_dtype(dtype))


def _assert_bits(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert torch.equal(actual.view(-1).view(torch.uint8), expected.view(-1).view(torch.uint8))


# -- DropBlock ---------------------------------------------------------------------------------


def _old_drop_block(x, p, block, *, scale, couple, noise, seed, step, offset):
    spatial = tuple(x.shape[2:])
    block = tuple(min(b, s) for b, s in zip(block, spatial, strict=True))
    valid = [s - b + 1 for s, b in zip(spatial, block, strict=True)]
    channels = 1 if couple else x.shape[1]
    seed_shape = [x.shape[0], channels, *valid]
    factor = math.prod(spatial) / (math.prod(block) * math.prod(valid))
    rate = torch.tensor(p, dtype=torch.float32)
    gamma = torch.clamp(rate.double() * factor, 0.0, 1.0).float()
    uniforms = rng.uniform(seed_shape, seed=seed, step=step, offset=offset)
    seeds = (uniforms < gamma).float()
    padding = []
    for b in reversed(block):
        padding += [b - 1, b - 1]
    pool = (torch_f.max_pool1d, torch_f.max_pool2d, torch_f.max_pool3d)[len(spatial) - 1]
    keep = pool(torch_f.pad(seeds, padding), kernel_size=block, stride=1) == 0
    cd = compute_dtype(x.dtype)
    if scale == "kept":
        value = keep.numel() / keep.sum().clamp_min(1).to(cd)
    elif scale == "rate":
        value = _scale(p, x.dtype)
    else:
        value = torch.ones((), dtype=cd)
    kept = (x.to(cd) * value).to(x.dtype)
    fill = torch.zeros((), dtype=x.dtype)
    if noise:
        fill = rng.normal(x.shape, seed=seed, step=step, offset=offset + math.prod(seed_shape))
        fill = fill.to(x.dtype)
    return torch.where(keep, kept, fill)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    ("shape", "block", "options"),
    [
        ((2, 3, 9, 7), (3, 3), {"scale": "kept", "couple": True, "noise": False}),
        ((2, 3, 8, 8), (4, 2), {"scale": "rate", "couple": False, "noise": True}),
        ((1, 2, 5, 4, 6), (2, 2, 3), {"scale": "none", "couple": False, "noise": False}),
    ],
    ids=["2d-kept", "2d-rate-noise", "3d-none"],
)
def test_drop_block_bits(backend, dtype, shape, block, options):
    x = _randn(*shape, dtype=dtype)
    expected = _old_drop_block(x, 0.3, block, seed=7, step=2, offset=5, **options)
    actual = F.drop_block(
        x, 0.3, block_size=block, spatial_dims=len(block), scale=options["scale"],
        couple_channels=options["couple"], with_noise=options["noise"], seed=7, step=2, offset=5,
    )  # fmt: skip
    _assert_bits(actual, expected)


# -- embedding dropout --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("padding_idx", [None, 2])
def test_embedding_dropout_bits(backend, dtype, padding_idx):
    weight = _randn(11, 4, dtype=dtype)
    tokens = torch.tensor([[0, 2, 5, 10], [2, 2, 3, 7]])
    keep = rng.keep_mask((11,), 0.4, seed=3, step=1, offset=9)
    factor = _scale(0.4, dtype).expand(11)
    if padding_idx is not None:
        keep[padding_idx] = True
        factor = factor.clone()
        factor[padding_idx] = 1
    embedded = torch_f.embedding(tokens, weight, padding_idx)
    kept = (embedded.to(compute_dtype(dtype)) * factor[tokens].unsqueeze(-1)).to(dtype)
    expected = torch.where(keep[tokens].unsqueeze(-1), kept, torch.zeros((), dtype=dtype))
    actual = F.embedding_dropout(
        tokens, weight, 0.4, padding_idx=padding_idx, seed=3, step=1, offset=9
    )
    _assert_bits(actual, expected)


# -- ADL and patch dropout ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_adl_bits(backend, seed):
    x = _randn(2, 3, 5, 5, seed=seed)
    attention = x.mean(dim=1, keepdim=True)
    peak = attention.amax(dim=(2, 3), keepdim=True)
    drop_mask = (attention < 0.9 * peak).to(x.dtype)
    use_drop = rng.uniform((1,), seed=seed, step=4, offset=6).reshape(()) < torch.tensor(0.5)
    expected = x * torch.where(use_drop, drop_mask, torch.sigmoid(attention))
    _assert_bits(F.adl(x, 0.5, seed=seed, step=4, offset=6), expected)


@pytest.mark.parametrize("ordered", [False, True])
def test_patch_dropout_bits(backend, ordered):
    x = _randn(3, 9, 4)
    scores = rng.uniform((3, 8), seed=5, step=0, offset=3)
    keep = torch.argsort(scores, dim=-1, stable=True)[:, :4]
    if ordered:
        keep = keep.sort(dim=-1).values
    expected = torch.cat((x[:, :1], x[:, 1:].gather(1, keep[..., None].expand(3, 4, 4))), dim=1)
    actual, indices = F.patch_dropout(x, 0.5, ordered=ordered, seed=5, offset=3)
    assert torch.equal(indices, keep)
    _assert_bits(actual, expected)


# -- attention: DropHead and DropKey -----------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("scale", "head_dim"), [("kept", 1), ("rate", 2)])
def test_drop_head_bits(backend, dtype, scale, head_dim):
    x = _randn(3, 2, 4, 5, dtype=dtype)
    batch, heads = 3, x.shape[head_dim]
    keep = rng.keep_mask((batch, heads), 0.5, seed=8, step=3, offset=1)
    cd = compute_dtype(dtype)
    if scale == "kept":
        kept_heads = keep.sum(dim=1, keepdim=True).to(cd)
        factor = torch.where(kept_heads > 0, heads / kept_heads.clamp_min(1), 0.0)
    else:
        factor = _scale(0.5, dtype).expand(batch, 1)
    shape = [1] * x.dim()
    shape[0], shape[head_dim] = batch, heads
    multiplier = (keep.to(cd) * factor).reshape(shape).to(dtype)
    expected = torch.where(keep.reshape(shape), x * multiplier, torch.zeros((), dtype=dtype))
    actual = F.drop_head(x, 0.5, head_dim=head_dim, scale=scale, seed=8, step=3, offset=1)
    _assert_bits(actual, expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_drop_key_bits_and_gradient(backend, dtype):
    scores = _randn(2, 3, 5, 7, dtype=dtype).requires_grad_(True)
    keep = rng.keep_mask(scores.shape, 0.3, seed=4, step=6, offset=11)
    lowest = torch.tensor(torch.finfo(dtype).min, dtype=dtype)
    grad = _randn(2, 3, 5, 7, dtype=dtype, seed=1)
    actual = F.drop_key(scores, 0.3, seed=4, step=6, offset=11)
    actual.backward(grad)
    _assert_bits(actual.detach(), torch.where(keep, scores.detach(), lowest))
    _assert_bits(scores.grad, torch.where(keep, grad, torch.zeros((), dtype=dtype)))


# -- variational RNN and DropConnect's Gaussian inference --------------------------------------


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_variational_rnn_recurrent_mask_bits(backend, mode):
    torch.manual_seed(0)
    rnn = torch.nn.LSTM(3, 4) if mode == "lstm" else torch.nn.GRU(3, 4)
    x = _randn(5, 2, 3)
    h0 = torch.zeros(2, 4)
    keep = rng.keep_mask((2, 4), 0.3, seed=9, step=2, offset=2 * 3)  # after the input mask
    mask = keep.to(x.dtype) * _scale(0.3, x.dtype).to(x.dtype)
    params = list(rnn._flat_weights)
    expected, _, _ = _unrolled_direction(
        mode, x, h0, h0 if mode == "lstm" else None, params, mask, reverse=False
    )
    actual, _ = F.variational_rnn(
        x, None, [params], mode=mode, hidden_size=4, p_hidden=0.3, seed=9, step=2
    )
    _assert_bits(actual.detach(), expected.detach())


def test_drop_connect_gaussian_inference_bits(backend):
    x, weight = _randn(3, 4), _randn(5, 4, seed=1)
    mean = x @ weight.T
    keep_prob = 1 - rng.threshold(0.25) / rng.THRESHOLD_ONE
    keep_prob = torch.tensor(keep_prob, dtype=torch.float32)
    variance = (x * x) @ (weight * weight).T * ((1 - keep_prob) / keep_prob)
    noise = rng.normal((6, 3, 5), seed=2, step=1, offset=4)
    expected = torch.relu(mean + variance.clamp_min(0).sqrt() * noise).mean(dim=0)
    actual = F.drop_connect_linear(
        x, weight, None, 0.25, training=False, inference="gaussian", num_samples=6,
        activation=torch.relu, seed=2, step=1, offset=4,
    )  # fmt: skip
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)
