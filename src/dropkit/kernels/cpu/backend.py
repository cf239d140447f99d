"""The CPU fast path: dropkit's primitive ops as multi-threaded numba kernels.

Same bits as :class:`~dropkit.kernels.reference.ReferenceBackend` for the same
``(seed, step, offset)``: the kernels implement the spec (Philox4x32-10, 16-bit halves, the
integer threshold) and take their constants (scale, alpha-dropout terms) from the reference's
helpers, so the float arithmetic is the reference's, operation for operation.

* Contiguous input with a full mask (the common case): one fused pass, no mask tensor, the
  Philox generator vectorised over blocks (see :mod:`._kernels`).
* Any other layout or ``noise_shape`` (channels_last, strided, spatial, locked): the boolean keep
  mask (of the mask's size: one byte per mask element, freed before returning) comes from the
  kernel, the select from the reference's PyTorch code.
* A 1-D ``step`` (MC sampling's ``k`` samples folded into dim 0, see :mod:`dropkit.kernels._ops`)
  on the fused path: one kernel call over all groups, each with its own Philox key.
* Gaussian dropout: the uniforms from the kernel, Box-Muller from the reference's PyTorch code
  (:func:`dropkit.rng.uniforms_to_normal`), so its normals are bit-identical too.
* The fused ``residual + dropout(act(x + bias))`` and its backward: one pass each
  (:mod:`._fused_kernels`; the section at the end of :class:`CPUBackend`).

If a kernel fails to compile, the backend warns once and runs the reference from then on.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numba
import numpy as np
import torch
from torch import Tensor

from dropkit import rng
from dropkit.kernels.cpu import _fused_kernels, _kernels, _memory, _openmp
from dropkit.kernels.reference import (
    ACTIVATIONS,
    ReferenceBackend,
    alpha_constants,
    compute_dtype,
    dropout_scale,
    step_groups,
)

__all__ = ["PARALLEL_MIN_NUMEL", "CPUBackend"]

#: Below this many elements one thread does the work: waking the pool costs more than it saves.
PARALLEL_MIN_NUMEL = 1 << 16

#: numba's thread pool when the user has not chosen one. Measured here (2 cores, PyTorch's
#: OpenMP pool beside numba's): 2^22 elements took 2.3-4.1 ms with "workqueue" and 16-20 ms
#: with "omp", whose spinning threads fight PyTorch's own for the same cores.
PREFERRED_THREADING_LAYER = "workqueue"
if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":  # type: ignore[attr-defined]
    numba.config.THREADING_LAYER = PREFERRED_THREADING_LAYER  # type: ignore[attr-defined]

_STORAGE = {
    torch.float32: np.float32,
    torch.float64: np.float64,
    torch.bfloat16: np.uint16,
    torch.float16: np.int16,
}
_Result = TypeVar("_Result")
# (threshold tensor, compute dtype) -> (a, b, dropped) for out = keep ? x * a (+ b) : dropped
_Constants = Callable[[Tensor, torch.dtype], tuple[Any, Any, Any]]
# (x, step, out) -> the reference's result for one 0-d step (``out`` or a new tensor)
_Reference = Callable[[Tensor, Tensor, Tensor], Tensor]


def _flat_array(t: Tensor) -> np.ndarray:
    """A flat numpy view of contiguous CPU tensor ``t`` in the kernels' storage type."""
    flat = t.view(-1)
    if t.dtype in (torch.bfloat16, torch.float16):
        flat = flat.view(torch.int16)
    return flat.numpy().view(_STORAGE[t.dtype])


def _philox_key(seed: Tensor, step: Tensor) -> np.ndarray:
    seed_value, step_value = int(seed), int(step)
    mask32 = rng.MASK32
    return np.array(
        [seed_value & mask32, (seed_value >> 32) & mask32, step_value & mask32,
         (step_value >> 32) & mask32],
        dtype=np.uint64,
    )  # fmt: skip


def _philox_keys(seed: Tensor, steps: Tensor) -> np.ndarray:
    """One row ``(k0, k1, step_lo, step_hi)`` per step of 1-D ``steps``."""
    keys = np.empty((steps.numel(), 4), dtype=np.uint64)
    keys[:, :2] = _philox_key(seed, torch.zeros((), dtype=torch.int64))[:2]
    step_values = steps.to(device="cpu", dtype=torch.int64).numpy().view(np.uint64)
    keys[:, 2] = step_values & np.uint64(rng.MASK32)
    keys[:, 3] = step_values >> np.uint64(32)
    return keys


