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
* Gaussian dropout: the Philox words from the kernel, Box-Muller from the reference's PyTorch
  code, so its normals are bit-identical too.

If a kernel fails to compile, the backend warns once and runs the reference from then on.
"""

from __future__ import annotations

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
from dropkit.kernels.cpu import _kernels
from dropkit.kernels.reference import (
    ReferenceBackend,
    alpha_constants,
    compute_dtype,
    dropout_scale,
)

__all__ = ["PARALLEL_MIN_NUMEL", "CPUBackend"]

#: Below this many elements one thread does the work: waking the pool costs more than it saves.
PARALLEL_MIN_NUMEL = 1 << 16

#: numba's thread pool when the user has not chosen one. Measured here (2 cores, PyTorch's
#: OpenMP pool beside numba's): 2^22 elements took 2.3-4.1 ms with "workqueue" and 16-20 ms
#: with "omp", whose spinning threads fight PyTorch's own for the same cores.
PREFERRED_THREADING_LAYER = "workqueue"
if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = PREFERRED_THREADING_LAYER

_STORAGE = {
    torch.float32: np.float32,
    torch.float64: np.float64,
    torch.bfloat16: np.uint16,
    torch.float16: np.int16,
}
_Result = TypeVar("_Result")


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


def _scalar(value: Tensor | float, dtype: torch.dtype) -> Any:
    """A compute-precision numpy scalar (float64 for float64 storage, else float32)."""
    numpy_type = np.float64 if compute_dtype(dtype) == torch.float64 else np.float32
    return numpy_type(float(value))


class CPUBackend(ReferenceBackend):
    """numba kernels for float32, bfloat16, float16 and float64 tensors on the CPU."""

    name = "cpu"

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

    def _parallel(self, numel: int, serial: Callable[[], None], parallel: Callable[[int], None]) -> None:
        threads = torch.get_num_threads()
        if numel < PARALLEL_MIN_NUMEL or threads == 1:
            serial()
            return
        with self._launch_lock:
            parallel(_kernels.set_threads(threads))

    @staticmethod
    def _fused(x: Tensor, out: Tensor, mask_shape: Sequence[int]) -> bool:
        """Whether the fused single pass applies: dense row-major tensors and a full mask."""
        return (
            x.is_contiguous()
            and out.is_contiguous()
            and list(mask_shape) == list(x.shape)
            and x.numel() > 0
        )

    def _bernoulli(
        self,
        x: Tensor,
        out: Tensor,
        offset: int,
        key: np.ndarray,
        threshold: int,
        a: Any,
        b: Any,
        dropped: Any,
        affine: bool,
    ) -> None:
        source, target = _flat_array(x), _flat_array(out)
        limit = np.uint16(threshold)
        inplace = x.data_ptr() == out.data_ptr()
        args = (key, limit, a, b, dropped, affine, inplace)
        self._parallel(
            x.numel(),
            lambda: _kernels.bernoulli_span(source, target, offset, *args),
            lambda parts: _kernels.bernoulli(source, target, offset, *args, parts),
        )

    # -- the Bernoulli family -----------------------------------------------------------------

    def keep(
        self, rate: Tensor, seed: Tensor, step: Tensor, offset: int, mask_shape: Sequence[int]
    ) -> Tensor:
        threshold = int(rng.threshold_tensor(rate))
        mask = torch.empty(tuple(mask_shape), dtype=torch.bool)
        if threshold >= rng.THRESHOLD_ONE or mask.numel() == 0:
            return mask.fill_(threshold == 0)
        target = mask.view(-1).numpy()
        key, limit = _philox_key(seed, step), np.uint16(threshold)

        def fast() -> Tensor:
            self._parallel(
                mask.numel(),
                lambda: _kernels.keep_span(target, offset, key, limit),
                lambda parts: _kernels.keep(target, offset, key, limit, parts),
            )
            return mask

        return self._guarded(fast, lambda: super(CPUBackend, self).keep(rate, seed, step, offset, mask_shape))

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
        return self.dropout_out(x, rate, seed, step, offset, mask_shape, scale, torch.empty_like(x))

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
        threshold = int(rng.threshold_tensor(rate))
        reference = super()
        if not self._fused(x, out, mask_shape) or threshold >= rng.THRESHOLD_ONE:
            return reference.dropout_out(x, rate, seed, step, offset, mask_shape, scale, out)
        cd = compute_dtype(x.dtype)
        factor = dropout_scale(torch.tensor(threshold), cd) if scale else 1.0
        zero = _scalar(0.0, x.dtype)

        def fast() -> Tensor:
            key = _philox_key(seed, step)
            self._bernoulli(x, out, offset, key, threshold, _scalar(factor, x.dtype), zero, zero, False)
            return out

        return self._guarded(
            fast, lambda: reference.dropout_out(x, rate, seed, step, offset, mask_shape, scale, out)
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
        threshold = int(rng.threshold_tensor(rate))
        out = torch.empty_like(x)
        reference = super()
        if not self._fused(x, out, mask_shape) or threshold >= rng.THRESHOLD_ONE:
            return reference.alpha_dropout(x, rate, seed, step, offset, mask_shape)
        a, b, dropped = alpha_constants(torch.tensor(threshold), compute_dtype(x.dtype))

        def fast() -> Tensor:
            key = _philox_key(seed, step)
            constants = (_scalar(v, x.dtype) for v in (a, b, dropped))
            self._bernoulli(x, out, offset, key, threshold, *constants, True)
            return out

        return self._guarded(
            fast, lambda: reference.alpha_dropout(x, rate, seed, step, offset, mask_shape)
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
        threshold = int(rng.threshold_tensor(rate))
        out = torch.empty_like(grad)
        reference = super()
        if not self._fused(grad, out, mask_shape) or threshold >= rng.THRESHOLD_ONE:
            return reference.alpha_dropout_backward(grad, rate, seed, step, offset, mask_shape)
        a, _, _ = alpha_constants(torch.tensor(threshold), compute_dtype(grad.dtype))
        zero = _scalar(0.0, grad.dtype)

        def fast() -> Tensor:
            key = _philox_key(seed, step)
            self._bernoulli(grad, out, offset, key, threshold, _scalar(a, grad.dtype), zero, zero, False)
            return out

        return self._guarded(
            fast,
            lambda: reference.alpha_dropout_backward(grad, rate, seed, step, offset, mask_shape),
        )

    # -- uniform words (Gaussian dropout) --------------------------------------------------------

    def normal(self, seed: Tensor, step: Tensor, offset: int, mask_shape: Sequence[int]) -> Tensor:
        numel = int(np.prod(mask_shape, dtype=np.int64))
        if numel == 0:
            return super().normal(seed, step, offset, mask_shape)
        first_block = offset // rng.WORDS_PER_BLOCK
        last_block = (offset + numel - 1) // rng.WORDS_PER_BLOCK
        num_blocks = last_block - first_block + 1
        words = np.empty(num_blocks * rng.WORDS_PER_BLOCK, dtype=np.uint32)
        key = _philox_key(seed, step)

        def fast() -> Tensor:
            self._parallel(
                numel,
                lambda: _kernels.words_span(words, first_block, key),
                lambda parts: _kernels.words(words, first_block, key, parts),
            )
            blocks = torch.from_numpy(words.astype(np.int64)).view(num_blocks, rng.WORDS_PER_BLOCK)
            start = offset - first_block * rng.WORDS_PER_BLOCK
            normals = rng.words_to_normal(blocks).view(-1)[start : start + numel]
            return normals.reshape(tuple(mask_shape))

        return self._guarded(fast, lambda: super(CPUBackend, self).normal(seed, step, offset, mask_shape))
