"""dropkit's primitive ops, registered with ``torch.library``.

torch.compile, torch.export and FakeTensor tracing see each op as one node with a known output
shape. The op's body asks :func:`dropkit.kernels.backend_for` for an implementation at run time.

Autograd saves only the 0-d ``rate``, ``seed`` and ``step`` tensors (cloned, so a later in-place
step increment or rate change cannot disturb backward) and the Python ints ``offset`` and
``mask_shape``: backward regenerates the mask. No tensor of the input's size is held.

``step`` is 0-d, or 1-D of length ``k`` (MC sampling, :mod:`dropkit._mc_context`): then ``x`` is
``k`` equal groups along dim 0, group ``j`` is drawn with ``step[j]`` exactly as a separate call
on that group would draw it, and ``mask_shape`` is one group's mask shape. A backend that lists
the op in ``grouped_step_ops`` does that in one pass; for the others the op loops over groups.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from dropkit.kernels import backend_for
from dropkit.kernels.reference import check_step, step_groups

__all__ = [
    "alpha_dropout",
    "alpha_dropout_backward",
    "dropout",
    "dropout_out",
    "gaussian_dropout",
]


def _empty_like(x: Tensor, *args: Any) -> Tensor:
    return torch.empty_like(x)


def _grouped(
    op: str, x: Tensor, step: Tensor, run: Callable[[Any, Tensor, Tensor], Tensor]
) -> Tensor:
    """``run(backend, x, step)``, once per dim-0 group of ``x`` (results concatenated) where
    ``step`` is 1-D and the backend does not take grouped steps for ``op``."""
    check_step(x, step)
    backend = backend_for(x, op)
    if step.dim() == 0 or op in getattr(backend, "grouped_step_ops", ()):
        return run(backend, x, step)
    out = torch.empty_like(x)
    for part, part_step, target in zip(
        step_groups(x, step), step.unbind(), step_groups(out, step), strict=True
    ):
        target.copy_(run(backend, part, part_step))
    return out


def _save_rng(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    _, rate, seed, step, offset, mask_shape, *extra = inputs
    ctx.save_for_backward(rate.detach().clone(), seed.detach().clone(), step.detach().clone())
    ctx.offset = offset
    ctx.mask_shape = mask_shape
    ctx.extra = extra


def _no_grad_for_rng(grad_x: Tensor, extra: list[Any]) -> tuple[Tensor | None, ...]:
    return (grad_x, None, None, None, None, None, *[None] * len(extra))


@torch.library.custom_op("dropkit::dropout", mutates_args=())
def dropout(
    x: Tensor,
    rate: Tensor,
    seed: Tensor,
    step: Tensor,
    offset: int,
    mask_shape: list[int],
    scale: bool,
) -> Tensor:
    """``where(keep, x * s, 0)`` with ``s = 1 / (1 - p_eff)`` if ``scale`` else 1."""
    check_step(x, step)
    backend = backend_for(x, "dropout")
    if step.dim() == 0 or "dropout" in getattr(backend, "grouped_step_ops", ()):
        return backend.dropout(x, rate, seed, step, offset, mask_shape, scale)
    out = torch.empty_like(x)  # each group written straight into its slice: no copies
    _dropout_out(x, rate, seed, step, offset, mask_shape, scale, out)
    return out


dropout.register_fake(_empty_like)


def _dropout_backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    rate, seed, step = ctx.saved_tensors
    grad_x = dropout(grad, rate, seed, step, ctx.offset, ctx.mask_shape, *ctx.extra)
    return _no_grad_for_rng(grad_x, ctx.extra)


dropout.register_autograd(_dropout_backward, setup_context=_save_rng)


@torch.library.custom_op("dropkit::dropout_out", mutates_args=("out",))
def dropout_out(
    x: Tensor,
    rate: Tensor,
    seed: Tensor,
    step: Tensor,
    offset: int,
    mask_shape: list[int],
    scale: bool,
    out: Tensor,
) -> None:
    """:func:`dropout` written into ``out`` (may be ``x`` itself: in-place, no temporary).

    Not differentiable (like PyTorch's ``out=`` variants): the functional layer uses it only
    where autograd does not record.
    """
    _dropout_out(x, rate, seed, step, offset, mask_shape, scale, out)


def _dropout_out(
    x: Tensor,
    rate: Tensor,
    seed: Tensor,
    step: Tensor,
    offset: int,
    mask_shape: list[int],
    scale: bool,
    out: Tensor,
) -> None:
    check_step(x, step)
    backend = backend_for(x, "dropout_out")
    if step.dim() == 0 or "dropout_out" in getattr(backend, "grouped_step_ops", ()):
        backend.dropout_out(x, rate, seed, step, offset, mask_shape, scale, out)
        return
    for part, part_step, target in zip(
        step_groups(x, step), step.unbind(), step_groups(out, step), strict=True
    ):
        backend.dropout_out(part, rate, seed, part_step, offset, mask_shape, scale, target)


@torch.library.custom_op("dropkit::gaussian_dropout", mutates_args=())
def gaussian_dropout(
    x: Tensor, rate: Tensor, seed: Tensor, step: Tensor, offset: int, mask_shape: list[int]
) -> Tensor:
    """``x * (1 + sqrt(p / (1 - p)) * n)`` with ``n`` standard normal per mask element."""
    return _grouped(
        "gaussian_dropout",
        x,
        step,
        lambda backend, part, part_step: backend.gaussian_dropout(
            part, rate, seed, part_step, offset, mask_shape
        ),
    )


gaussian_dropout.register_fake(_empty_like)


def _gaussian_backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    rate, seed, step = ctx.saved_tensors
    grad_x = gaussian_dropout(grad, rate, seed, step, ctx.offset, ctx.mask_shape)
    return _no_grad_for_rng(grad_x, ctx.extra)


gaussian_dropout.register_autograd(_gaussian_backward, setup_context=_save_rng)


@torch.library.custom_op("dropkit::alpha_dropout_backward", mutates_args=())
def alpha_dropout_backward(
    grad: Tensor, rate: Tensor, seed: Tensor, step: Tensor, offset: int, mask_shape: list[int]
) -> Tensor:
    """``where(keep, a * grad, 0)``: the gradient of alpha dropout."""
    return _grouped(
        "alpha_dropout_backward",
        grad,
        step,
        lambda backend, part, part_step: backend.alpha_dropout_backward(
            part, rate, seed, part_step, offset, mask_shape
        ),
    )


alpha_dropout_backward.register_fake(_empty_like)


def _alpha_backward_backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    # The map grad -> where(keep, a * grad, 0) is linear and self-adjoint.
    rate, seed, step = ctx.saved_tensors
    grad_x = alpha_dropout_backward(grad, rate, seed, step, ctx.offset, ctx.mask_shape)
    return _no_grad_for_rng(grad_x, ctx.extra)


alpha_dropout_backward.register_autograd(_alpha_backward_backward, setup_context=_save_rng)


@torch.library.custom_op("dropkit::alpha_dropout", mutates_args=())
def alpha_dropout(
    x: Tensor, rate: Tensor, seed: Tensor, step: Tensor, offset: int, mask_shape: list[int]
) -> Tensor:
    """``where(keep, a * x + b, a * alpha' + b)`` (Klambauer et al. 2017)."""
    return _grouped(
        "alpha_dropout",
        x,
        step,
        lambda backend, part, part_step: backend.alpha_dropout(
            part, rate, seed, part_step, offset, mask_shape
        ),
    )


alpha_dropout.register_fake(_empty_like)


def _alpha_backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    rate, seed, step = ctx.saved_tensors
    grad_x = alpha_dropout_backward(grad, rate, seed, step, ctx.offset, ctx.mask_shape)
    return _no_grad_for_rng(grad_x, ctx.extra)


alpha_dropout.register_autograd(_alpha_backward, setup_context=_save_rng)