def _scalar(value: Tensor | float, dtype: torch.dtype) -> Any:
    """A compute-precision numpy scalar (float64 for float64 storage, else float32)."""
    numpy_type = np.float64 if compute_dtype(dtype) == torch.float64 else np.float32
    return numpy_type(float(value))


class CPUBackend(ReferenceBackend):
    """numba kernels for float32, bfloat16, float16 and float64 tensors on the CPU."""

    name = "cpu"
    #: Ops that take a 1-D ``step`` (dim-0 groups, one step each) in one call.
    grouped_step_ops = frozenset(
        {"dropout", "dropout_out", "alpha_dropout", "alpha_dropout_backward"}
    )

    def __init__(self) -> None:
        self._broken: str | None = None
        # numba's default thread pools must not be entered from two Python threads at once.
        self._launch_lock = threading.Lock()

    def supports(self, x: Tensor) -> bool:
        return self._broken is None and x.device.type == "cpu" and x.dtype in _STORAGE

    # -- plumbing ---------------------------------------------------------------------------

    def _guarded(self, fast: Callable[[], _Result], fallback: Callable[[], _Result]) -> _Result:
        """Run ``fast``; if numba cannot compile it, warn once and use the reference."""
        if self._broken is not None:
            return fallback()
        try:
            return fast()
        except numba.core.errors.NumbaError as error:
            self._broken = f"{type(error).__name__}: {str(error).splitlines()[0]}"
            warnings.warn(
                f"dropkit backend 'cpu' could not compile its kernels ({self._broken}); using "
                "the reference backend (same results, slower)",
                RuntimeWarning,
                stacklevel=4,
            )
            return fallback()

    def _parallel(
        self, numel: int, serial: Callable[[], None], parallel: Callable[[int], None]
    ) -> None:
        threads = torch.get_num_threads()
        if numel < PARALLEL_MIN_NUMEL or threads == 1:
            serial()
            return
        with self._launch_lock:
            parallel(_kernels.set_threads(threads))

    @staticmethod
    def _fused(x: Tensor, out: Tensor, mask_shape: Sequence[int], groups: int = 1) -> bool:
        """Whether the fused single pass applies: dense row-major tensors, a full mask (of
        each of ``groups`` dim-0 groups), and ``out`` either ``x`` itself or disjoint from it."""
        if not (x.is_contiguous() and out.is_contiguous() and x.numel() > 0):
            return False
        if list(mask_shape) != [x.shape[0] // groups, *x.shape[1:]]:
            return False
        x_start, out_start = x.data_ptr(), out.data_ptr()
        nbytes = x.numel() * x.element_size()
        return (
            x_start == out_start or x_start + nbytes <= out_start or out_start + nbytes <= x_start
        )

    def _bernoulli(
        self,
        x: Tensor,
        out: Tensor,
        rate: Tensor,
        seed: Tensor,
        step: Tensor,
        offset: int,
        mask_shape: Sequence[int],
        constants: Callable[
            [Tensor, torch.dtype], tuple[Tensor | float, Tensor | float, Tensor | float]
        ],
        affine: bool,
        reference: _Reference,
    ) -> Tensor:
        """``out = keep ? x * a (+ b) : dropped`` with ``(a, b, dropped) = constants(t, dtype)``
        in one fused pass where :meth:`_fused` allows, else ``reference(x, step, out)``.

        A 1-D ``step`` splits dim 0 into ``len(step)`` groups, group ``j`` drawn with ``step[j]``
        (``mask_shape`` is a group's): one kernel call on the fused path, else one reference
        call per group."""
        groups = step.numel() if step.dim() == 1 else 1

        def slow() -> Tensor:
            if step.dim() == 0:
                return reference(x, step, out)
            for part, part_step, target in zip(
                step_groups(x, step), step.unbind(), step_groups(out, step), strict=True
            ):
                result = reference(part, part_step, target)
                if result.data_ptr() != target.data_ptr():
                    target.copy_(result)
            return out

        threshold = int(rng.threshold_tensor(rate))
        if not self._fused(x, out, mask_shape, groups) or threshold >= rng.THRESHOLD_ONE:
            return slow()
        a, b, dropped = (
            _scalar(c, x.dtype) for c in constants(torch.tensor(threshold), compute_dtype(x.dtype))
        )
        source, target = _flat_array(x), _flat_array(out)
        inplace = x.data_ptr() == out.data_ptr()
        args = (np.uint16(threshold), a, b, dropped, affine, inplace)

        def fast() -> Tensor:
            keys = _philox_keys(seed, step) if step.dim() == 1 else _philox_key(seed, step)
            openmp, threads = _openmp.launcher(), torch.get_num_threads()
            if openmp is not None and x.numel() >= PARALLEL_MIN_NUMEL and threads > 1:
                # On PyTorch's own OpenMP team (see _openmp for why): one launch for all groups.
                openmp(source, target, offset, keys, *args, threads)
            elif step.dim() == 0:
                self._parallel(
                    x.numel(),
                    lambda: _kernels.bernoulli_span(source, target, offset, keys, *args),
                    lambda parts: _kernels.bernoulli(source, target, offset, keys, *args, parts),
                )
            else:
                self._parallel(
                    x.numel(),
                    lambda: _kernels.bernoulli_groups(source, target, offset, keys, *args, 1),
                    lambda parts: _kernels.bernoulli_groups_parallel(
                        source, target, offset, keys, *args, -(-parts // groups)
                    ),
                )
            return out

        return self._guarded(fast, slow)

    # -- the Bernoulli family -----------------------------------------------------------------

    def keep(  # type: ignore[override]  # an instance method: it needs the backend's state
        self, rate: Tensor, seed: Tensor, step: Tensor, offset: int, mask_shape: Sequence[int]
    ) -> Tensor:
        """The boolean keep mask of ``mask_shape`` (used where the fused pass does not apply)."""
        threshold = int(rng.threshold_tensor(rate))
        mask = _memory.fresh(torch.empty(tuple(mask_shape), dtype=torch.bool))
        if threshold >= rng.THRESHOLD_ONE or mask.numel() == 0:
            return mask.fill_(False)
        target = mask.view(-1).numpy()
        key, limit = _philox_key(seed, step), np.uint16(threshold)

        def fast() -> Tensor:
            self._parallel(
                mask.numel(),
                lambda: _kernels.keep_span(target, offset, key, limit),
                lambda parts: _kernels.keep(target, offset, key, limit, parts),
            )
            return mask

        return self._guarded(
            fast, lambda: ReferenceBackend.keep(rate, seed, step, offset, mask_shape)
        )

    def dropout(
        self,
        x: Tensor,
        rate: Tensor,
        seed: Tensor,
        step: Tensor,
        offset: int,
        mask_shape: Sequence[int],
        scale: bool,
    ) -> Tensor:
        out = _memory.fresh(torch.empty_like(x))
        return self.dropout_out(x, rate, seed, step, offset, mask_shape, scale, out)

    def dropout_out(
        self,
        x: Tensor,
        rate: Tensor,
        seed: Tensor,
        step: Tensor,
        offset: int,
        mask_shape: Sequence[int],
        scale: bool,
        out: Tensor,
    ) -> Tensor:
        def constants(threshold: Tensor, dtype: torch.dtype) -> tuple[Any, Any, Any]:
            return (dropout_scale(threshold, dtype) if scale else 1.0, 0.0, 0.0)

        def reference(x: Tensor, step: Tensor, out: Tensor) -> Tensor:
            args = (x, rate, seed, step, offset, mask_shape, scale, out)
            return ReferenceBackend.dropout_out(self, *args)

        return self._bernoulli(
            x, out, rate, seed, step, offset, mask_shape, constants, False, reference
        )

    def alpha_dropout(
        self,
        x: Tensor,
        rate: Tensor,
        seed: Tensor,
        step: Tensor,
        offset: int,
        mask_shape: Sequence[int],
    ) -> Tensor:
        def reference(x: Tensor, step: Tensor, out: Tensor) -> Tensor:
            return ReferenceBackend.alpha_dropout(self, x, rate, seed, step, offset, mask_shape)

        out = _memory.fresh(torch.empty_like(x))
        return self._bernoulli(
            x, out, rate, seed, step, offset, mask_shape, alpha_constants, True, reference
        )

    def alpha_dropout_backward(
        self,
        grad: Tensor,
        rate: Tensor,
        seed: Tensor,
        step: Tensor,
        offset: int,
        mask_shape: Sequence[int],
    ) -> Tensor:
        def constants(threshold: Tensor, dtype: torch.dtype) -> tuple[Any, Any, Any]:
            return (alpha_constants(threshold, dtype)[0], 0.0, 0.0)

        def reference(grad: Tensor, step: Tensor, out: Tensor) -> Tensor:
            args = (grad, rate, seed, step, offset, mask_shape)
            return ReferenceBackend.alpha_dropout_backward(self, *args)

        out = _memory.fresh(torch.empty_like(grad))
        return self._bernoulli(
            grad, out, rate, seed, step, offset, mask_shape, constants, False, reference
        )

    # -- uniform words (Gaussian dropout) --------------------------------------------------------

    def normal(  # type: ignore[override]  # an instance method: it needs the backend's state
        self, seed: Tensor, step: Tensor, offset: int, mask_shape: Sequence[int]
    ) -> Tensor:
        """Float32 standard normals of ``mask_shape``: uniforms from the kernel, Box-Muller from
        :func:`dropkit.rng.uniforms_to_normal` (so bit-identical to the reference)."""
        numel = math.prod(mask_shape)
        if numel == 0:
            return ReferenceBackend.normal(seed, step, offset, mask_shape)
        first_block = offset // rng.WORDS_PER_BLOCK
        last_block = (offset + numel - 1) // rng.WORDS_PER_BLOCK
        num_blocks = last_block - first_block + 1
        uniforms = torch.empty(num_blocks, rng.WORDS_PER_BLOCK, dtype=torch.float32)
        target = uniforms.view(-1).numpy()
        key = _philox_key(seed, step)

        def fast() -> Tensor:
            self._parallel(
                numel,
                lambda: _kernels.uniforms_span(target, first_block, key),
                lambda parts: _kernels.uniforms(target, first_block, key, parts),
            )
            start = offset - first_block * rng.WORDS_PER_BLOCK
            normals = rng.uniforms_to_normal(uniforms).view(-1)[start : start + numel]
            return normals.reshape(tuple(mask_shape))

        return self._guarded(fast, lambda: ReferenceBackend.normal(seed, step, offset, mask_shape))

    # -- fused ops: residual + dropout(act(x + bias)) and its backward ----------------------------
    # One pass each (see _fused_kernels): bias and residual of x's trailing shape are read
    # periodically, never expanded; anything else (another layout, a bias broadcast inside x's
    # shape, a 1-D step) runs on the reference.

    def bias_act_dropout_add(
        self,
        x: Tensor,
        bias: Tensor | None,
        residual: Tensor | None,
        rate: Tensor,
        seed: Tensor,
        step: Tensor,
        offset: int,
        activation: str,
    ) -> Tensor:
        def slow() -> Tensor:
            args = (x, bias, residual, rate, seed, step, offset, activation)
            return ReferenceBackend.bias_act_dropout_add(self, *args)

        if step.dim() != 0 or x.numel() == 0 or not x.is_contiguous():
            return slow()
        cd = compute_dtype(x.dtype)
        bias_tile = _periodic_tile(bias, x, cd)
        residual_source = _residual_source(residual, x, cd)
        if bias_tile is None or residual_source is None:
            return slow()
        threshold, scale = _fused_constants(rate, x.dtype)
        out = _memory.fresh(torch.empty_like(x))
        source, target, n = _flat_array(x), _flat_array(out), x.numel()
        args = (
            _philox_key(seed, step), threshold, scale, ACTIVATIONS.index(activation),
            _vector_end(n, x.dtype),
        )  # fmt: skip

        def fast() -> Tensor:
            self._parallel(
                n,
                lambda: _fused_kernels.forward_span(
                    source, bias_tile, residual_source, target, 0, n, offset, *args
                ),
                lambda parts: _fused_kernels.forward(
                    source, bias_tile, residual_source, target, offset, *args, parts
                ),
            )
            return out

        return self._guarded(fast, slow)

    def bias_act_dropout_backward(
        self,
        grad: Tensor,
        x: Tensor | None,
        bias: Tensor | None,
        rate: Tensor,
        seed: Tensor,
        step: Tensor,
        offset: int,
        activation: str,
    ) -> tuple[Tensor, Tensor]:
        """The bias gradient is summed in :data:`._fused_kernels.BIAS_ROW_GROUPS` fixed groups of
        rows, then the groups in order: independent of the thread count, but not PyTorch's
        ``sum`` order (see ``docs/cpu.md`` for the bound)."""

        def slow() -> tuple[Tensor, Tensor]:
            args = (grad, x, bias, rate, seed, step, offset, activation)
            return ReferenceBackend.bias_act_dropout_backward(self, *args)

        if step.dim() != 0 or grad.numel() == 0:
            return slow()
        # An expanded or permuted incoming gradient (``y.sum().backward()`` gives a stride-0
        # one) is copied once: the bias gradient then has the same bits whatever its layout
        # (eager and torch.compile hand over different layouts).
        grad = grad.contiguous()
        needs_input = activation != "identity"
        if needs_input and (
            x is None or not x.is_contiguous() or x.shape != grad.shape or x.dtype != grad.dtype
        ):
            return slow()
        cd = compute_dtype(grad.dtype)
        bias_tile = _periodic_tile(bias, grad, cd)
        if bias_tile is None:
            return slow()
        threshold, scale = _fused_constants(rate, grad.dtype)
        n = grad.numel()
        rows = -(-n // bias_tile.size)
        accumulate = bias is not None
        groups = min(_fused_kernels.BIAS_ROW_GROUPS, rows)
        partial_sums = np.full((groups, bias_tile.size if accumulate else 1), -0.0, bias_tile.dtype)
        grad_x = _memory.fresh(torch.empty_like(grad))
        source = _flat_array(grad)
        inputs = _flat_array(x) if needs_input and x is not None else source  # unread for identity
        target = _flat_array(grad_x)
        key = _philox_key(seed, step)
        args = (
            offset, key, threshold, scale, ACTIVATIONS.index(activation), accumulate,
            _vector_end(n, grad.dtype),
        )  # fmt: skip

        def fast() -> tuple[Tensor, Tensor]:
            call = (source, inputs, bias_tile, target, partial_sums, *args)
            self._parallel(
                n,
                lambda: _fused_kernels.backward_serial(*call),
                lambda parts: _fused_kernels.backward(*call),
            )
            if bias is None:
                return grad_x, torch.empty(0, dtype=cd)
            period = bias.numel()
            grad_bias = np.empty(period, bias_tile.dtype)
            _fused_kernels.sum_groups(partial_sums, period, grad_bias)
            return grad_x, torch.from_numpy(grad_bias).reshape(bias.shape)

        return self._guarded(fast, slow)


#: A periodic operand (bias, or a residual of ``x``'s trailing shape) is tiled to at least this
#: many elements, so the fused kernels' inner loops run over long contiguous segments.
MIN_TILE = 4096


def _trailing_period(operand: Tensor, x: Tensor) -> int | None:
    """``operand.numel()`` if it broadcasts to ``x`` as ``x``'s trailing dims (leading 1s
    allowed), i.e. element ``i`` of flat ``x`` meets element ``i % numel`` of it; else None."""
    shape = list(operand.shape)
    while shape and shape[0] == 1:
        shape.pop(0)
    if len(shape) > x.dim() or shape != list(x.shape[x.dim() - len(shape) :]):
        return None
    return math.prod(shape)


def _tile(values: Tensor) -> np.ndarray:
    """Flat ``values`` repeated to at least :data:`MIN_TILE` elements (a whole number of times)."""
    flat = values.reshape(-1)
    return flat.repeat(max(1, -(-MIN_TILE // flat.numel()))).numpy()


def _periodic_tile(operand: Tensor | None, x: Tensor, cd: torch.dtype) -> np.ndarray | None:
    """The operand in compute precision, tiled; a tile of ``-0.0`` (``h + (-0.0) = h`` exactly,
    for every ``h``) for a missing one; None if it is not periodic over ``x``."""
    if operand is None:
        return _tile(torch.full((1,), -0.0, dtype=cd))
    if operand.device.type != "cpu" or _trailing_period(operand, x) is None:
        return None
    return _tile(operand.detach().to(cd))


def _residual_source(residual: Tensor | None, x: Tensor, cd: torch.dtype) -> np.ndarray | None:
    """A full-size residual of ``x``'s dtype as is (read once, in its storage type); otherwise as
    :func:`_periodic_tile` (a full-size residual of another dtype is converted once)."""
    if (
        residual is not None
        and residual.shape == x.shape
        and residual.dtype == x.dtype
        and residual.is_contiguous()
        and residual.device.type == "cpu"
    ):
        return _flat_array(residual.detach())
    return _periodic_tile(residual, x, cd)


def _vector_end(numel: int, dtype: torch.dtype) -> int:
    """Where PyTorch's float32 activation kernels switch to their scalar code for the last
    ``numel % (2 * vector width)`` elements (the layout of a one-thread call); float64 has no
    bit-equal path to follow."""
    if compute_dtype(dtype) == torch.float64:
        return numel
    lanes = 16 if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else 8
    return numel - numel % (2 * lanes)


def _fused_constants(rate: Tensor, dtype: torch.dtype) -> tuple[np.uint32, Any]:
    """``(threshold, scale)`` of the fused kernels; a uint32 threshold so that p = 1
    (t = 65536) drops everything."""
    threshold = int(rng.threshold_tensor(rate))
    scale = dropout_scale(torch.tensor(threshold), compute_dtype(dtype))
    return np.uint32(threshold), _scalar(scale, dtype)
