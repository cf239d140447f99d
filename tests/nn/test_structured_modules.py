"""Every structured, recurrent and attention module passes the contract; drop-in compatibility
with timm; docstring examples run."""

from __future__ import annotations

import doctest
import inspect

import pytest
import torch
import torch.nn.functional as torch_f
from torch import nn

import dropkit
import dropkit.functional as F
from tests.contract import check_module_contract

# The contract feeds one tensor and expects a tensor of the same shape and dtype. Modules with
# another interface get a thin test adapter below that keeps their forward otherwise unchanged.


class _EmbeddingAdapter(dropkit.nn.EmbeddingDropout):
    # Indices in, vectors out: sum the vectors so the output has the index tensor's shape.
    def forward(self, input):
        return super().forward(input.long()).sum(-1).to(input.dtype)


class _PatchAdapter(dropkit.nn.PatchDropout):
    # Tokens are removed, not zeroed: scatter the kept ones back to their places.
    def forward(self, x):
        tokens, indices = F.patch_dropout(
            x, self.rate, self.training, num_prefix_tokens=self.num_prefix_tokens,
            seed=self.seed, step=self.next_step(),
        )  # fmt: skip
        if indices is None:
            return tokens
        prefix = self.num_prefix_tokens
        full = torch.zeros_like(x)
        full[:, :prefix] = tokens[:, :prefix]
        index = indices.unsqueeze(-1).expand(-1, -1, x.shape[-1])
        full[:, prefix:] = full[:, prefix:].scatter(1, index, tokens[:, prefix:])
        return full


class _WeightDropAdapter(dropkit.nn.WeightDrop):
    def forward(self, x):
        return super().forward(x)[0]


class _ZoneoutLSTMAdapter(dropkit.nn.ZoneoutLSTMCell):
    def forward(self, x):
        return super().forward(x, (x, x))[0]


class _ZoneoutGRUAdapter(dropkit.nn.ZoneoutGRUCell):
    def forward(self, x):
        return super().forward(x, x)


class _VariationalAdapter(dropkit.nn.VariationalLSTM):
    def forward(self, x):
        return super().forward(x)[0]


class _VariationalGRUAdapter(dropkit.nn.VariationalGRU):
    def forward(self, x):
        return super().forward(x)[0]


def _zoneout_eval(module, x):
    hx = (x, x) if isinstance(module.cell, nn.LSTMCell) else x
    h_new = module.cell(x, hx)
    h_new = h_new[0] if isinstance(h_new, tuple) else h_new
    return F.zoneout(h_new, x, module.p, training=False)


def _attention_eval(module, x):
    probs = torch.softmax(x @ x.transpose(-2, -1) / x.shape[-1] ** 0.5, dim=-1)
    return probs @ x


