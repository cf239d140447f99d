"""The sampling context that lets one vectorised forward draw a different mask per MC sample.

:func:`dropkit.uncertainty.sample` folds ``k`` Monte Carlo samples into the leading (batch)
dimension of the input: rows ``[j * B, (j + 1) * B)`` of every activation belong to sample
``s0 + j``. While a :class:`SampleContext` is active, every primitive dropout call in
:mod:`dropkit.functional` goes through :func:`per_sample`, which splits its input into those
``k`` parts and draws part ``j`` with step ``sample_steps[j] + step`` — in one primitive-op call
with a 1-D step of length ``k`` (see :mod:`dropkit.kernels._ops`), so a layer costs one dispatch
and one kernel launch whatever ``k``:

* the key is still the caller's ``seed`` (each module keeps its own stream);
* ``sample_steps[j]`` is a 63-bit number derived from ``(sampling seed, s0 + j)`` only, so sample
  ``s`` draws the same masks whatever the chunking;
* the element index is the caller's index within that sample's part (global over the batch), so
  the first rows of a larger batch get the masks of a smaller batch.

With ``batch_consistent=True`` the mask of each part is shared over its leading dimension: every
input of a sample sees the same mask (as BatchBALD needs).

This module is private and depends on torch only, so the functional layer can import it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from dropkit import rng

__all__ = ["SampleContext", "active", "current", "per_sample", "sample_steps", "sampling"]

_STEP_MASK = 2**63 - 1
# Philox step of the stream that turns a sampling seed and a sample index into a base step, so
# it cannot coincide with the words a module draws for its masks at small training steps.
_SAMPLE_STREAM_STEP = 0x5EED_5A3D_1E5


@dataclass
class SampleContext:
    """``k`` MC samples folded into the leading dimension; ``steps`` holds their base steps."""

    steps: Tensor
    batch_consistent: bool = False
    calls: int = field(default=0)

    @property
    def num_samples(self) -> int:
        return int(self.steps.numel())


_current: contextvars.ContextVar[SampleContext | None] = contextvars.ContextVar(
    "dropkit_sample_context", default=None
)


def current() -> SampleContext | None:
    """The active sampling context, or None outside :func:`dropkit.uncertainty.sample`."""
    return _current.get()


def active() -> bool:
    """Whether dropout calls are being sampled per MC sample (never inside a compiled graph)."""
    return not torch.compiler.is_compiling() and _current.get() is not None


def sample_steps(seed: int, first: int, count: int) -> Tensor:
    """Base steps (int64, 63 bits) of samples ``first .. first + count - 1`` for ``seed``.

    A pure function of ``(seed, sample index)``: one Philox block per sample, words 0 and 1.
    """
    words = rng.random_words(seed, _SAMPLE_STREAM_STEP, first, count)
    return ((words[:, 1] << 32) | words[:, 0]) & _STEP_MASK


@contextlib.contextmanager
def sampling(context: SampleContext) -> Iterator[SampleContext]:
    """Activate ``context`` for the dropout calls made inside the block."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def per_sample(
    x: Tensor,
    step: Tensor,
    mask_shape: list[int],
    draw: Callable[[Tensor, Tensor, list[int]], Tensor],
) -> Tensor:
    """``draw(x, steps, part_mask_shape)`` with the 1-D ``steps`` of the folded MC samples
    (or ``draw(x, step, mask_shape)``, plainly, outside a sampling context).

    ``draw`` passes its step on to a primitive op, which draws dim-0 group ``j`` of ``x`` with
    ``steps[j]``. Dropout implementations that call a primitive op themselves route through this
    function to take part in MC sampling.
    """
    # Compiled graphs never see the context (MC sampling runs eager): keep them free of it.
    context = None if torch.compiler.is_compiling() else _current.get()
    if context is None:
        return draw(x, step, mask_shape)
    context.calls += 1
    k = context.num_samples
    if x.dim() == 0 or x.shape[0] % k != 0:
        raise ValueError(
            f"MC sampling folds {k} samples into the leading dimension, but a dropout input has "
            f"shape {tuple(x.shape)}: the model must keep the batch as dim 0 (sample-major)"
        )
    rows = x.shape[0] // k
    part_shape = list(mask_shape)
    if part_shape and part_shape[0] != 1:
        part_shape[0] = rows
    if context.batch_consistent and part_shape:
        part_shape[0] = 1
    steps = (context.steps.to(step.device) + step) & _STEP_MASK
    return draw(x, steps[0] if k == 1 else steps, part_shape)
