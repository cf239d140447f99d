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

Eager calls on plain tensors skip ``torch.library``'s Python dispatch: the public functions here
run the same body under a plain :class:`torch.autograd.Function` (or directly, where autograd does
not record) whenever :func:`dropkit.kernels._eager.plain_eager` allows: not while compiling or
exporting, not under a ``TorchDispatchMode`` (FakeTensor, ``make_fx``, FLOP counters), not under
functorch transforms, and only for ``torch.Tensor``/``nn.Parameter`` inputs (no subclasses). The
custom op's dispatch costs ~35 µs a call on the CPU and ~200 µs on a CUDA machine in backward
(measured on an H200 with torch 2.11); both paths run the same backend code and give the same
bits, and the op is still what torch.compile and torch.export see.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from dropkit.kernels import backend_for
from dropkit.kernels._eager import plain_eager, records_grad
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


@torch.library.custom_op("dropkit::snapshot", mutates_args=())
def snapshot(t: Tensor) -> Tensor:
    """A copy of ``t`` that torch.compile keeps as a value of its own.

    A module's ``step`` buffer is advanced in place in the same compiled graph that reads it.
    With a plain ``clone``, AOT autograd drops the copy, saves the buffer itself for backward
    and writes the increment into it at the end of the forward, so the backward drew the next
    step's mask (seen: wrong gradients under torch.compile). A custom op is opaque to that
    rewrite and is never recomputed by the partitioner, so its result is what gets saved.
    """
    return t.clone()


snapshot.register_fake(_empty_like)