# name: (factory, shape, contract options, why the options)
CASES = {
    "DropBlock2d": (lambda: dropkit.nn.DropBlock2d(0.3, block_size=3, seed=1), (4, 3, 8, 7), {}),
    "DropBlock2dEven": (
        lambda: dropkit.nn.DropBlock2d(0.2, block_size=(2, 4), scale="rate", seed=2),
        (3, 2, 9, 6),
        {},
    ),
    "DropBlock3d": (lambda: dropkit.nn.DropBlock3d(0.3, block_size=2, seed=3), (2, 3, 4, 5, 3), {}),
    "DropPath": (lambda: dropkit.nn.DropPath(0.5, seed=4), (8, 6, 5), {}),
    "DropPathBatch": (lambda: dropkit.nn.DropPath(0.5, mode="batch", seed=5), (8, 6), {}),
    # A layer, not an identity: inference is the mean network.
    "DropConnectLinear": (
        lambda: dropkit.nn.DropConnectLinear(5, 5, p=0.5, seed=6),
        (4, 5),
        {"eval_identity": False, "eval_expected": lambda m, x: torch_f.linear(x, m.weight, m.bias)},
    ),
    "DropConnectConv2d": (
        lambda: dropkit.nn.DropConnectConv2d(3, 3, 3, padding=1, p=0.5, seed=7),
        (2, 3, 5, 5),
        {
            "eval_identity": False,
            "eval_expected": lambda m, x: torch_f.conv2d(x, m.weight, m.bias, padding=1),
        },
    ),
    # An embedding lookup, not an identity.
    "EmbeddingDropout": (
        lambda: _EmbeddingAdapter(10, 4, p=0.5, seed=8),
        "ids",
        {
            "eval_identity": False,
            "eval_expected": lambda m, x: torch_f.embedding(x.long(), m.weight).sum(-1),
        },
    ),
    # Seed chosen so that the first two calls pick different maps (each call picks one of two).
    "ADL": (lambda: dropkit.nn.ADL(0.5, 0.8, seed=13), (2, 3, 6, 6), {}),
    # The number of kept tokens is a Python int computed from the rate: a data-dependent
    # shape, so no fullgraph compile.
    "PatchDropout": (
        lambda: _PatchAdapter(0.5, num_prefix_tokens=1, seed=11),
        (3, 9, 4),
        {"check_compile": False},
    ),
    # nn.LSTM itself does not compile with fullgraph=True; inference runs the plain module.
    "WeightDrop": (
        lambda: _WeightDropAdapter(nn.LSTM(5, 5), ["weight_hh_l0"], p=0.5, seed=12),
        (6, 2, 5),
        {
            "eval_identity": False,
            "eval_expected": lambda m, x: m.module(x)[0],
            "check_compile": False,
        },
    ),
    # Zoneout's inference is the expectation p h_prev + (1 - p) h_new, not an identity.
    "ZoneoutLSTMCell": (
        lambda: _ZoneoutLSTMAdapter(5, 5, p=0.5, seed=13),
        (4, 5),
        {"eval_identity": False, "eval_expected": _zoneout_eval},
    ),
    "ZoneoutGRUCell": (
        lambda: _ZoneoutGRUAdapter(5, 5, p=0.5, seed=14),
        (4, 5),
        {"eval_identity": False, "eval_expected": _zoneout_eval},
    ),
    # An RNN, not an identity; the fast/unrolled choice reads the rate on the host.
    "VariationalLSTM": (
        lambda: _VariationalAdapter(5, 5, num_layers=2, p=0.3, seed=15),
        (6, 2, 5),
        {"eval_identity": False, "check_compile": False},
    ),
    "VariationalGRU": (
        lambda: _VariationalGRUAdapter(5, 5, batch_first=True, p=0.3, seed=19),
        (2, 6, 5),
        {"eval_identity": False, "check_compile": False},
    ),
    "DropConnectConv1d": (
        lambda: dropkit.nn.DropConnectConv1d(3, 3, 1, p=0.5, seed=20),
        (2, 3, 7),
        {"eval_identity": False, "eval_expected": lambda m, x: torch_f.conv1d(x, m.weight, m.bias)},
    ),
    # Attention, not an identity: inference has no dropout.
    "AttentionDropout": (
        lambda: dropkit.nn.AttentionDropout(0.5, seed=16),
        (2, 3, 5, 4),
        {"eval_identity": False, "eval_expected": _attention_eval, "compile_tolerance": 1e-6},
    ),
    "DropHead": (lambda: dropkit.nn.DropHead(0.5, seed=17), (4, 6, 3, 2), {}),
    "DropKey": (lambda: dropkit.nn.DropKey(0.5, seed=18), (2, 3, 5, 5), {}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_contract(name):
    factory, shape, options = CASES[name]
    torch.manual_seed(0)
    ids = torch.randint(0, 10, (4, 6)).float()
    example = ids if shape == "ids" else torch.rand(shape) + 0.1
    check_module_contract(factory, example, **options)


def test_rate_updates_through_p_and_linear_ramp():
    block = dropkit.nn.DropBlock2d(0.0, block_size=3, seed=0)
    path = dropkit.nn.DropPath(0.0, seed=0)
    ramp = dropkit.schedules.LinearRamp([block, path], end=0.2, total_steps=4)
    rates = [ramp.step() for _ in range(6)]
    assert rates == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2])
    assert block.p == pytest.approx(0.2) and path.drop_prob == pytest.approx(0.2)
    block.drop_prob = 0.1
    assert float(block.rate) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="total_steps must be a positive int"):
        dropkit.schedules.LinearRamp(block, 0.1, 0)
    with pytest.raises(TypeError, match="DropoutModule"):
        dropkit.schedules.LinearRamp([nn.Linear(2, 2)], 0.1, 5)


def test_module_bad_input():
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        dropkit.nn.DropBlock2d(0.1, block_size=0)
    with pytest.raises(TypeError, match="block_size must be an int"):
        dropkit.nn.DropBlock3d(0.1, block_size=1.5)
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['bogus'\\]"):
        dropkit.nn.DropBlock2d(0.1, bogus=True)
    with pytest.raises(ValueError, match="0-d tensor"):
        dropkit.nn.DropPath(0.1)(torch.tensor(2.0))
    with pytest.raises(ValueError, match="p must be in \\[0, 1\\)"):
        dropkit.nn.PatchDropout(1.0)
    with pytest.raises(ValueError, match="attn_mask of shape"):
        q = torch.randn(1, 2, 3, 4)
        dropkit.nn.AttentionDropout(0.1)(q, attn_mask=torch.ones(2, 2, dtype=torch.bool))


