"""The elementwise family: statistics, reproducibility, layout and split invariance, autograd."""

from __future__ import annotations

import math

import pytest
import torch

import dropkit.functional as F
from dropkit import rng

N = 1 << 20


def _keep_fraction(y: torch.Tensor) -> float:
    return (y != 0).double().mean().item()


def _binomial_bound(q: float, n: int) -> float:
    return 5 * math.sqrt(q * (1 - q) / n)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_keep_fraction_and_mean(p):
    x = torch.ones(N)
    y = F.dropout(x, p, seed=17, step=1)
    q = 1 - rng.p_eff(p)
    assert abs(_keep_fraction(y) - q) <= _binomial_bound(q, N)
    # Inverted dropout preserves the mean: each kept unit equals 1/q.
    assert torch.allclose(y[y != 0], torch.tensor(1 / q))
    mean_sigma = math.sqrt((1 - q) / q / N)
    assert abs(y.double().mean().item() - 1) <= 5 * mean_sigma


def test_standard_mode_train_and_inference():
    x = torch.randn(4096)
    y = F.dropout(x, 0.3, mode="standard", seed=3)
    kept = y != 0
    assert torch.equal(y[kept], x[kept])
    inference = F.dropout(x, 0.3, training=False, mode="standard")
    assert torch.equal(inference, x * (1 - rng.p_eff(0.3)))


def test_standard_and_inverted_share_the_mask():
    x = torch.randn(999)
    a = F.dropout(x, 0.4, seed=8, step=2)
    b = F.dropout(x, 0.4, seed=8, step=2, mode="standard")
    assert torch.equal(a != 0, b != 0)


@pytest.mark.parametrize(
    "op",
    [
        lambda x: F.dropout(x, 0.5, training=False),
        lambda x: F.spatial_dropout(x, 0.5, training=False),
        lambda x: F.locked_dropout(x, 0.5, training=False, time_dim=1),
        lambda x: F.gaussian_dropout(x, 0.5, training=False),
        lambda x: F.alpha_dropout(x, 0.5, training=False),
        lambda x: F.feature_alpha_dropout(x, 0.5, training=False),
        lambda x: F.dropout(x, 0.0, seed=1),
    ],
)
def test_inference_returns_input_itself(op):
    x = torch.randn(2, 3, 4)
    assert op(x) is x


def test_nan_and_inf_in_dropped_units_do_not_leak():
    x = torch.full((4096,), float("nan"))
    x[::2] = float("inf")
    y = F.dropout(x, 0.5, seed=1)
    dropped = F.dropout(torch.ones(4096), 0.5, seed=1) == 0
    assert bool((y[dropped] == 0).all())


def test_p_one_gives_zeros_and_zero_grad():
    x = torch.randn(100, requires_grad=True)
    y = F.dropout(x, 1.0, seed=1)
    y.sum().backward()
    assert bool((y == 0).all()) and bool((x.grad == 0).all())
    assert not torch.isnan(x.grad).any()


@pytest.mark.parametrize("shape", [(0,), (3, 0, 2)])
def test_empty_tensors(shape):
    x = torch.empty(shape, requires_grad=True)
    for op in (F.dropout, F.gaussian_dropout, F.alpha_dropout):
        y = op(x, 0.3, seed=1)
        assert y.shape == x.shape
        y.sum().backward()


def test_same_seed_step_same_output_and_different_step_differs():
    x = torch.randn(64, 33)
    assert torch.equal(F.dropout(x, 0.5, seed=5, step=2), F.dropout(x, 0.5, seed=5, step=2))
    assert not torch.equal(F.dropout(x, 0.5, seed=5, step=2), F.dropout(x, 0.5, seed=5, step=3))


def test_no_seed_draws_from_torch_generator():
    x = torch.randn(256)
    torch.manual_seed(3)
    a = F.dropout(x, 0.5)
    torch.manual_seed(3)
    assert torch.equal(a, F.dropout(x, 0.5))


ALL_OPS = {
    "dropout": lambda x, **k: F.dropout(x, 0.3, **k),
    "standard": lambda x, **k: F.dropout(x, 0.3, mode="standard", **k),
    "noise_shape": lambda x, **k: F.dropout(x, 0.3, noise_shape=(None, 1, None, None), **k),
    "spatial": lambda x, **k: F.spatial_dropout(x, 0.3, **k),
    "locked": lambda x, **k: F.locked_dropout(x, 0.3, time_dim=2, **k),
    "gaussian": lambda x, **k: F.gaussian_dropout(x, 0.3, **k),
    "alpha": lambda x, **k: F.alpha_dropout(x, 0.3, **k),
    "feature_alpha": lambda x, **k: F.feature_alpha_dropout(x, 0.3, **k),
}


def _mask_numel(name: str, x: torch.Tensor) -> int:
    n, c, h, w = x.shape
    return {"noise_shape": n * h * w, "spatial": n * c, "feature_alpha": n * c,
            "locked": n * c * w}.get(name, x.numel())  # fmt: skip


@pytest.mark.parametrize("name", list(ALL_OPS))
def test_two_halves_equal_the_whole(name):
    op = ALL_OPS[name]
    x = torch.randn(6, 3, 5, 7)
    whole = op(x, seed=99, step=4)
    first = op(x[:2], seed=99, step=4)
    second = op(x[2:], seed=99, step=4, offset=_mask_numel(name, x[:2]))
    assert torch.equal(torch.cat([first, second]), whole)


@pytest.mark.parametrize("name", list(ALL_OPS))
def test_channels_last_same_values(name):
    op = ALL_OPS[name]
    x = torch.randn(2, 3, 5, 7)
    y_cl = op(x.to(memory_format=torch.channels_last), seed=1, step=2)
    assert torch.equal(y_cl, op(x, seed=1, step=2))
    assert y_cl.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", list(ALL_OPS))
