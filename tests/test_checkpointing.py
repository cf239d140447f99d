"""Activation checkpointing recomputes exactly the forward's dropkit masks.

A module advances its ``step`` on every training forward; ``torch.utils.checkpoint`` re-runs the
forward in backward. dropkit.checkpoint (or ``context_fn=dropkit.checkpoint_context``) replays
the forward's steps; a plain recomputation raises instead of silently drawing new masks.
"""

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
        nn.Linear(32, 32), dropkit.nn.GaussianDropout(0.3, seed=4),
        dropkit.nn.Dropout(0.2, seed=5), nn.Linear(32, 2),
    )  # fmt: skip


def _grads(model: nn.Module, run) -> tuple[torch.Tensor, list[torch.Tensor], list[int]]:  # type: ignore[no-untyped-def]
    x = torch.randn(6, 8, generator=torch.Generator().manual_seed(1), requires_grad=True)
    y = run(model, x)
    y.square().sum().backward()
    steps = [int(m.step) for m in model.modules() if isinstance(m, dropkit.nn.DropoutModule)]
    return y.detach(), [x.grad, *[p.grad for p in model.parameters()]], steps


def _plain(model, x):  # type: ignore[no-untyped-def]
    return model(x)


@pytest.mark.parametrize(
    "run",
    [
        lambda model, x: dropkit.checkpoint(model, x),
        lambda model, x: torch_checkpoint(
            model, x, use_reentrant=False, context_fn=dropkit.checkpoint_context
        ),
        # two segments, the second recomputed first in backward
        lambda model, x: dropkit.checkpoint(model[3:], dropkit.checkpoint(model[:3], x)),
        # nested: the inner checkpoint re-runs inside the outer recomputation
        lambda model, x: dropkit.checkpoint(
            lambda t: model[3:](dropkit.checkpoint(model[:3], t)), x
        ),
    ],
    ids=["dropkit.checkpoint", "torch+context_fn", "two_segments", "nested"],
)
def test_checkpointed_gradients_equal_the_plain_ones(run) -> None:  # type: ignore[no-untyped-def]
    y_plain, grads_plain, steps_plain = _grads(_model(), _plain)
    y_ckpt, grads_ckpt, steps_ckpt = _grads(_model(), run)
    assert torch.equal(y_plain, y_ckpt)
    assert all(torch.equal(a, b) for a, b in zip(grads_plain, grads_ckpt, strict=True))
    assert steps_ckpt == steps_plain == [1, 1, 1]  # advanced once per forward call


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_plain_torch_checkpoint_raises_instead_of_drawing_new_masks(use_reentrant: bool) -> None:
    model = _model()
    x = torch.randn(6, 8, requires_grad=True)
    y = torch_checkpoint(model, x, use_reentrant=use_reentrant)
    with pytest.raises(RuntimeError, match=r"inside backward.*dropkit\.checkpoint"):
        y.sum().backward()


def test_reentrant_mode_is_refused_with_the_alternative() -> None:
    with pytest.raises(ValueError, match="use_reentrant=False"):
        dropkit.checkpoint(_model(), torch.randn(2, 8), use_reentrant=True)


def test_a_recomputation_calling_more_modules_is_an_error() -> None:
    drop = dropkit.nn.Dropout(0.5, seed=1)
    calls = iter([1, 2])

    def unstable(t: torch.Tensor) -> torch.Tensor:
        for _ in range(next(calls)):  # 1 call in the forward, 2 in the recomputation
            t = drop(t)
        return t * t  # saves t: the recomputation must run past the dropout calls

    y = dropkit.checkpoint(unstable, torch.randn(4, requires_grad=True))
    with pytest.raises(RuntimeError, match="more dropkit dropout calls"):
        y.sum().backward()


def test_user_context_fn_is_entered_too() -> None:
    entered: list[str] = []

    class Mark:
        def __init__(self, name: str) -> None:
            self.name = name

        def __enter__(self) -> None:
            entered.append(self.name)

        def __exit__(self, *exc: object) -> None:
            return None

    model = _model()
    x = torch.randn(3, 8, requires_grad=True)
    y = dropkit.checkpoint(model, x, context_fn=lambda: (Mark("forward"), Mark("recompute")))
    y.sum().backward()
    assert entered == ["forward", "recompute"]


def test_eval_mode_and_no_grad_forwards_are_unaffected() -> None:
    model = _model().eval()
    x = torch.randn(3, 8, requires_grad=True)
    y = torch_checkpoint(model, x, use_reentrant=False)  # no dropout in eval: nothing to replay
    y.sum().backward()
    assert x.grad is not None
