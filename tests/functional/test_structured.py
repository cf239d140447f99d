"""DropBlock, DropPath, DropConnect, embedding dropout, ADL and patch dropout: the paper's
statistics, structure, autograd, reproducibility and bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as torch_f

import dropkit.functional as F
from dropkit import rng


def _sigma_bound(q: float, n: int) -> float:
    return 5 * math.sqrt(q * (1 - q) / n)


def _expected_block_fraction(p, spatial, block, gamma_scale=1.0):
    """Exact E[dropped fraction]: position x is dropped iff any of the n(x) valid seeds whose
    block covers it fires, each with probability gamma."""
    block = tuple(min(b, s) for b, s in zip(block, spatial, strict=True))
    valid = [s - b + 1 for s, b in zip(spatial, block, strict=True)]
    gamma = min(1.0, gamma_scale * p * math.prod(spatial) / math.prod(block) / math.prod(valid))
    ones = torch.ones(1, 1, *valid, dtype=torch.float64)
    pad = []
    for b in reversed(block):
        pad += [b - 1, b - 1]
    pool = torch_f.avg_pool2d if len(spatial) == 2 else torch_f.avg_pool3d
    counts = pool(torch_f.pad(ones, pad), block, stride=1) * math.prod(block)
    return float((1 - (1 - gamma) ** counts).mean())


# (map size, block size): odd/even blocks, H != W, block larger than the map.
BLOCK_CASES = [
    ((16, 16), (7, 7), 0.1),
    ((16, 16), (4, 4), 0.1),
    ((13, 20), (3, 3), 0.2),
    ((14, 9), (5, 2), 0.15),
    ((8, 8), (1, 1), 0.3),
    ((5, 6), (7, 7), 0.2),
]


@pytest.mark.parametrize(("spatial", "block", "p"), BLOCK_CASES)
def test_drop_block_realised_fraction_matches_the_paper(spatial, block, p):
    n = 2000
    x = torch.ones(n, 1, *spatial)
    y = F.drop_block(x, p, block_size=block, scale="none", seed=11, step=3)
    dropped_per_sample = (y == 0).double().flatten(1).mean(1)
    realised = float(dropped_per_sample.mean())
    expected = _expected_block_fraction(p, spatial, block)
    bound = 5 * float(dropped_per_sample.std()) / math.sqrt(n) + 1e-4
    assert abs(realised - expected) <= bound, (realised, expected, bound)
    # The paper's target: gamma makes the dropped fraction p up to block overlaps, which can
    # only lower it; stated bounds: within [0.75 p, p] plus the sampling error.
    assert 0.75 * p - bound <= realised <= p + bound, (realised, p)


def test_drop_block_3d_realised_fraction():
    n, spatial, block, p = 800, (6, 7, 8), (3, 3, 2), 0.15
    y = F.drop_block3d(torch.ones(n, 1, *spatial), p, block_size=block, scale="none", seed=2)
    dropped = (y == 0).double().flatten(1).mean(1)
    expected = _expected_block_fraction(p, spatial, block)
    bound = 5 * float(dropped.std()) / math.sqrt(n) + 1e-4
    assert abs(float(dropped.mean()) - expected) <= bound


@pytest.mark.parametrize(("spatial", "block", "p"), BLOCK_CASES[:4])
def test_drop_block_drops_whole_blocks_inside_the_map(spatial, block, p):
    y = F.drop_block(torch.ones(64, 3, *spatial), p, block_size=block, scale="none", seed=5)
    dropped = (y == 0).float()
    # Every dropped pixel lies in a full block inside the map: the morphological opening
    # (erode to block anchors, dilate back) of the dropped set is the set itself.
    anchors = -torch_f.max_pool2d(-dropped, block, stride=1)
    pad = [block[1] - 1, block[1] - 1, block[0] - 1, block[0] - 1]
    reopened = torch_f.max_pool2d(torch_f.pad(anchors, pad), block, stride=1)
    assert torch.equal(reopened, dropped)
    # Channels share the mask (couple_channels=True, the paper).
    assert torch.equal(dropped[:, :1].expand_as(dropped), dropped)


def test_drop_block_uncoupled_channels_differ():
    y = F.drop_block2d(torch.ones(8, 4, 12, 12), 0.3, block_size=3, couple_channels=False, seed=1)
    assert not torch.equal((y[:, 0] == 0), (y[:, 1] == 0))


def test_drop_block_larger_than_map_drops_whole_samples_with_rate_p():
    n, p = 20000, 0.3
    y = F.drop_block2d(torch.ones(n, 2, 3, 5), p, block_size=7, scale="none", seed=9)
    dropped = (y == 0).flatten(1)
    all_or_none = dropped.all(1) | (~dropped).all(1)
    assert bool(all_or_none.all())
    assert abs(float(dropped.all(1).double().mean()) - p) <= _sigma_bound(p, n)


def test_drop_block_scaling_modes():
    x = torch.ones(16, 2, 10, 10)
    kept = F.drop_block2d(x, 0.2, block_size=3, seed=4)
    # The paper: scale by numel / kept, so the sum is preserved exactly.
    assert math.isclose(float(kept.sum()), x.numel(), rel_tol=1e-5)
    rate = F.drop_block2d(x, 0.2, block_size=3, seed=4, scale="rate")
    assert torch.allclose(rate[rate != 0], torch.tensor(1 / (1 - rng.p_eff(0.2))))
    assert torch.equal(rate != 0, kept != 0)
    with pytest.raises(ValueError, match="scale must be one of"):
        F.drop_block2d(x, 0.2, scale="bogus")


def test_drop_block_reproducible_and_fresh_per_step():
    x = torch.randn(4, 3, 12, 12)
    a = F.drop_block2d(x, 0.2, block_size=3, seed=7, step=1)
    assert torch.equal(a, F.drop_block2d(x, 0.2, block_size=3, seed=7, step=1))
    assert not torch.equal(a, F.drop_block2d(x, 0.2, block_size=3, seed=7, step=2))
    assert F.drop_block2d(x, 0.2, training=False) is x


def test_drop_block_with_noise_fills_dropped_units():
    y = F.drop_block2d(torch.ones(4, 2, 10, 10), 0.3, block_size=3, with_noise=True, seed=3)
    plain = F.drop_block2d(torch.ones(4, 2, 10, 10), 0.3, block_size=3, seed=3)
    dropped = plain == 0
    assert bool(dropped.any()) and bool((y[dropped] != 0).all())


def test_drop_block_gradcheck():
    x = torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.drop_block2d(t, 0.3, block_size=2, seed=1), (x,))


@pytest.mark.parametrize(
    ("block_size", "error", "match"),
    [(0, ValueError, "block_size must be >= 1"), (2.5, TypeError, "block_size must be an int"),
     ((3, 3, 3), TypeError, "block_size must be an int or a tuple of 2"),
     (True, TypeError, "block_size")],
)  # fmt: skip
def test_drop_block_bad_block_size(block_size, error, match):
    with pytest.raises(error, match=match):
        F.drop_block2d(torch.ones(1, 1, 4, 4), 0.1, block_size=block_size)


def test_drop_block_bad_input_rank():
    with pytest.raises(ValueError, match="input must be 4-D"):
        F.drop_block2d(torch.ones(4, 4), 0.1)


def test_drop_path_zeroes_whole_samples():
    n, p = 20000, 0.3
    y = F.drop_path(torch.ones(n, 3, 2), p, seed=2)
    per_sample = y.flatten(1)
    assert bool(((per_sample == 0).all(1) | (per_sample != 0).all(1)).all())
    dropped = float((per_sample == 0).all(1).double().mean())
    assert abs(dropped - rng.p_eff(p)) <= _sigma_bound(p, n)
    assert torch.allclose(y[y != 0], torch.tensor(1 / (1 - rng.p_eff(p))))
    unscaled = F.drop_path(torch.ones(n, 3), p, seed=2, scale_by_keep=False)
    assert set(unscaled.unique().tolist()) == {0.0, 1.0}


def test_drop_path_batch_mode_drops_all_or_nothing():
    outcomes = [
        bool((F.drop_path(torch.ones(8, 3), 0.5, mode="batch", seed=1, step=s) == 0).all())
        for s in range(40)
    ]
    for s in range(40):
        y = F.drop_path(torch.ones(8, 3), 0.5, mode="batch", seed=1, step=s)
        assert bool((y == 0).all()) or bool((y != 0).all())
    assert 5 < sum(outcomes) < 35


def test_drop_path_add_and_bad_input():
    x, branch = torch.randn(6, 4), torch.randn(6, 4)
    y = F.drop_path_add(x, branch, 0.5, seed=3, step=1)
    assert torch.equal(y, x + F.drop_path(branch, 0.5, seed=3, step=1))
    with pytest.raises(ValueError, match="0-d tensor"):
        F.drop_path(torch.tensor(1.0), 0.5)
    with pytest.raises(ValueError, match="branch must have the shape"):
        F.drop_path_add(x, torch.randn(6, 5), 0.5)
    with pytest.raises(ValueError, match="mode must be"):
        F.drop_path(x, 0.5, mode="column")


def test_drop_path_saves_no_input_sized_tensor():
    saved = []
    x = torch.randn(32, 64, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = F.drop_path(x, 0.5, seed=1)
    y.sum().backward()
    assert all(t.numel() <= 1 for t in saved)
    x64 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.drop_path(t, 0.5, seed=2), (x64,))


def test_depth_rates():
    # One depth rule (issue 14): timm's by default, the paper's by name.
    assert F.depth_rates(4, 0.2, rule="huang") == pytest.approx([0.05, 0.1, 0.15, 0.2])
    assert F.depth_rates(5, 0.2) == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert F.depth_rates(1, 0.3) == [0.3]
    from dropkit import schedules

    for total in (1, 2, 7, 12):
        for rule in ("timm", "huang"):
            assert F.depth_rates(total, 0.3, rule=rule) == schedules.linear_by_depth(
                0.3, total, rule=rule
            )
    timm_layers = pytest.importorskip("timm.layers")
    if hasattr(timm_layers, "calculate_drop_path_rates"):
        expected = timm_layers.calculate_drop_path_rates(0.3, 7)
        assert F.depth_rates(7, 0.3) == pytest.approx(expected)
    with pytest.raises(ValueError, match="rule must be 'timm' or 'huang'"):
        F.depth_rates(3, 0.1, rule="paper")  # type: ignore[arg-type]
    assert F.depth_rates(3, 0.1, "uniform") == [0.1, 0.1, 0.1]
    with pytest.raises(ValueError, match="total must be a positive int"):
        F.depth_rates(0, 0.1)
    with pytest.raises(ValueError, match="max_rate must be in"):
        F.depth_rates(3, 1.5)
    with pytest.raises(ValueError, match="schedule must be"):
        F.depth_rates(3, 0.1, "cosine")


def test_drop_connect_linear_masks_the_weight_and_grads_reach_it():
    weight = torch.randn(5, 7, requires_grad=True)
    bias = torch.randn(5, requires_grad=True)
    x = torch.randn(3, 7)
    y = F.drop_connect_linear(x, weight, bias, 0.4, seed=8, step=2)
    keep = rng.keep_mask(weight.shape, 0.4, seed=8, step=2)
    masked = weight.detach() * keep / (1 - rng.p_eff(0.4))
    torch.testing.assert_close(y, torch_f.linear(x, masked, bias.detach()))
    y.sum().backward()
    torch.testing.assert_close(weight.grad, keep / (1 - rng.p_eff(0.4)) * x.sum(0))
    assert bool((weight.grad[~keep] == 0).all())
    assert torch.equal(F.drop_connect_linear(x, weight, bias, 0.4, False), x @ weight.T + bias)


def test_drop_connect_variance_and_gaussian_inference_match_sampling():
    torch.manual_seed(0)
    weight, x, p = torch.randn(3, 40), torch.randn(1, 40), 0.3
    samples = torch.stack(
        [F.drop_connect_linear(x, weight, None, p, seed=1, step=s) for s in range(3000)]
    )
    var_formula = p / (1 - p) * (x * x) @ (weight * weight).T
    torch.testing.assert_close(samples.var(0), var_formula, rtol=0.12, atol=0)
    # The paper's inference: the mean of relu(u) under the moment-matched Gaussian is close to
    # the mean of relu over real DropConnect samples (the CLT over 40 inputs).
    gaussian = F.drop_connect_linear(
        x, weight, None, p, False, activation=torch.relu, inference="gaussian",
        num_samples=4000, seed=3,
    )  # fmt: skip
    torch.testing.assert_close(gaussian, torch.relu(samples).mean(0), rtol=0.1, atol=0.1)
    mean = F.drop_connect_linear(x, weight, None, p, False, activation=torch.relu)
    torch.testing.assert_close(mean, torch.relu(x @ weight.T))


def test_drop_connect_conv_matches_masked_conv_and_gradcheck():
    weight = torch.randn(2, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    x = torch.randn(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    y = F.drop_connect_conv(x, weight, None, 0.5, padding=1, seed=3)
    keep = rng.keep_mask(weight.shape, 0.5, seed=3)
    expected = torch_f.conv2d(x, weight * keep / (1 - rng.p_eff(0.5)), None, 1, 1)
    torch.testing.assert_close(y, expected)
    assert torch.autograd.gradcheck(
        lambda a, w: F.drop_connect_conv(a, w, None, 0.5, padding=1, seed=3), (x, weight)
    )
    gauss = F.drop_connect_conv(
        x, weight, None, 0.5, False, padding=1, inference="gaussian", seed=1
    )
    assert gauss.shape == y.shape
    with pytest.raises(ValueError, match="inference must be"):
        F.drop_connect_conv(x, weight, inference="median")
    with pytest.raises(ValueError, match="weight must be 3-, 4- or 5-D"):
        F.drop_connect_conv(x, torch.ones(3, 3))


def test_embedding_dropout_drops_whole_rows_and_respects_padding():
    vocab, dim, p = 50, 4, 0.5
    weight = torch.randn(vocab, dim, requires_grad=True)
    before = weight.detach().clone()
    ids = torch.randint(0, vocab, (20, 30), generator=torch.Generator().manual_seed(0))
    ids[0, :5] = 3
    y = F.embedding_dropout(ids, weight, p, padding_idx=3, seed=4, step=1)
    row_keep = rng.keep_mask((vocab,), p, seed=4, step=1)
    row_keep[3] = True
    factor = torch.full((vocab, 1), 1 / (1 - rng.p_eff(p)))
    factor[3] = 1
    expected = torch_f.embedding(ids, before * row_keep[:, None] * factor)
    torch.testing.assert_close(y, expected)
    assert torch.equal(weight.detach(), before)  # no in-place change
    assert torch.equal(y[0, :5], before[3].expand(5, dim))  # padding row untouched
    y.sum().backward()
    assert bool((weight.grad[3] == 0).all())
    assert bool((weight.grad[~row_keep] == 0).all())
    inference = F.embedding_dropout(ids, weight, p, False)
    torch.testing.assert_close(inference, torch_f.embedding(ids, before))


def test_embedding_dropout_statistics_and_gradcheck():
    vocab, p = 20000, 0.2
    y = F.embedding_dropout(torch.arange(vocab), torch.ones(vocab, 2), p, seed=1)
    dropped = float((y[:, 0] == 0).double().mean())
    assert abs(dropped - p) <= _sigma_bound(p, vocab)
    weight = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([[0, 1, 5], [5, 2, 0]])
    assert torch.autograd.gradcheck(
        lambda w: F.embedding_dropout(ids, w, 0.5, padding_idx=4, seed=2), (weight,)
    )
    with pytest.raises(TypeError, match="input must be an int64"):
        F.embedding_dropout(torch.ones(3), weight, 0.1)
    with pytest.raises(ValueError, match="padding_idx must be in"):
        F.embedding_dropout(ids, weight, 0.1, padding_idx=9)


def test_adl_chooses_drop_mask_with_drop_rate():
    x = torch.rand(2, 3, 6, 6)
    attention = x.mean(1, keepdim=True)
    drop_mask = (attention < 0.9 * attention.amax((2, 3), keepdim=True)).float()
    importance = torch.sigmoid(attention)
    n, rate = 2000, 0.75
    choices = []
    for s in range(n):
        y = F.adl(x, rate, gamma=0.9, seed=5, step=s)
        is_drop = torch.allclose(y, x * drop_mask)
        assert is_drop or torch.allclose(y, x * importance)
        choices.append(is_drop)
    assert abs(sum(choices) / n - rate) <= _sigma_bound(rate, n)
    # The drop mask hides the most discriminative location of each sample.
    peak = attention.flatten(1).argmax(1)
    assert bool((drop_mask.flatten(1)[torch.arange(2), peak] == 0).all())
    assert F.adl(x, rate, training=False) is x


def test_adl_gradcheck_and_bad_input():
    x = torch.rand(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    for step in range(4):
        assert torch.autograd.gradcheck(lambda t, s=step: F.adl(t, 0.5, seed=1, step=s), (x,))
    with pytest.raises(ValueError, match="input must be 4-D"):
        F.adl(torch.ones(2, 3), 0.5)
    with pytest.raises(ValueError, match="gamma must be in"):
        F.adl(torch.ones(1, 1, 2, 2), 0.5, gamma=2.0)


def test_patch_dropout_keeps_prefix_and_a_random_subset():
    b, length, d, p = 4, 1 + 16, 3, 0.5
    x = torch.arange(b * length, dtype=torch.float32).reshape(b, length, 1).expand(b, length, d)
    y, idx = F.patch_dropout(x, p, num_prefix_tokens=1, seed=2)
    num_keep = max(1, int(16 * (1 - p)))
    assert y.shape == (b, 1 + num_keep, d) and idx.shape == (b, num_keep)
    assert torch.equal(y[:, 0], x[:, 0])
    assert torch.equal(y[:, 1:], torch.gather(x[:, 1:], 1, idx[..., None].expand(-1, -1, d)))
    for row in idx:
        assert len(set(row.tolist())) == num_keep
    assert not torch.equal(idx[0], idx[1])
    _, ordered = F.patch_dropout(x, p, ordered=True, seed=2)
    assert torch.equal(ordered, idx.sort(-1).values)
    again, _ = F.patch_dropout(x, p, seed=2)
    assert torch.equal(again, y)
    out, none = F.patch_dropout(x, p, training=False)
    assert out is x and none is None


def test_patch_dropout_uniform_selection_and_errors():
    x = torch.zeros(4000, 10, 1)
    _, idx = F.patch_dropout(x, 0.7, num_prefix_tokens=0, seed=1)
    counts = torch.bincount(idx.flatten(), minlength=10).double() / 4000
    q = 3 / 10
    assert bool(((counts - q).abs() <= _sigma_bound(q, 4000)).all())
    x64 = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.patch_dropout(t, 0.4, seed=1)[0], (x64,))
    with pytest.raises(ValueError, match="p must be in \\[0, 1\\)"):
        F.patch_dropout(x, 1.0)
    with pytest.raises(ValueError, match="num_prefix_tokens must be in"):
        F.patch_dropout(x, 0.5, num_prefix_tokens=11)


@pytest.mark.parametrize(
    "op",
    [
        lambda x, w: F.drop_connect_linear(x, w, None, 0.5, seed=1),
        lambda x, w: F.drop_path(x @ w.T, 0.5, seed=1),
        lambda x, w: F.embedding_dropout(torch.arange(32), w, 0.5, seed=1),
    ],
)
def test_no_bool_mask_of_the_weight_or_output_is_saved(op):
    saved = []
    x = torch.randn(32, 48, requires_grad=True)
    weight = torch.randn(40, 48, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = op(x, weight)
    y.sum().backward()
    masks = [t for t in saved if t.dtype == torch.bool]
    assert all(t.numel() <= 40 for t in masks), [tuple(t.shape) for t in masks]
