"""The eager path: plain eager calls skip ``torch.library``'s dispatch and give the op's bits.

Every primitive op runs either as its ``torch.library`` custom op (compile, export, dispatch
modes, functorch, tensor subclasses) or, in plain eager mode, as the same body under a
``torch.autograd.Function`` twin. Both must give the same outputs and gradients, save the same
0-d state, and the routing must be the one documented in :mod:`dropkit.kernels._registry`.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import dropkit.functional as F
from dropkit.kernels import _registry as _eager


class OpLog(TorchDispatchMode):
    """Records the name of every op dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


CASES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "dropout": lambda x: F.dropout(x, 0.3, seed=11, step=4, offset=5),
    "dropout_standard": lambda x: F.dropout(x, 0.3, mode="standard", seed=11, step=4),
    "spatial_dropout": lambda x: F.spatial_dropout(x, 0.3, seed=11, step=4),
    "gaussian_dropout": lambda x: F.gaussian_dropout(x, 0.3, seed=11, step=4),
    "alpha_dropout": lambda x: F.alpha_dropout(x, 0.3, seed=11, step=4),
    "bias_gelu_dropout_add": lambda x: F.bias_act_dropout_add(
        x, torch.linspace(-1, 1, x.shape[-1]), torch.ones_like(x), 0.3, "gelu", seed=11, step=4
    ),
}
OP_NAMES = {
    "dropout": "dropkit.dropout",
    "dropout_standard": "dropkit.dropout",
    "spatial_dropout": "dropkit.dropout",
    "gaussian_dropout": "dropkit.gaussian_dropout",
    "alpha_dropout": "dropkit.alpha_dropout",
    "bias_gelu_dropout_add": "dropkit.bias_act_dropout_add",
}


def _forward_backward(case: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = x.clone().requires_grad_()
    y = CASES[case](leaf)
    (grad,) = torch.autograd.grad(y, leaf, torch.linspace(-2, 2, y.numel()).view_as(y))
    return y.detach(), grad


@pytest.mark.parametrize("case", sorted(CASES))
def test_eager_twin_equals_the_op_bit_for_bit(case: str) -> None:
    x = torch.randn(4, 6, 5, 8, generator=torch.Generator().manual_seed(0))
    eager_y, eager_grad = _forward_backward(case, x)
    with OpLog() as log:
        op_y, op_grad = _forward_backward(case, x)
    assert any(name.startswith(OP_NAMES[case]) for name in log.names), log.names
    assert torch.equal(eager_y, op_y)
    assert torch.equal(eager_grad, op_grad)


@pytest.mark.parametrize("case", sorted(CASES))
def test_plain_eager_skips_the_custom_op(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def forbid(name: str) -> Callable[..., object]:
        def op(*args: object) -> object:
            calls.append(name)
            raise AssertionError(f"{name} dispatched in plain eager mode")

        return op

    for name, registered in list(_eager.OPS.items()):
        monkeypatch.setattr(registered, "op", forbid(name))
    y, grad = _forward_backward(case, torch.randn(4, 6, 5, 8))
    assert calls == []
    assert y.shape == grad.shape == (4, 6, 5, 8)


def test_eager_twin_is_the_recorded_node_and_saves_only_0d_state() -> None:
    x = torch.randn(64, requires_grad=True)
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = F.dropout(x, 0.5, seed=1)
    assert "Eager" in type(y.grad_fn).__name__
    assert saved and all(t.numel() <= 1 for t in saved)


def test_step_changed_after_the_call_does_not_change_the_gradient() -> None:
    x = torch.ones(256, requires_grad=True)
    step = torch.tensor(3)
    y = F.dropout(x, 0.5, seed=2, step=step)
    step.add_(1)  # a module advancing its counter in place after the call
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(grad, y.detach())  # the backward mask is the forward's


def test_double_backward_through_the_twin() -> None:
    x = torch.randn(32, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: F.dropout(t, 0.4, seed=5) ** 2, (x,))


class _Tagged(torch.Tensor):
    """A trivial tensor subclass: must take the custom op."""


def test_plain_eager_conditions() -> None:
    x = torch.randn(3)
    assert _eager.plain_eager(x, None, torch.nn.Parameter(torch.randn(2)))
    assert not _eager.plain_eager(x.as_subclass(_Tagged))
    with OpLog():
        assert not _eager.plain_eager(x)
    seen: list[bool] = []

    def probe(t: torch.Tensor) -> torch.Tensor:
        seen.append(_eager.plain_eager(t))
        return t

    torch.func.vmap(probe)(torch.randn(2, 3))
    assert seen == [False]
    assert not _eager.records_grad(x)
    with torch.no_grad():
        assert not _eager.records_grad(x.requires_grad_())
    assert _eager.records_grad(None, x)


@pytest.mark.filterwarnings("ignore:There is a performance drop because we have not yet")
def test_vmap_takes_the_op_and_matches_a_loop() -> None:
    x = torch.randn(3, 50)
    batched = torch.func.vmap(lambda row: F.dropout(row, 0.5, seed=9, step=1))(x)
    looped = torch.stack([F.dropout(row, 0.5, seed=9, step=1) for row in x])
    assert torch.equal(batched, looped)
