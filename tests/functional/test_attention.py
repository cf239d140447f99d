"""Attention dropout, DropHead and DropKey: reference vs PyTorch, masks, autograd, bad input."""

from __future__ import annotations

import math

import pytest
import torch

import dropkit.functional as F
from dropkit import rng


def _sigma_bound(q: float, n: int) -> float:
    return 5 * math.sqrt(q * (1 - q) / n)


def _qkv(*shape: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(*shape, generator=g, dtype=dtype) for _ in range(3))


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float", "causal"])
def test_reference_attention_equals_sdpa_without_dropout(mask_kind):
    q, k, v = _qkv(2, 3, 5, 8)
    kwargs: dict = {}
    if mask_kind == "bool":
        kwargs["attn_mask"] = torch.rand(5, 5, generator=torch.Generator().manual_seed(1)) > 0.3
        kwargs["attn_mask"][:, 0] = True
    elif mask_kind == "float":
        kwargs["attn_mask"] = torch.randn(3, 1, 5)
    elif mask_kind == "causal":
        kwargs["is_causal"] = True
    ours = F.attention(q, k, v, 0.0, **kwargs)
    theirs = torch.nn.functional.scaled_dot_product_attention(q, k, v, **kwargs)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    fast = F.attention(q, k, v, 0.0, use_sdpa=True, **kwargs)
    torch.testing.assert_close(fast, theirs)


def test_attention_dropout_drops_probabilities_with_the_counter_mask():
    q, k, v = _qkv(2, 3, 5, 8)
    y = F.attention(q, k, v, 0.3, seed=4, step=2)
    probs = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(8), dim=-1)
    dropped = F.dropout(probs, 0.3, seed=4, step=2)
    torch.testing.assert_close(y, dropped @ v)
    assert torch.equal(y, F.attention(q, k, v, 0.3, seed=4, step=2))
    assert not torch.equal(y, F.attention(q, k, v, 0.3, seed=4, step=3))
    inference = F.attention(q, k, v, 0.3, training=False)
    torch.testing.assert_close(inference, probs @ v)


def test_attention_gradcheck_and_no_saved_mask():
    q, k, v = (t.requires_grad_() for t in _qkv(1, 2, 3, 4, dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda a, b, c: F.attention(a, b, c, 0.4, seed=1), (q, k, v))
    saved = []
    q, k, v = (t.float().detach().requires_grad_() for t in (q, k, v))
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        F.attention(q, k, v, 0.4, seed=1)
    assert not any(t.dtype == torch.bool for t in saved)


def test_attention_bad_mask_shapes():
    q, k, v = _qkv(2, 3, 5, 8)
    with pytest.raises(ValueError, match="attn_mask of shape \\(4, 5\\) does not broadcast"):
        F.attention(q, k, v, 0.1, attn_mask=torch.ones(4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="attn_mask has 5 dims"):
        F.attention(q, k, v, 0.1, attn_mask=torch.ones(1, 2, 3, 5, 5))
    with pytest.raises(ValueError, match="exclusive"):
        F.attention(q, k, v, 0.1, attn_mask=torch.ones(5, 5), is_causal=True)
    with pytest.raises(ValueError, match="same number"):
        F.attention(q, k[0], v, 0.1)


def test_drop_head_zeroes_whole_heads_and_rescales_by_kept_heads():
    b, h, p = 4000, 6, 0.3
    x = torch.ones(b, h, 2, 3)
    y = F.drop_head(x, p, seed=2)
    per_head = y.flatten(2)
    head_dropped = (per_head == 0).all(-1)
    assert bool((head_dropped | (per_head != 0).all(-1)).all())
    assert abs(float(head_dropped.double().mean()) - rng.p_eff(p)) <= _sigma_bound(p, b * h)
    kept = (~head_dropped).sum(-1)
    values = per_head.amax(-1).amax(-1)
    has_kept = kept > 0
    torch.testing.assert_close(values[has_kept], (h / kept[has_kept]).float())
    # The paper's rescaling keeps each sample's sum.
    torch.testing.assert_close(y.sum((1, 2, 3))[has_kept], x.sum((1, 2, 3))[has_kept])
    by_rate = F.drop_head(x, p, seed=2, scale="rate")
    assert torch.equal(by_rate != 0, y != 0)
    assert F.drop_head(x, p, training=False) is x


def test_drop_head_other_axis_gradcheck_and_errors():
    x = torch.ones(3, 5, 4)  # (B, L, H): heads on the last axis
    y = F.drop_head(x, 0.5, head_dim=-1, seed=1)
    assert bool(((y == 0).all(1) | (y != 0).all(1)).all())
    x64 = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.drop_head(t, 0.4, seed=3), (x64,))
    with pytest.raises(ValueError, match="head_dim must not be the batch dim"):
        F.drop_head(x, 0.5, head_dim=0)
    with pytest.raises(ValueError, match="head_dim must be in"):
        F.drop_head(x, 0.5, head_dim=3)
    with pytest.raises(ValueError, match="scale must be"):
        F.drop_head(x, 0.5, scale="none")


def test_drop_key_drops_keys_before_softmax():
    n, p = 200, 0.25
    scores = torch.randn(2, 4, n, n)
    logits = F.drop_key(scores, p, seed=5)
    dropped = logits == torch.finfo(torch.float32).min
    assert abs(float(dropped.double().mean()) - rng.p_eff(p)) <= _sigma_bound(p, dropped.numel())
    assert torch.equal(logits[~dropped], scores[~dropped])
    probs = torch.softmax(logits, dim=-1)
    assert bool((probs[dropped] == 0).all())
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4, n))
    # Every key dropped: a uniform row (the paper's -1e12 fill), not NaN.
    all_dropped = torch.softmax(F.drop_key(torch.randn(1, 3), 1.0, seed=1), dim=-1)
    torch.testing.assert_close(all_dropped, torch.full((1, 3), 1 / 3))
    assert F.drop_key(scores, p, training=False) is scores
    x64 = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: torch.softmax(F.drop_key(t, 0.3, seed=2), -1), (x64,))
    with pytest.raises(ValueError, match="scores must be"):
        F.drop_key(torch.ones(3), 0.1)
