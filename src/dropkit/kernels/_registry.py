"""One registry: from an op's schema, body and backward it builds the ``torch.library`` custom
op, its fake, its autograd, the eager twin and the public function.

torch.compile, torch.export and FakeTensor tracing see each op as one node with a known output
shape. Autograd saves only the 0-d ``rate``, ``seed`` and ``step`` tensors (cloned, so a later
in-place step increment or rate change cannot disturb backward) and Python values: backward
regenerates the mask. No tensor of the input's size is held (the fused ops keep ``x`` where the
activation's derivative needs it).

Eager calls on plain tensors skip ``torch.library``'s Python dispatch: the public function runs
the same body under a plain :class:`torch.autograd.Function` (the *eager twin*, or directly
where autograd does not record) whenever :func:`plain_eager` allows: not while compiling or
exporting, not under a ``TorchDispatchMode`` (FakeTensor, ``make_fx``, FLOP counters), not under
functorch transforms, and only for ``torch.Tensor``/``nn.Parameter`` inputs (no subclasses). The
custom op's dispatch costs ~35 µs a call on the CPU and ~200 µs on a CUDA machine in backward
(measured on an H200 with torch 2.11); both paths run the same body and give the same bits, and
the op is still what torch.compile and torch.export see.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.nn import Parameter

from dropkit.kernels import _dispatch
from dropkit.kernels._spec import Draw, OpSpec

__all__ = [
    "OPS",
    "RegisteredOp",
    "elementwise_op",
    "elementwise_out_op",
    "plain_eager",
    "records_grad",
    "register_op",
    "save_rng",
]

_PLAIN_TYPES = (Tensor, Parameter)
_is_compiling = torch.compiler.is_compiling
_dispatch_depth = torch._C._len_torch_dispatch_stack
_functorch_active = torch._C._are_functorch_transforms_active


def plain_eager(*tensors: Any) -> bool:
    """True outside compilation/export, ``TorchDispatchMode``\\s (FakeTensor, ``make_fx``, FLOP
    counters) and functorch transforms (vmap, grad), where every tensor among ``tensors`` is a
    plain tensor (subclasses such as DTensor or FakeTensor take the op); non-tensors are
    ignored."""
    if _is_compiling() or _dispatch_depth() or _functorch_active():
        return False
    for value in tensors:
        if isinstance(value, Tensor) and type(value) not in _PLAIN_TYPES:
            return False
    return True


def records_grad(*tensors: Tensor | None) -> bool:
    """Whether autograd records an op on ``tensors`` (grad mode on and one requires grad)."""
    if not torch.is_grad_enabled():
        return False
    for tensor in tensors:  # noqa: SIM110  # a loop, not any(): no generator per call
        if tensor is not None and tensor.requires_grad:
            return True
    return False


@dataclass
class RegisteredOp:
    """What :func:`register_op` built: the custom op and the function callers use."""

    name: str
    op: Any
    public: Callable[..., Any]


#: name -> the registered op. The public functions look their custom op up here at call time
#: (tests replace one to check that plain eager calls never reach it).
OPS: dict[str, RegisteredOp] = {}


def _empty_like(x: Tensor, *args: Any) -> Tensor:
    return torch.empty_like(x)


def register_op(
    name: str,
    schema: str,
    body: Callable[..., Any],
    *,
    doc: str,
    fake: Callable[..., Any] = _empty_like,
    mutates: tuple[str, ...] = (),
    setup: Callable[[Any, tuple[Any, ...], Any], None] | None = None,
    backward: Callable[[Any, Tensor], tuple[Tensor | None, ...]] | None = None,
    differentiable: Sequence[int] = (0,),
) -> RegisteredOp:
    """Register ``dropkit::<name>`` with ``schema`` running ``body``, and its public function.

    With ``setup`` and ``backward`` (``torch.library``'s ``setup_context`` and backward), the op
    is differentiable in the arguments at positions ``differentiable``; the public function
    then runs ``body`` under an eager twin with the same autograd where autograd records.
    """
    op = torch.library.custom_op(f"dropkit::{name}", body, mutates_args=mutates, schema=schema)
    op.register_fake(fake)
    twin: type[torch.autograd.Function] | None = None
    if setup is not None and backward is not None:
        op.register_autograd(backward, setup_context=setup)
        twin = _eager_twin(name, body, setup, backward)
    inputs = tuple(differentiable)

    def public(*args: Any) -> Any:
        if not plain_eager(*args):
            return OPS[name].op(*args)
        if twin is not None and records_grad(*[args[i] for i in inputs]):
            return twin.apply(*args)
        return body(*args)

    public.__name__ = public.__qualname__ = name
    public.__doc__ = f"{doc} (``dropkit::{name}``, or its eager twin)."
    OPS[name] = RegisteredOp(name, op, public)
    return OPS[name]


def _eager_twin(
    name: str,
    body: Callable[..., Any],
    setup: Callable[[Any, tuple[Any, ...], Any], None],
    backward: Callable[[Any, Tensor], tuple[Tensor | None, ...]],
) -> type[torch.autograd.Function]:
    """A :class:`torch.autograd.Function` running ``body`` with the op's saved state and
    backward: the op's autograd without ``torch.library``'s dispatch."""

    def forward(ctx: Any, *inputs: Any) -> Any:
        output = body(*inputs)
        setup(ctx, inputs, output)
        return output

    def twin_backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:
        return backward(ctx, grads[0])

    title = "".join(part.title() for part in name.split("_"))
    # Built with type() so that the autograd node is named after the op (EagerDropoutBackward).
    namespace = {"forward": staticmethod(forward), "backward": staticmethod(twin_backward)}
    return type(f"Eager{title}", (torch.autograd.Function,), namespace)


def save_rng(ctx: Any, rate: Tensor, seed: Tensor, step: Tensor) -> None:
    """Save the 0-d rate, seed and step for backward (cloned: later in-place changes to the
    caller's tensors do not reach it)."""
    ctx.save_for_backward(rate.detach().clone(), seed.detach().clone(), step.detach().clone())


# -- the elementwise family: (x, rate, seed, step, offset, mask_shape, *params) -------------------

_ELEMENTWISE_SCHEMA = (
    "(Tensor x, Tensor rate, Tensor seed, Tensor step, SymInt offset, SymInt[] mask_shape{params})"
)
#: spec name -> (public function, params) that runs it: how a backward finds its op.
_SPEC_CALLS: dict[str, tuple[Callable[..., Tensor], tuple[Any, ...]]] = {}


def elementwise_op(
    name: str,
    doc: str,
    variants: dict[tuple[Any, ...], OpSpec],
    params_schema: str = "",
) -> Callable[..., Tensor]:
    """``dropkit::<name>(x, rate, seed, step, offset, mask_shape, *params)``: the spec
    ``variants[params]`` run by :func:`dropkit.kernels._dispatch.run` (which also loops over a
    1-D step's groups where the backend does not take them), with autograd through the op of the
    spec's ``backward``. Returns the public function."""

    def body(
        x: Tensor,
        rate: Tensor,
        seed: Tensor,
        step: Tensor,
        offset: int,
        mask_shape: Sequence[int],
        *params: Any,
    ) -> Tensor:
        draw = Draw(rate, seed, step, offset, mask_shape)
        return _dispatch.run(variants[params], x, draw)  # type: ignore[return-value]

    def setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        _, rate, seed, step, offset, mask_shape, *params = inputs
        save_rng(ctx, rate, seed, step)
        ctx.offset, ctx.mask_shape, ctx.params = offset, mask_shape, tuple(params)

    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        rate, seed, step = ctx.saved_tensors
        spec = variants[ctx.params]
        if spec.backward is None:
            raise RuntimeError(f"dropkit op {spec.name!r} declares no backward")
        gradient, params = _SPEC_CALLS[spec.backward]
        grad_x = gradient(grad, rate, seed, step, ctx.offset, ctx.mask_shape, *params)
        return (grad_x, None, None, None, None, None, *[None] * len(ctx.params))

    schema = _ELEMENTWISE_SCHEMA.format(params=params_schema) + " -> Tensor"
    registered = register_op(name, schema, body, doc=doc, setup=setup, backward=backward)
    for params, spec in variants.items():
        _SPEC_CALLS[spec.name] = (registered.public, params)
    return registered.public


def elementwise_out_op(
    name: str, doc: str, variants: dict[tuple[Any, ...], OpSpec], params_schema: str = ""
) -> Callable[..., None]:
    """``dropkit::<name>(x, rate, seed, step, offset, mask_shape, *params, out)``: the spec
    written into ``out`` (may be ``x`` itself: in place, no temporary). Not differentiable
    (like PyTorch's ``out=`` variants)."""

    def body(x: Tensor, rate: Tensor, seed: Tensor, step: Tensor, *rest: Any) -> None:
        offset, mask_shape, *params, out = rest
        _dispatch.run(variants[tuple(params)], x, Draw(rate, seed, step, offset, mask_shape), out)

    schema = _ELEMENTWISE_SCHEMA.format(params=params_schema + ", Tensor(a!) out") + " -> ()"
    return register_op(name, schema, body, doc=doc, fake=_no_result, mutates=("out",)).public


def _no_result(*args: Any) -> None:
    return None
