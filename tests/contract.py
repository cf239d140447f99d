"""The contract every dropkit dropout module passes, for the modules of every issue.

``check_module_contract(factory, example)`` checks: output shape and dtype; eval-mode identity
(or the module's own eval rule); train/eval toggle; the step counter advances only in training;
``repr`` names the class and rate; the ``rate``/``seed``/``step`` buffers are in ``state_dict``
and a round trip reproduces the next output bit for bit; different steps give different
outputs; ``torch.compile(fullgraph=True)`` matches eager bit for bit.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from dropkit.nn import DropoutModule


def _train_outputs(module: nn.Module, example: Tensor, calls: int = 2) -> list[Tensor]:
    module.train()
    return [module(example.clone()) for _ in range(calls)]


def check_module_contract(
    factory: Callable[[], nn.Module],
    example: Tensor,
    *,
    eval_identity: bool = True,
    eval_expected: Callable[[nn.Module, Tensor], Tensor] | None = None,
    check_compile: bool = True,
    compile_tolerance: float = 0.0,
) -> None:
    module = factory()
    assert isinstance(module, DropoutModule)
    state = module.state_dict()
    for name in ("rate", "seed", "step"):
        assert name in state, f"{name} missing from state_dict of {type(module).__name__}"
    text = repr(module)
    assert type(module).__name__ in text and "p=" in text, text

    # Shape and dtype in training; the step advances once per training call.
    step_before = int(module.step)
    first, second = _train_outputs(module, example)
    assert first.shape == example.shape and first.dtype == example.dtype
    assert int(module.step) == step_before + 2
    assert not torch.equal(first, second), "two training calls drew the same mask"

    # Eval: identity (returns the input tensor itself) or the module's own rule; no step change.
    module.eval()
    step_eval = int(module.step)
    out = module(example)
    if eval_identity:
        assert out is example, "eval mode must return the input tensor itself"
    if eval_expected is not None:
        torch.testing.assert_close(out, eval_expected(module, example), rtol=0, atol=0)
    assert int(module.step) == step_eval

    # state_dict round trip: a fresh module loaded from the state draws the same next mask.
    restored = factory()
    restored.load_state_dict(module.state_dict())
    module.train()
    restored.train()
    assert torch.equal(module(example.clone()), restored(example.clone()))

    if check_compile:
        eager = copy.deepcopy(module)
        compiled_source = copy.deepcopy(module)
        compiled = torch.compile(compiled_source, fullgraph=True, backend="aot_eager")
        with torch.no_grad():
            for _ in range(2):
                expected = eager(example.clone())
                actual = compiled(example.clone())
                torch.testing.assert_close(
                    actual, expected, rtol=compile_tolerance, atol=compile_tolerance
                )
        assert int(compiled_source.step) == int(eager.step)


def check_learned_contract(
    factory: Callable[[], nn.Module], example: Tensor, *, eval_identity: bool = True
) -> None:
    """The contract of a learned-rate module (``dropkit.nn.LearnedDropoutModule``): its rates
    are parameters, so it has ``seed``/``step`` buffers but no ``rate`` buffer; otherwise as
    :func:`check_module_contract`, plus: eval is deterministic, MC mode samples, and the rates
    get a gradient from the loss plus the regulariser (where it has parameters)."""
    import dropkit
    from dropkit.nn import LearnedDropoutModule

    module = factory()
    assert isinstance(module, LearnedDropoutModule)
    state = module.state_dict()
    for name in ("seed", "step"):
        assert name in state, f"{name} missing from state_dict of {type(module).__name__}"
    assert "rate" not in state, "a learned rate is a parameter, not a rate buffer"
    text = repr(module)
    assert type(module).__name__ in text and "p=" in text, text

    step_before = int(module.step)
    first, second = _train_outputs(module, example)
    assert first.dtype == example.dtype
    assert int(module.step) == step_before + 2
    assert not torch.equal(first, second), "two training calls drew the same noise"
    if any(True for _ in module.parameters()):  # a layer-less standout has none
        (first.square().mean() + dropkit.regularization(module, dataset_size=100)).backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())

    module.eval()
    step_eval = int(module.step)
    out = module(example)
    if eval_identity:
        assert out is example, "eval mode must return the input tensor itself"
    assert torch.equal(module(example), out), "eval mode must be deterministic"
    assert int(module.step) == step_eval
    with dropkit.mc_mode(module):
        assert not torch.equal(module(example), module(example)), "MC mode must sample"
    assert not module.training and int(module.step) == step_eval + 2

    restored = factory()
    restored.load_state_dict(module.state_dict())
    module.train()
    restored.train()
    assert torch.equal(module(example.clone()), restored(example.clone()))
