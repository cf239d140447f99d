"""When an eager call may skip ``torch.library``'s Python dispatch.

dropkit's primitive ops are ``torch.library`` custom ops so that torch.compile, torch.export,
FakeTensor tracing and dispatch modes see one opaque node per call. In plain eager execution that
dispatch is pure overhead (~35 µs a call on the CPU, several times that in a CUDA backward), so
:mod:`dropkit.kernels._ops` runs the op's body directly, under an equivalent
:class:`torch.autograd.Function`, when :func:`plain_eager` says nothing could observe the
difference.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import Parameter

__all__ = ["plain_eager", "records_grad"]

_PLAIN_TYPES = (Tensor, Parameter)


def plain_eager(*tensors: Tensor | None) -> bool:
    """True outside compilation/export, ``TorchDispatchMode``\\s (FakeTensor, ``make_fx``, FLOP
    counters) and functorch transforms (vmap, grad), for plain tensors only (subclasses such as
    DTensor or FakeTensor take the op)."""
    if torch.compiler.is_compiling():
        return False
    if torch._C._len_torch_dispatch_stack() or torch._C._are_functorch_transforms_active():
        return False
    return all(tensor is None or type(tensor) in _PLAIN_TYPES for tensor in tensors)


def records_grad(*tensors: Tensor | None) -> bool:
    """Whether autograd records an op on ``tensors`` (grad mode on and one requires grad)."""
    return torch.is_grad_enabled() and any(
        tensor is not None and tensor.requires_grad for tensor in tensors
    )
