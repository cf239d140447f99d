"""Converted upstream models under torch.compile(fullgraph=True), torch.export and
torch._dynamo.explain, in training and eval mode.

Hugging Face and timm read ``module.p`` inside ``forward`` (``dropout_p=self.dropout.p if
self.training else 0.0`` into SDPA); after ``surgery.convert`` that read must be a Python float
with no data-dependent guard. Graphs are captured with the ``eager`` backend (the capture is
what is tested; Inductor code generation would only add minutes).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import dropkit
from dropkit import surgery
from tests.compat import models


def _call(model: nn.Module, inputs: Any) -> Any:
    return model(**inputs) if isinstance(inputs, dict) else model(inputs)


def _check(model: nn.Module, inputs: Any, training: bool) -> None:
    report = surgery.convert(model, seed=0)
    assert report.converted and not report.unsupported
    model.train(training)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(lambda: _call(model, inputs))()
    assert explained.graph_break_count == 0, explained.break_reasons
    torch._dynamo.reset()
    compiled = torch.compile(lambda: _call(model, inputs), fullgraph=True, backend="eager")
    compiled()
    if isinstance(inputs, dict):
        exported = torch.export.export(model, (), inputs, strict=False)
    else:
        exported = torch.export.export(model, (inputs,), strict=False)
    assert exported.graph_module is not None
    if not training:
        with torch.no_grad():
            expected = _call(model, inputs)
            got = (
                exported.module()(**inputs)
                if isinstance(inputs, dict)
                else (exported.module()(inputs))
            )
        flat_expected = torch.utils._pytree.tree_leaves(expected)
        flat_got = torch.utils._pytree.tree_leaves(got)
        assert all(torch.equal(a, b) for a, b in zip(flat_expected, flat_got, strict=False))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(
    "build", [models.gpt2, models.bert, models.vit], ids=["gpt2", "bert", "vit"]
)
def test_converted_model_compiles_exports_without_graph_breaks(build, training):
    model, inputs = build()
    _check(model, inputs, training)


def test_reading_p_in_compiled_forward_is_a_python_float():
    class ReadsP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop = dropkit.nn.Dropout(0.1, seed=0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            p = self.drop.p if self.training else 0.0
            return self.drop(x) * (1.0 + p)

    model = ReadsP()
    torch._dynamo.reset()
    counter = torch._dynamo.testing.CompileCounter()
    compiled = torch.compile(model, fullgraph=True, backend=counter)
    x = torch.ones(64)
    y = compiled(x)
    kept = y[y != 0]
    assert kept.numel() > 0
    assert torch.allclose(kept, torch.full_like(kept, 1.1 / (1 - model.drop.p_eff)))
    assert counter.frame_count == 1


def test_dropkit_forward_does_not_recompile_on_a_new_rate():
    model = nn.Sequential(nn.Linear(4, 4), dropkit.nn.Dropout(0.5, seed=0))
    torch._dynamo.reset()
    counter = torch._dynamo.testing.CompileCounter()
    compiled = torch.compile(model, fullgraph=True, backend=counter)
    x = torch.randn(8, 4)
    compiled(x)
    model[1].p = 0.2
    compiled(x)
    assert counter.frame_count == 1 and model[1].p == 0.2


@pytest.mark.slow  # ~11 s on 2 cores: 16 MBConv blocks to trace
def test_torchvision_efficientnet_converted_compiles_and_exports():
    model, x = models.efficientnet()
    report = surgery.convert(model, seed=0)
    assert {kind for _, kind, _ in report.converted} == {"Dropout", "StochasticDepth"}
    model.train()
    torch._dynamo.reset()
    torch.compile(model, fullgraph=True, backend="eager")(x)
    model.eval()
    exported = torch.export.export(model, (x,), strict=False)
    with torch.no_grad():
        assert torch.equal(exported.module()(x), model(x))