def _save_rng(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    _, rate, seed, step, offset, mask_shape, *extra = inputs
    ctx.save_for_backward(rate.detach().clone(), seed.detach().clone(), step.detach().clone())
    ctx.offset = offset
    ctx.mask_shape = mask_shape
    ctx.extra = extra


def _no_grad_for_rng(grad_x: Tensor, extra: list[Any]) -> tuple[Tensor | None, ...]:
    return (grad_x, None, None, None, None, None, *[None] * len(extra))


def _eager_twin(
    body: Callable[..., Tensor], backward: Callable[[Any, Tensor], tuple[Tensor | None, ...]]
) -> type[torch.autograd.Function]:
    """A :class:`torch.autograd.Function` running ``body`` with the op's saved state and
    backward: the op's autograd without ``torch.library``'s dispatch."""

    class EagerTwin(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, *inputs: Any) -> Tensor:
            output = body(*inputs)
            _save_rng(ctx, inputs, output)
            return output

        @staticmethod
        def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:
            return backward(ctx, grads[0])

    EagerTwin.__name__ = EagerTwin.__qualname__ = f"Eager{body.__name__.title()}"
    return EagerTwin


def _call(
    op: Callable[..., Tensor],
    twin: type[torch.autograd.Function],
    body: Callable[..., Tensor],
    args: tuple[Any, ...],
) -> Tensor:
    """``op(*args)``, or the same result without the dispatcher where :func:`plain_eager`
    allows: ``body`` directly if autograd does not record, else through ``twin``."""
    x, rate, seed, step = args[:4]
    if not plain_eager(x, rate, seed, step):
        return op(*args)
    if records_grad(x):
        return twin.apply(*args)
    return body(*args)


def _dropout_body(
    x: Tensor,
    rate: Tensor,
    seed: Tensor,
    step: Tensor,
    offset: int,
    mask_shape: list[int],
    scale: bool,
) -> Tensor:
    check_step(x, step)
    backend = backend_for(x, "dropout")
    if step.dim() == 0 or "dropout" in getattr(backend, "grouped_step_ops", ()):
        return backend.dropout(x, rate, seed, step, offset, mask_shape, scale)
    out = torch.empty_like(x)  # each group written straight into its slice: no copies
    _dropout_out(x, rate, seed, step, offset, mask_shape, scale, out)
    return out


@torch.library.custom_op("dropkit::dropout", mutates_args=())
def _dropout_op(
    x: Tensor,
    rate: Tensor,
    seed: Tensor,
    step: Tensor,
    offset: int,
    mask_shape: list[int],
    scale: bool,
) -> Tensor:
    """``where(keep, x * s, 0)`` with ``s = 1 / (1 - p_eff)`` if ``scale`` else 1."""
    return _dropout_body(x, rate, seed, step, offset, mask_shape, scale)


_dropout_op.register_fake(_empty_like)


def _dropout_backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    rate, seed, step = ctx.saved_tensors
    grad_x = dropout(grad, rate, seed, step, ctx.offset, ctx.mask_shape, *ctx.extra)
    return _no_grad_for_rng(grad_x, ctx.extra)


_dropout_op.register_autograd(_dropout_backward, setup_context=_save_rng)


_DropoutFunction = _eager_twin(_dropout_body, _dropout_backward)


def dropout(
    x: Tensor,
    rate: Tensor,
    seed: Tensor,
    step: Tensor,
    offset: int,
    mask_shape: list[int],
    scale: bool,
) -> Tensor:
    """``where(keep, x * s, 0)`` with ``s = 1 / (1 - p_eff)`` if ``scale`` else 1 (the
    ``dropkit::dropout`` op, or its eager twin where :func:`plain_eager` allows)."""
    args = (x, rate, seed, step, offset, mask_shape, scale)
    return _call(_dropout_op, _DropoutFunction, _dropout_body, args)


@torch.library.custom_op("dropkit::dropout_out", mutates_args=("out",))
def _dropout_out_op(
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
    """:func:`dropout` written into ``out`` (the ``dropkit::dropout_out`` op, or the same body
    directly where :func:`plain_eager` allows)."""
    if plain_eager(x, rate, seed, step, out):
        _dropout_out(x, rate, seed, step, offset, mask_shape, scale, out)
    else:
        _dropout_out_op(x, rate, seed, step, offset, mask_shape, scale, out)


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


def _elementwise_op(name: str, doc: str, backward_name: str) -> tuple[Any, Callable[..., Tensor]]:
    """``dropkit::<name>`` for the ops with the signature ``(x, rate, seed, step, offset,
    mask_shape)``: the custom op (body: the backend's ``<name>``, group by group where it takes
    no 1-D step) with autograd through :func:`<backward_name>`, and the public function that
    runs it or its eager twin. Both are registered in :data:`_ELEMENTWISE` under ``name`` and
    looked up there at call time (tests replace an op to check that plain eager calls never
    reach it)."""

    def body(
        x: Tensor, rate: Tensor, seed: Tensor, step: Tensor, offset: int, mask_shape: list[int]
    ) -> Tensor:
        return _grouped(
            name,
            x,
            step,
            lambda backend, part, part_step: getattr(backend, name)(
                part, rate, seed, part_step, offset, mask_shape
            ),
        )

    def op_body(
        x: Tensor, rate: Tensor, seed: Tensor, step: Tensor, offset: int, mask_shape: list[int]
    ) -> Tensor:
        return body(x, rate, seed, step, offset, mask_shape)

    op_body.__doc__ = doc
    op = torch.library.custom_op(f"dropkit::{name}", mutates_args=())(op_body)
    op.register_fake(_empty_like)

    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        rate, seed, step = ctx.saved_tensors
        grad_x = _ELEMENTWISE[backward_name][1](grad, rate, seed, step, ctx.offset, ctx.mask_shape)
        return _no_grad_for_rng(grad_x, ctx.extra)

    op.register_autograd(backward, setup_context=_save_rng)
    body.__name__ = name
    twin = _eager_twin(body, backward)

    def public(
        x: Tensor, rate: Tensor, seed: Tensor, step: Tensor, offset: int, mask_shape: list[int]
    ) -> Tensor:
        args = (x, rate, seed, step, offset, mask_shape)
        return _call(_ELEMENTWISE[name][0], twin, body, args)

    public.__name__ = public.__qualname__ = name
    public.__doc__ = f"{doc} (``dropkit::{name}``, or its eager twin)."
    _ELEMENTWISE[name] = (op, public)
    return op, public


#: name -> (custom op, public function) of the ops made by :func:`_elementwise_op`.
_ELEMENTWISE: dict[str, tuple[Any, Callable[..., Tensor]]] = {}


_gaussian_dropout_op, gaussian_dropout = _elementwise_op(
    "gaussian_dropout",
    "``x * (1 + sqrt(p / (1 - p)) * n)`` with ``n`` standard normal per mask element",
    "gaussian_dropout",
)
# The map grad -> where(keep, a * grad, 0) is linear and self-adjoint: its own backward.
_alpha_dropout_backward_op, alpha_dropout_backward = _elementwise_op(
    "alpha_dropout_backward",
    "``where(keep, a * grad, 0)``: the gradient of alpha dropout",
    "alpha_dropout_backward",
)
_alpha_dropout_op, alpha_dropout = _elementwise_op(
    "alpha_dropout",
    "``where(keep, a * x + b, a * alpha' + b)`` (Klambauer et al. 2017)",
    "alpha_dropout_backward",
)