def test_patch_dropout_returns_indices_when_asked():
    module = dropkit.nn.PatchDropout(0.5, num_prefix_tokens=2, return_indices=True, seed=1)
    tokens, indices = module(torch.randn(2, 10, 3))
    assert tokens.shape == (2, 6, 3) and indices.shape == (2, 4)
    module.eval()
    x = torch.randn(2, 10, 3)
    out, none = module(x)
    assert out is x and none is None


def _timm():
    return pytest.importorskip("timm")


@pytest.mark.parametrize(
    ("ours", "theirs"), [("DropPath", "DropPath"), ("DropBlock2d", "DropBlock2d"),
                         ("PatchDropout", "PatchDropout")],
)  # fmt: skip
def test_timm_constructor_arguments_are_accepted(ours, theirs):
    timm_layers = _timm().layers
    ours_params = inspect.signature(getattr(dropkit.nn, ours)).parameters
    theirs_params = inspect.signature(getattr(timm_layers, theirs)).parameters
    positional = [n for n, p in theirs_params.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert list(ours_params)[: len(positional)] == positional


def test_timm_style_construction():
    block = dropkit.nn.DropBlock2d(drop_prob=0.1, block_size=5, gamma_scale=0.25,
                                   with_noise=False, inplace=False, couple_channels=True,
                                   scale_by_keep=True, batchwise=True, fast=True)  # fmt: skip
    assert block.drop_prob == pytest.approx(0.1) and block.block_size == (5, 5)
    path = dropkit.nn.DropPath(drop_prob=0.2, scale_by_keep=False)
    assert path.p == pytest.approx(0.2) and not path.scale_by_keep


def test_timm_model_with_dropkit_modules_trains_a_step():
    timm = _timm()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = timm.create_model(
        "resnet10t", pretrained=False, num_classes=3, drop_path_rate=0.2, drop_block_rate=0.2
    )
    replaced = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, timm.layers.DropBlock2d):
                new = dropkit.nn.DropBlock2d(
                    child.drop_prob, child.block_size, child.gamma_scale, child.with_noise,
                    child.inplace, child.couple_channels, child.scale_by_keep,
                )  # fmt: skip
            elif isinstance(child, timm.layers.DropPath):
                new = dropkit.nn.DropPath(child.drop_prob, child.scale_by_keep)
            else:
                continue
            setattr(parent, child_name, new)
            replaced += 1
    assert replaced > 0
    dropkit_modules = [m for m in model.modules() if isinstance(m, dropkit.nn.DropoutModule)]
    assert len(dropkit_modules) == replaced
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, target = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 0])
    loss = nn.functional.cross_entropy(model(x), target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert all(int(m.step) == 1 for m in dropkit_modules)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


DOCTESTED_MODULES = [
    *(f"dropkit.{package}.{family}" for package in ("functional", "nn") for family in (
        "_drop_block", "_drop_path", "_drop_connect", "_embedding", "_adl", "_patch_dropout",
        "_recurrent", "_attention",
    )),
    "dropkit.schedules._ramp",
]  # fmt: skip


@pytest.mark.parametrize("module_name", DOCTESTED_MODULES)
def test_docstring_examples_run(module_name):
    import importlib

    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = finder.find(module, globs={"torch": torch, "dropkit": dropkit, **vars(module)})
    assert tests
    for test in tests:
        runner.run(test)
    assert runner.failures == 0


def test_public_names():
    functional = {"drop_block", "drop_block2d", "drop_block3d", "drop_path", "drop_path_add",
                  "depth_rates", "drop_connect_linear", "drop_connect_conv",
                  "embedding_dropout", "adl", "patch_dropout", "zoneout", "zoneout_cell",
                  "variational_rnn", "weight_dropout_call", "attention", "drop_head",
                  "drop_key"}  # fmt: skip
    modules = {"DropBlock2d", "DropBlock3d", "DropPath", "DropConnectLinear",
               "DropConnectConv1d", "DropConnectConv2d", "DropConnectConv3d",
               "EmbeddingDropout", "ADL", "PatchDropout", "WeightDrop",
               "ZoneoutLSTMCell", "ZoneoutGRUCell", "VariationalLSTM", "VariationalGRU",
               "AttentionDropout", "DropHead", "DropKey"}  # fmt: skip
    assert functional <= set(dropkit.functional.__all__)
    assert modules <= set(dropkit.nn.__all__)
    assert "LinearRamp" in dropkit.schedules.__all__
