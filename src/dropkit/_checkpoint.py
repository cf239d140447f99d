"""Activation checkpointing that recomputes dropkit's masks exactly.

A dropkit mask is a pure function of ``(seed, step, element index)``, but a module advances its
``step`` buffer on every training-mode forward. ``torch.utils.checkpoint`` re-runs the forward in
backward and restores only *PyTorch's* generator state, so the recomputation would draw step
``s + 1`` where the forward drew ``s``: different masks, silently wrong gradients. dropkit
therefore

* records the step every module uses in a checkpointed forward and hands the same steps back,
  in order, during its recomputation (:func:`checkpoint`, or :func:`checkpoint_context` as the
  ``context_fn`` of ``torch.utils.checkpoint.checkpoint``), and
* refuses a training-mode forward that runs inside autograd's backward without that replay
  (a plain ``torch.utils.checkpoint`` recomputation), with an error that says what to use.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

import torch
import torch.utils.checkpoint
from torch import Tensor

from dropkit.kernels._ops import snapshot

__all__ = ["checkpoint", "checkpoint_context", "claim_step"]

# Steps handed out in the checkpointed forwards now running (one list per nesting level).
_RECORDING: ContextVar[tuple[list[Tensor], ...]] = ContextVar("dropkit_recording", default=())
# The steps a recomputation hands back, in the forward's order.
_REPLAYING: ContextVar[Iterator[Tensor] | None] = ContextVar("dropkit_replaying", default=None)


def _in_backward() -> bool:
    graph_task_id = getattr(torch._C, "_current_graph_task_id", None)
    return graph_task_id is not None and graph_task_id() != -1


def _advance(step: Tensor) -> Tensor:
    current = step.clone()
    with torch.no_grad():
        step.add_(1)
    return current


def claim_step(step: Tensor) -> Tensor:
    """The step of one training-mode forward of a module whose counter is ``step`` (advanced in
    place, a copy of the old value returned); in a recomputation, the step its forward used."""
    if torch.compiler.is_compiling():
        # Compiled graphs recompute inside the graph from this value; an opaque copy, so that
        # AOT autograd cannot save the (then advanced) buffer itself: see kernels._ops.snapshot.
        current = snapshot(step)
        with torch.no_grad():
            step.add_(1)
        return current
    replay = _REPLAYING.get()
    if replay is not None:
        current = next(replay, None)
        if current is None:
            raise RuntimeError(
                "dropkit.checkpoint: the recomputation ran more dropkit dropout calls than the "
                "checkpointed forward did; the checkpointed function must be deterministic in "
                "which modules it calls"
            )
    elif torch.is_grad_enabled() and _in_backward():
        raise RuntimeError(
            "a dropkit dropout module ran a training-mode forward inside backward, which is "
            "what torch.utils.checkpoint's recomputation does: it would draw a different mask "
            "than the forward did (silently wrong gradients). Use dropkit.checkpoint(fn, *args) "
            "or torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False, "
            "context_fn=dropkit.checkpoint_context)"
        )
    else:
        current = _advance(step)
    for log in _RECORDING.get():
        log.append(current)
    return current


@contextlib.contextmanager
def _recording(log: list[Tensor]) -> Iterator[None]:
    token = _RECORDING.set((*_RECORDING.get(), log))
    try:
        yield
    finally:
        _RECORDING.reset(token)


@contextlib.contextmanager
def _replaying(log: list[Tensor]) -> Iterator[None]:
    token = _REPLAYING.set(iter(list(log)))
    try:
        yield
    finally:
        _REPLAYING.reset(token)


def checkpoint_context() -> tuple[
    contextlib.AbstractContextManager[None], contextlib.AbstractContextManager[None]
]:
    """A ``context_fn`` for ``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)``:
    the forward records each dropkit module's step, the recomputation replays them.

    Example:
        >>> from torch.utils.checkpoint import checkpoint as torch_checkpoint
        >>> block = torch.nn.Sequential(torch.nn.Linear(4, 4), dropkit.nn.Dropout(0.5))
        >>> x = torch.randn(2, 4, requires_grad=True)
        >>> y = torch_checkpoint(
        ...     block, x, use_reentrant=False, context_fn=dropkit.checkpoint_context)
    """
    log: list[Tensor] = []
    return _recording(log), _replaying(log)


def checkpoint(
    function: Callable[..., Any],
    *args: Any,
    context_fn: Callable[[], tuple[Any, Any]] | None = None,
    use_reentrant: bool = False,
    **kwargs: Any,
) -> Any:
    """``torch.utils.checkpoint.checkpoint`` whose recomputation draws exactly the forward's
    dropkit masks (and leaves every module's ``step`` advanced once per forward call).

    Non-reentrant only (``use_reentrant=False``, PyTorch's recommended mode); ``context_fn``, if
    given, is entered inside dropkit's own. Other keyword arguments go to
    ``torch.utils.checkpoint.checkpoint``.

    Example:
        >>> block = torch.nn.Sequential(torch.nn.Linear(4, 4), dropkit.nn.Dropout(0.5))
        >>> x = torch.randn(2, 4, requires_grad=True)
        >>> dropkit.checkpoint(block, x).sum().backward()
    """
    if torch.compiler.is_compiling():
        # Compiled: the recomputation happens inside the graph, which reads each module's step
        # through dropkit::snapshot; a selective-checkpoint policy saves those copies (the
        # only context_fn torch.compile accepts), so the region is recomputed with them.
        if context_fn is not None:
            raise ValueError(
                "dropkit.checkpoint under torch.compile takes no context_fn (torch.compile "
                "accepts only its own selective-checkpoint contexts, which dropkit uses)"
            )
        return torch.utils.checkpoint.checkpoint(
            function, *args, use_reentrant=False, context_fn=_COMPILED_CONTEXT, **kwargs
        )
    if use_reentrant:
        raise ValueError(
            "use_reentrant=True is not supported by dropkit.checkpoint (its recomputation "
            "cannot be told which steps to replay); pass use_reentrant=False"
        )

    def contexts() -> tuple[
        contextlib.AbstractContextManager[None], contextlib.AbstractContextManager[None]
    ]:
        forward, recompute = checkpoint_context()
        if context_fn is None:
            return forward, recompute
        user_forward, user_recompute = context_fn()
        return _Both(forward, user_forward), _Both(recompute, user_recompute)

    return torch.utils.checkpoint.checkpoint(
        function, *args, use_reentrant=False, context_fn=contexts, **kwargs
    )


def _save_step_snapshots(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> Any:
    """Selective-checkpoint policy: keep dropkit's step copies, recompute everything else."""
    from torch.utils.checkpoint import CheckpointPolicy

    if op is torch.ops.dropkit.snapshot.default:
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


_COMPILED_CONTEXT = functools.partial(
    torch.utils.checkpoint.create_selective_checkpoint_contexts, _save_step_snapshots
)


class _Both(contextlib.AbstractContextManager[None]):
    """Enter ``first`` then ``second``; exit in reverse."""

    def __init__(self, first: contextlib.AbstractContextManager[None], second: Any) -> None:
        self._first, self._second = first, second
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> None:
        self._stack.enter_context(self._first)
        self._stack.enter_context(self._second)

    def __exit__(self, *exc: object) -> bool | None:
        return self._stack.__exit__(*exc)  # type: ignore[arg-type]
