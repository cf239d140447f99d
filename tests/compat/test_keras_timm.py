"""Keras 3 and timm behaviour carried over: Keras ``noise_shape`` validation and
``AlphaDropout(noise_shape=...)``; timm's ``drop_prob`` round trip and ``DropBlock2d``'s removed
arguments (``batchwise``, ``fast``: accepted and ignored, as timm does since 1.0.23)."""

from __future__ import annotations

import pytest
import torch

import dropkit
import dropkit.functional as F


@pytest.mark.parametrize(
    ("noise_shape", "error", "match"),
    [
        (5, TypeError, "sequence"),
        ("ab", TypeError, "sequence"),
        ((2, "x"), TypeError, "entries"),
        ((2, 1.5), TypeError, "entries"),
        ((2, True), TypeError, "entries"),
        ((2, -1), ValueError, "positive"),
        ((0, 3), ValueError, "positive"),
    ],
)
def test_bad_noise_shape_is_refused_in_constructor_and_function(noise_shape, error, match):
    for make in (
        lambda: dropkit.nn.Dropout(0.5, noise_shape=noise_shape),
        lambda: dropkit.nn.AlphaDropout(0.5, noise_shape=noise_shape),
        lambda: F.dropout(torch.ones(2, 3), 0.5, noise_shape=noise_shape, seed=0),
        lambda: F.alpha_dropout(torch.ones(2, 3), 0.5, noise_shape=noise_shape, seed=0),
        lambda: F.gaussian_dropout(torch.ones(2, 3), 0.5, noise_shape=noise_shape, seed=0),
    ):
        with pytest.raises(error, match=f"noise_shape.*{match}|{match}.*noise_shape"):
            make()


def test_alpha_dropout_noise_shape_shares_the_mask():
    x = torch.zeros(4, 50, 3)  # kept units give b, dropped ones a * alpha' + b
    layer = dropkit.nn.AlphaDropout(0.3, noise_shape=(None, 1, None), seed=2)
    y = layer(x)
    assert len(torch.unique(y)) == 2
    # the mask is identical along dim 1 (Keras: noise_shape[i] == 1 shares it)
    assert torch.equal(y, y[:, :1].expand_as(y))
    assert "noise_shape=(None, 1, None)" in repr(layer)
    with pytest.warns(UserWarning, match="noise_shape"):
        back = dropkit.surgery.to_torch(torch.nn.Sequential(layer), strict=False)
    assert back.unsupported and "noise_shape" in back.unsupported[0][2]


def test_timm_drop_prob_round_trip():
    timm = pytest.importorskip("timm")
    for rate in (0.1, 0.2, 0.3):
        path = dropkit.nn.DropPath(rate, scale_by_keep=False)  # goes back to timm's DropPath
        block = dropkit.nn.DropBlock2d(rate, 3)
        assert path.drop_prob == rate and block.drop_prob == rate
        model = torch.nn.Sequential(path, block)
        dropkit.surgery.to_torch(model)
        assert isinstance(model[0], timm.layers.DropPath) and model[0].drop_prob == rate
        assert isinstance(model[1], timm.layers.DropBlock2d) and model[1].drop_prob == rate
        dropkit.surgery.convert(model)
        assert model[0].drop_prob == rate and model[1].drop_prob == rate


def test_drop_block_removed_timm_arguments_accepted_unknown_refused():
    timm = pytest.importorskip("timm")
    ours = dropkit.nn.DropBlock2d(0.1, 3, batchwise=True, fast=False)
    theirs = timm.layers.DropBlock2d(0.1, 3, batchwise=True, fast=False)
    assert ours.block_size == (3, 3) and theirs.block_size == 3
    # timm warns on an unknown keyword; dropkit refuses it (docs/differences.md).
    with pytest.warns(UserWarning, match="bogus"):
        timm.layers.DropBlock2d(0.1, 3, bogus=1)
    with pytest.raises(TypeError, match="bogus"):
        dropkit.nn.DropBlock2d(0.1, 3, bogus=1)
