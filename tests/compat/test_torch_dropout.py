"""dropkit's drop-ins against torch.nn's originals, from torch's documented behaviour (the
facts torch's ``test/nn/test_dropout.py`` checks): ``p`` round trip, ``isinstance``,
functional signatures, eval passthrough, state_dict both ways, DropoutNd rank rules."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as TF
from torch import nn

import dropkit
import dropkit.functional as F
from dropkit import surgery

RATES = [0.1, 0.2, 0.3, 1 / 3, 0.7, 0.123456789, 0.0, 1.0]
DROP_INS = [
    (dropkit.nn.Dropout, nn.Dropout),
    (dropkit.nn.SpatialDropout1d, nn.Dropout1d),
    (dropkit.nn.SpatialDropout2d, nn.Dropout2d),
    (dropkit.nn.SpatialDropout3d, nn.Dropout3d),
    (dropkit.nn.AlphaDropout, nn.AlphaDropout),
    (dropkit.nn.FeatureAlphaDropout, nn.FeatureAlphaDropout),
]


@pytest.mark.parametrize("p", RATES)
@pytest.mark.parametrize(("ours", "theirs"), DROP_INS, ids=lambda c: c.__name__)
def test_p_reads_back_the_float_written(ours, theirs, p):
    module = ours(p)
    assert module.p == theirs(p).p == p
    module.p = 0.25
    assert module.p == 0.25
    back = surgery.to_torch(nn.Sequential(ours(p))).model[0]
    assert type(back) is theirs and back.p == p


def test_p_after_loading_a_float32_rate_is_the_shortest_decimal():
    source, target = dropkit.nn.Dropout(0.1, seed=0), dropkit.nn.Dropout(0.5, seed=0)
    target.load_state_dict(source.state_dict())
    assert target.p == 0.1
    target.rate.fill_(0.3)
    assert target.p == 0.3
    assert dropkit.nn.DropPath(0.1).drop_prob == 0.1
    assert dropkit.nn.DropBlock2d(0.1).drop_prob == 0.1


@pytest.mark.parametrize(("ours", "theirs"), DROP_INS, ids=lambda c: c.__name__)
def test_isinstance_of_the_torch_class(ours, theirs):
    module = ours(0.2)
    assert isinstance(module, theirs) and isinstance(module, dropkit.nn.DropoutModule)
    assert isinstance(module, nn.modules.dropout._DropoutNd)
    assert not isinstance(dropkit.nn.GaussianDropout(0.2), nn.modules.dropout._DropoutNd)
    # convert never re-converts a drop-in (it keeps mode, noise_shape, seed).
    model = nn.Sequential(dropkit.nn.Dropout(0.2, mode="standard", seed=4))
    assert surgery.convert(model).converted == [] and model[0].mode == "standard"


def test_functional_takes_torchs_signature():
    x = torch.ones(64)
    y = F.dropout(x, 0.5, True, False, seed=1)
    assert torch.equal(y, F.dropout(input=x, p=0.5, training=True, inplace=False, seed=1))
    assert torch.equal(y, F.dropout(x, torch.tensor(0.5), seed=1))  # 0-d tensor p
    assert torch.equal(y, F.dropout(x, torch.tensor(0.5, dtype=torch.float64), seed=1))
    z = x.clone()
    assert F.dropout(z, 0.5, True, True, seed=1) is z and torch.equal(z, y)
    assert torch.equal(F.dropout(x, torch.tensor(1), seed=1), torch.zeros(64))  # int 0-d p
    for op in (F.alpha_dropout, F.feature_alpha_dropout):
        a = torch.randn(2, 3, 4)
        assert torch.equal(op(a, 0.2, True, False, seed=3), op(input=a, p=0.2, seed=3))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_eval_passes_any_input_through_as_torch_does(dtype):
    x = torch.arange(6).to(dtype)
    for ours, theirs in ((F.dropout, TF.dropout), (F.alpha_dropout, TF.alpha_dropout)):
        assert torch.equal(ours(x, 0.5, False), theirs(x, 0.5, False))
    assert F.dropout(x, 0.5, False) is x
    assert torch.equal(dropkit.nn.Dropout(0.5).eval()(x), x)
    with pytest.raises(TypeError, match="floating-point"):  # training needs floats (torch too)
        F.dropout(x, 0.5, True)
    with pytest.raises(ValueError, match="p must be in"):  # validated in eval too
        F.dropout(x, 1.5, False)


def _plain() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.Dropout2d(0.2), nn.Flatten(), nn.Linear(4 * 4 * 4, 8),
        nn.Dropout(0.1), nn.AlphaDropout(0.05), nn.Linear(8, 2),
    )  # fmt: skip


def test_torch_checkpoint_loads_strict_into_the_converted_model():
    plain = _plain()
    converted = surgery.convert(_plain(), seed=3).model
    with torch.no_grad():
        for p in converted.parameters():
            p.add_(1.0)
    rates = {n: m.p for n, m in converted.named_modules() if isinstance(m, dropkit.nn.Dropout)}
    steps = converted[4].step.clone()
    assert str(converted.load_state_dict(plain.state_dict(), strict=True)) == (
        "<All keys matched successfully>"
    )
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(converted.eval()(x), plain.eval()(x))
    assert {n: m.p for n, m in converted.named_modules() if isinstance(m, dropkit.nn.Dropout)} == (
        rates
    )
    assert torch.equal(converted[4].step, steps)
    # A partial dropkit state (rate without seed/step) is still reported missing.
    state = converted.state_dict()
    del state["4.seed"]
    with pytest.raises(RuntimeError, match=r"4\.seed"):
        converted.load_state_dict(state, strict=True)


def test_converted_checkpoint_loads_strict_into_the_plain_model_with_the_helper():
    converted = surgery.convert(_plain(), seed=3).model
    plain = _plain()
    with torch.no_grad():
        for p in plain.parameters():
            p.zero_()
    with pytest.raises(RuntimeError, match="Unexpected key"):
        plain.load_state_dict(converted.state_dict(), strict=True)
    plain.load_state_dict(surgery.torch_state_dict(converted), strict=True)
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(converted.eval()(x), plain.eval()(x))
    # and through to_torch, the same keys
    back = surgery.to_torch(copy.deepcopy(converted)).model
    assert back.state_dict().keys() == surgery.torch_state_dict(converted).keys()


def test_dropout1d_rank_rules():
    m = dropkit.nn.SpatialDropout1d(0.5, seed=0)
    for shape in ((4,), (2, 3, 4, 5)):
        with pytest.raises(RuntimeError, match="expects a 3-D"):  # torch: RuntimeError
            m(torch.ones(shape))
        with pytest.raises(RuntimeError):
            nn.Dropout1d(0.5)(torch.ones(shape))
    y = m(torch.ones(3, 40))  # unbatched (C, L): one draw per channel, as torch
    assert bool(((y == 0).all(-1) | (y != 0).all(-1)).all())


def _per_index(y: torch.Tensor, dims: int) -> bool:
    """Each index of the first ``dims`` dims is all kept or all dropped."""
    flat = (y != 0).reshape(*y.shape[:dims], -1)
    return bool((flat.all(-1) | ~flat.any(-1)).all())


def test_dropout2d_5d_input_warns_and_drops_per_batch_and_channel_as_torch():
    x = torch.ones(4, 6, 2, 3, 3)
    with pytest.warns(UserWarning, match="Received a 5-D input"):
        y = dropkit.nn.SpatialDropout2d(0.5, seed=0)(x)
    with pytest.warns(UserWarning, match="Received a 5-D input"):
        expected = nn.Dropout2d(0.5)(x)
    assert _per_index(y, 2) and _per_index(expected, 2) and not _per_index(y, 1)


@pytest.mark.parametrize("shape", [(6, 3, 3), (5, 2, 1, 3, 3, 3)])
def test_dropout3d_3d_and_6d_input_warn_and_drop_per_dim0_as_torch(shape):
    x = torch.ones(shape)
    with pytest.warns(UserWarning, match=f"Received a {len(shape)}-D input"):
        y = dropkit.nn.SpatialDropout3d(0.5, seed=1)(x)
    with pytest.warns(UserWarning):
        expected = nn.Dropout3d(0.5)(x)
    assert _per_index(y, 1) and _per_index(expected, 1)
    assert (y == 0).any() and (y != 0).any()


def test_dropout2d_3d_input_is_unbatched_a_documented_difference():
    # torch.nn.Dropout2d reads (N, C, L) today and warns that it will read (C, H, W); dropkit
    # reads (C, H, W) now, like Dropout1d/3d read their unbatched inputs (docs/differences.md).
    x = torch.ones(8, 5, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = dropkit.nn.SpatialDropout2d(0.5, seed=1)(x)
    assert _per_index(y, 1)
    with pytest.warns(UserWarning, match="3D input to dropout2d"):
        nn.Dropout2d(0.5)(x)
    with pytest.raises(ValueError, match="4-D"):  # 2-D: dropkit refuses, torch warns
        dropkit.nn.SpatialDropout2d(0.5)(torch.ones(5, 5))


def test_learned_rate_layers_keep_their_state_beside_drop_ins():
    """Learned-rate layers (ConcreteDropout, Standout, variational dropout) are not torch
    drop-ins: not ``isinstance`` of ``nn.Dropout``, and ``torch_state_dict`` keeps their learned
    state (it only leaves out the drop-ins' rate/seed/step), so a round trip stays strict."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 4),
        dropkit.nn.Dropout(0.1),
        dropkit.nn.ConcreteDropout(),
        dropkit.nn.VariationalDropoutLinear(4, 3),
    )
    assert not isinstance(model[2], nn.Dropout)
    keys = set(surgery.torch_state_dict(model))
    assert not {"1.rate", "1.seed", "1.step"} & keys
    assert {"2.p_logit", "3.log_alpha", "3.weight"} <= keys
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin[2].p_logit.add_(1.0)
    twin.load_state_dict(model.state_dict(), strict=True)
    assert torch.equal(twin[2].p_logit, model[2].p_logit)
    assert twin[1].p == 0.1