def test_independent_of_thread_count(name):
    op = ALL_OPS[name]
    x = torch.randn(8, 4, 33, 65)
    torch.set_num_threads(1)
    single = op(x, seed=7, step=1)
    torch.set_num_threads(2)
    assert torch.equal(op(x, seed=7, step=1), single)


def test_strided_input_same_values_as_contiguous():
    base = torch.randn(10, 20)
    view = base[::2, 1::3]
    assert torch.equal(F.dropout(view, 0.5, seed=3), F.dropout(view.contiguous(), 0.5, seed=3))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtypes_keep_dtype_and_mask(dtype):
    x = torch.randn(1000).to(dtype)
    y = F.dropout(x, 0.25, seed=4)
    assert y.dtype == dtype
    assert torch.equal(y != 0, F.dropout(torch.ones(1000), 0.25, seed=4) != 0)


def test_spatial_zeroes_whole_channels():
    x = torch.ones(16, 32, 5, 6)
    y = F.spatial_dropout(x, 0.5, seed=2)
    per_channel = (y != 0).flatten(2)
    assert bool((per_channel.all(-1) | ~per_channel.any(-1)).all())
    assert 0 < int(per_channel.all(-1).sum()) < 16 * 32


def test_spatial_sequence_layout_channel_last():
    x = torch.ones(4, 50, 8)  # (N, L, C)
    y = F.spatial_dropout(x, 0.5, channel_dim=-1, seed=2)
    kept = y != 0
    assert bool((kept == kept[:, :1, :]).all())


def test_locked_masks_equal_over_time():
    x = torch.ones(20, 4, 16)
    y = F.locked_dropout(x, 0.5, time_dim=0, seed=6)
    assert bool(((y != 0) == (y[:1] != 0)).all())
    assert 0 < int((y[0] != 0).sum()) < 64


def test_gaussian_noise_variance():
    p = 0.3
    y = F.gaussian_dropout(torch.ones(N), p, seed=12).double()
    var = p / (1 - p)
    assert abs(y.mean().item() - 1) <= 5 * math.sqrt(var / N)
    assert abs(y.var().item() - var) <= 5 * var * math.sqrt(2 / (N - 1))


@pytest.mark.parametrize("p", [0.05, 0.2, 0.5])
def test_alpha_dropout_keeps_mean_and_variance(p):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, generator=gen, dtype=torch.float64)
    y = F.alpha_dropout(x, p, seed=21)
    mean, var = y.mean().item(), y.var().item()
    fourth = ((y - mean) ** 4).mean().item()
    assert abs(mean) <= 5 * math.sqrt(var / N)
    assert abs(var - 1) <= 5 * math.sqrt((fourth - var**2) / N)


def test_feature_alpha_dropout_drops_whole_channels():
    x = torch.randn(8, 16, 10, dtype=torch.float64)
    y = F.feature_alpha_dropout(x, 0.5, seed=3)
    keep = F.spatial_dropout(torch.ones(8, 16, 10), 0.5, seed=3) != 0
    a_dropped = y[~keep]
    assert torch.allclose(a_dropped, a_dropped[:1].expand_as(a_dropped))


GRAD_OPS = [
    lambda x: F.dropout(x, 0.4, seed=1, step=2),
    lambda x: F.dropout(x, 0.4, mode="standard", seed=1),
    lambda x: F.spatial_dropout(x, 0.4, seed=1),
    lambda x: F.locked_dropout(x, 0.4, time_dim=1, seed=1),
    lambda x: F.gaussian_dropout(x, 0.4, seed=1),
    lambda x: F.alpha_dropout(x, 0.4, seed=1),
    lambda x: F.feature_alpha_dropout(x, 0.4, seed=1),
]


@pytest.mark.parametrize("op", GRAD_OPS)
def test_gradcheck_float64(op):
    x = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(op, (x,))
    assert torch.autograd.gradgradcheck(op, (x,))


@pytest.mark.parametrize("op", GRAD_OPS)
def test_backward_saves_no_input_sized_tensor(op):
    saved: list[torch.Tensor] = []

    def pack(t):
        saved.append(t)
        return t

    x = torch.randn(64, 32, 8, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = op(x)
    assert all(t.numel() <= 1 for t in saved), [tuple(t.shape) for t in saved]
    y.sum().backward()
    assert x.grad is not None


def test_gradient_is_the_mask_times_scale():
    x = torch.randn(5000, requires_grad=True)
    y = F.dropout(x, 0.2, seed=2)
    y.backward(torch.ones_like(y))
    expected = (y != 0).float() / (1 - rng.p_eff(0.2))
    assert torch.equal(x.grad, expected)


def test_inplace_modifies_input_and_keeps_autograd():
    base = torch.randn(300, requires_grad=True)
    x = base * 1.0
    y = F.dropout(x, 0.5, seed=1, inplace=True)
    assert y is x
    y.sum().backward()
    expected = F.dropout(torch.ones(300), 0.5, seed=1)
    assert torch.equal(base.grad, expected)


def test_rate_tensor_equals_float():
    x = torch.randn(777)
    assert torch.equal(F.dropout(x, torch.tensor(0.37), seed=2), F.dropout(x, 0.37, seed=2))


def test_dropout_keep_mask_equals_rng_keep_mask():
    x = torch.ones(3, 17)
    y = F.dropout(x, 0.6, seed=31, step=8, offset=5)
    assert torch.equal(y != 0, rng.keep_mask((3, 17), 0.6, seed=31, step=8, offset=5))
