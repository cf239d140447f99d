"""Under torch.compile, backward regenerates the forward's masks although each module advances
its ``step`` buffer in place inside the compiled graph (AOT autograd used to save the buffer
itself and write the increment into it before backward read it: wrong gradients)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint as torch_checkpoint

import dropkit


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 32), dropkit.nn.Dropout(0.5, seed=3), nn.GELU(),
        nn.Linear(32, 32), dropkit.nn.AlphaDropout(0.3, seed=4),
        dropkit.nn.GaussianDropout(0.2, seed=5), nn.Linear(32, 2),
    )  # fmt: skip


def _run(run) -> tuple[torch.Tensor, list[torch.Tensor], list[int]]:  # type: ignore[no-untyped-def]
    model = _model()
    x = torch.randn(6, 8, generator=torch.Generator().manual_seed(1), requires_grad=True)
    outputs, grads = [], []
    for _ in range(2):  # the second call: step 1, through the same compiled graph
        y = run(model, x)
        grads += torch.autograd.grad(y.square().sum(), [x, *model.parameters()])
        outputs.append(y.detach())
    steps = [int(m.step) for m in model.modules() if isinstance(m, dropkit.nn.DropoutModule)]
    return torch.cat(outputs), grads, steps


def test_compiled_gradients_equal_eager() -> None:
    y_eager, grads_eager, steps_eager = _run(lambda model, x: model(x))
    compiled = {}

    def run(model, x):  # type: ignore[no-untyped-def]
        if "f" not in compiled:
            compiled["f"] = torch.compile(model, fullgraph=True)
        return compiled["f"](x)

    y_compiled, grads_compiled, steps_compiled = _run(run)
    # Inductor's matmuls and GELU round differently from eager's; a different mask would
    # change whole units (errors of order 1), far outside these tolerances.
    torch.testing.assert_close(y_compiled, y_eager, rtol=1e-4, atol=1e-5)
    for got, expected in zip(grads_compiled, grads_eager, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert steps_eager == steps_compiled == [2, 2, 2]


def test_compiled_dropkit_checkpoint_gradients_equal_eager() -> None:
    y_eager, grads_eager, _ = _run(lambda model, x: model(x))
    function = torch.compile(lambda model, x: dropkit.checkpoint(model, x), fullgraph=True)
    y_compiled, grads_compiled, steps = _run(function)
    torch.testing.assert_close(y_compiled, y_eager, rtol=1e-4, atol=1e-5)
    for got, expected in zip(grads_compiled, grads_eager, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert steps == [2, 2, 2]


@pytest.mark.xfail(
    strict=True,
    reason="known: torch.compile of a plain torch.utils.checkpoint around a dropkit module "
    "recomputes the step copy after the forward advanced the buffer; dropkit.checkpoint "
    "saves it (test above)",
)
def test_compiled_checkpoint_gradients_equal_eager() -> None:
    y_eager, grads_eager, _ = _run(lambda model, x: model(x))
    function = torch.compile(
        lambda model, x: torch_checkpoint(model, x, use_reentrant=False), fullgraph=True
    )
    y_compiled, grads_compiled, _ = _run(function)
    torch.testing.assert_close(y_compiled, y_eager, rtol=1e-4, atol=1e-5)
    for got, expected in zip(grads_compiled, grads_eager, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
