"""The CPU fast path: dropkit's primitive ops as multi-threaded numba kernels.

Same bits as :class:`~dropkit.kernels.reference.ReferenceBackend` for the same
``(seed, step, offset)``: the kernels implement the spec (Philox4x32-10, 16-bit halves, the
integer threshold) and take their constants (scale, alpha-dropout terms) from the reference's
helpers, so the float arithmetic is the reference's, operation for operation.

* Contiguous input with a full mask (the common case): one fused pass, no mask tensor, the
  Philox generator vectorised over blocks (see :mod:`._elementwise`, :mod:`._philox`).
* Any other layout or ``noise_shape`` (channels_last, strided, transposed; spatial, locked,
  feature-alpha): one pass of :mod:`._layout` over the merged dims
  (:func:`dropkit.kernels._layout.merged_dims`), in the output's memory order. A broadcast mask
  is drawn whole first (it is small); a full mask chunk by chunk inside the pass where the layout
  allows. No PyTorch temporaries, no mask of ``x``'s size.
* A 1-D ``step`` (MC sampling's ``k`` samples folded into dim 0, see :mod:`dropkit.kernels._ops`)
  on the fused path: one kernel call over all groups, each with its own Philox key; on the
  layout pass, one pass per group.
* Gaussian dropout: the same pass, the normals computed in the kernel (Box-Muller on the spec's
  words with vectorisable float32 ``log``/``sin``/``cos``): within 4 float32 ulps of the
  reference's normals (measured over 12M draws; ~72% bit-equal), not bit-identical.
* The fused ``residual + dropout(act(x + bias))`` and its backward: one pass each
  (:mod:`._fused`; the section at the end of :class:`CPUBackend`).

If a kernel fails to compile, the backend warns once and runs the reference from then on.
"""

from __future__ import annotations

import functools
import math
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numba
import numpy as np
import torch
from torch import Tensor

from dropkit import rng
from dropkit.kernels._dispatch import Epilogue, step_groups
from dropkit.kernels._layout import merged_dims
from dropkit.kernels._spec import BIAS_ACT_DROPOUT_ADD, Draw, OpSpec
from dropkit.kernels.cpu import _elementwise, _fused, _launch, _layout, _memory, _philox
from dropkit.kernels.reference import ACTIVATIONS, ReferenceBackend, compute_dtype

__all__ = ["PARALLEL_MIN_NUMEL", "CPUBackend"]

#: Below this many elements one thread does the work: waking the pool costs more than it saves.
PARALLEL_MIN_NUMEL = 1 << 16

_STORAGE = {
    torch.float32: np.float32,
    torch.float64: np.float64,
    torch.bfloat16: np.uint16,
    torch.float16: np.int16,
}
_Result = TypeVar("_Result")
# (x, step, out) -> the reference's result for one 0-d step (``out`` or a new tensor)
_Reference = Callable[[Tensor, Tensor, Tensor], Tensor]


def _flat_array(t: Tensor) -> np.ndarray:
    """A flat numpy view of contiguous CPU tensor ``t`` in the kernels' storage type."""
    flat = t.view(-1)
    if t.dtype in (torch.bfloat16, torch.float16):
        flat = flat.view(torch.int16)
    return flat.numpy().view(_STORAGE[t.dtype])


def _span_array(t: Tensor) -> np.ndarray:
    """A flat numpy view of the storage that CPU tensor ``t`` spans, from its first element, in
    the kernels' storage type: element ``sum(i_d * t.stride(d))`` of ``t`` is entry
    ``sum(i_d * t.stride(d))``."""
    extent = 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride(), strict=True))
    flat = t.as_strided((extent,), (1,))
    if t.dtype in (torch.bfloat16, torch.float16):
        flat = flat.view(torch.int16)
    return flat.numpy().view(_STORAGE[t.dtype])


def _byte_range(t: Tensor) -> tuple[int, int]:
    extent = 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride(), strict=True))
    return t.data_ptr(), t.data_ptr() + extent * t.element_size()


def _layout_plan(x: Tensor, out: Tensor, mask_shape: Sequence[int]) -> np.ndarray | None:
    """The merged dims of ``x``, ``out`` and the mask as an int64 ``(D, 4)`` array for
    :mod:`._layout`, or None where the layout pass cannot run: no elements, more than
    ``MAX_DIMS`` merged dims, an ``out`` that writes one element twice or overlaps ``x`` other
    than as ``x`` itself."""
    if x.numel() == 0 or any(
        size > 1 and stride == 0 for size, stride in zip(out.shape, out.stride(), strict=True)
    ):
        return None
    same = x.data_ptr() == out.data_ptr() and x.stride() == out.stride()
    (x_start, x_end), (out_start, out_end) = _byte_range(x), _byte_range(out)
    if not same and x_start < out_end and out_start < x_end:
        return None
    dims = merged_dims(x, out, mask_shape) or [(1, 0, 0, 0)]
    if len(dims) > _layout.MAX_DIMS:
        return None
    return np.array(dims, dtype=np.int64)


def _chunkable(dims: np.ndarray, parts: int) -> bool:
    """Whether a full mask can be drawn chunk by chunk of the outermost merged dim: its inner
    dims cover the mask indices ``[0, L)`` exactly once with ``L`` the outer dim's mask stride,
    and the outer dim has enough indices to share among ``parts`` threads."""
    if dims.shape[0] == 1:
        return bool(dims[0, 3] == 1)
    if dims[0, 0] < parts:
        return False
    inner = sorted((int(stride), int(size)) for size, _, _, stride in dims[1:])
    expected = 1
    for stride, size in inner:
        if stride != expected:
            return False
        expected *= size
    return bool(dims[0, 3] == expected)


def _memory_order(dims: np.ndarray) -> np.ndarray:
    """``(size, memory stride)`` of the inner dims (all but the outermost), outermost first in
    mask order, where they form one dense row-major block in both input and output (the draws
    of a chunk are then put in memory order first); an empty ``(0, 2)`` array otherwise."""
    none = np.zeros((0, 2), dtype=np.int64)
    if dims.shape[0] < 2:
        return none
    expected = 1
    for size, x_stride, out_stride, _ in dims[:0:-1]:
        if x_stride != expected or out_stride != expected:
            return none
        expected *= int(size)
    by_mask = sorted(dims[1:].tolist(), key=lambda dim: dim[3], reverse=True)
    return np.array([(size, x_stride) for size, x_stride, _, _ in by_mask], dtype=np.int64)


#: A mask drawn before the layout pass is drawn on one thread below this many elements.
SERIAL_DRAW_MAX_NUMEL = 1 << 20

#: Rows a tiled walk keeps at least, to share among threads (see :func:`_periodic`).
RUN_SPLIT = 64

#: Inner runs up to this long whose draws repeat across the next dim are tiled (see
#: ``_layout._periodic_row``): below it, per-row overhead dominates.
PERIODIC_MAX = 256


def _periodic(dims: np.ndarray) -> tuple[np.ndarray, int]:
    """``dims`` with its two innermost dims merged into one contiguous run, and the pattern of
    that run's draws, where the innermost dim is a short contiguous run and the next continues
    it in memory: ``period > 0`` where its draws (mask stride 1) repeat over the next dim (mask
    stride 0: channels_last spatial dropout's ``(H*W, C)``), ``period = -n`` where one draw
    (mask stride 0) holds for its ``n`` elements (contiguous spatial dropout's ``(N*C, H*W)``);
    else ``(dims, 0)``. Short runs would each pay a loop set-up (22 ns per 64-element run)."""
    if dims.shape[0] < 2:
        return dims, 0
    outer_size, outer_x, outer_out, outer_mask = (int(v) for v in dims[-2])
    size, x_stride, out_stride, mask_stride = (int(v) for v in dims[-1])
    if not (
        size <= PERIODIC_MAX
        and (x_stride, out_stride, outer_x, outer_out) == (1, 1, size, size)
        and (mask_stride, outer_mask) in ((1, 0), (0, outer_mask))
        and (mask_stride, outer_mask) != (0, 0)
    ):
        return dims, 0
    # The pass splits its rows (the outer dims) over threads: keep at least RUN_SPLIT of them
    # by cutting the run into ``pieces`` (a divisor of ``outer_size``) where there are fewer.
    rows = int(np.prod(dims[:-2, 0]))
    pieces = 1
    if rows < RUN_SPLIT:
        pieces = next(p for p in range(RUN_SPLIT, 0, -1) if outer_size % p == 0)
        if rows * pieces < RUN_SPLIT // 8:
            return dims, 0  # too few rows for the threads: the plain walk splits finer
    per_piece = outer_size // pieces
    draw_step = mask_stride if mask_stride else outer_mask
    split = [
        [pieces, per_piece * size, per_piece * size, 0 if mask_stride else per_piece * draw_step]
    ]
    run = [[per_piece * size, 1, 1, draw_step]]
    merged = np.concatenate([dims[:-2], split if pieces > 1 else np.zeros((0, 4)), run])
    return merged.astype(np.int64), size if mask_stride else -size


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


def _threshold(rate: Tensor) -> int:
    """``round(float32(rate) * 65536)`` as :func:`dropkit.rng.threshold_tensor` computes it, in
    Python: the float32 value times 2**16 is exact in float64 and ``round`` ties to even like
    ``torch.round``. (Small calls: the tensor ops cost several µs.)"""
    return round(float(np.float32(rate.item())) * rng.THRESHOLD_ONE)


@functools.lru_cache(maxsize=4096)
def _constants(spec: OpSpec, threshold: int, dtype: torch.dtype) -> tuple[float, float, float]:
    """``spec.constants`` of an int threshold as floats, memoised."""
    a, b, dropped = spec.constants(torch.tensor(threshold), dtype)
    return float(a), float(b), float(dropped)


def _scalar(value: Tensor | float, dtype: torch.dtype) -> Any:
    """A compute-precision numpy scalar (float64 for float64 storage, else float32)."""
    numpy_type = np.float64 if compute_dtype(dtype) == torch.float64 else np.float32
    return numpy_type(float(value))


class CPUBackend(ReferenceBackend):
    """numba kernels for float32, bfloat16, float16 and float64 tensors on the CPU."""

    name = "cpu"
    #: Ops that take a 1-D ``step`` (dim-0 groups, one step each) in one call.
    grouped_step_ops = frozenset(
        {"dropout", "dropout_unscaled", "alpha_dropout", "alpha_dropout_backward"}
    )

    def __init__(self) -> None:
        self._broken: str | None = None
        # numba's default thread pools must not be entered from two Python threads at once.
        self._launch_lock = threading.Lock()

    def supports(self, spec: OpSpec, x: Tensor) -> bool:
        return self._broken is None and x.device.type == "cpu" and x.dtype in _STORAGE

    def run(
        self,
        spec: OpSpec,
        x: Tensor,
        draw: Draw,
        out: Tensor | None = None,
        epilogue: Epilogue | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        if epilogue is not None:
            if spec.epilogue == "bias_act_backward":
                return self._bias_act_dropout_backward(spec, x, draw, epilogue)
            return self._bias_act_dropout_add(spec, x, draw, epilogue)
        if spec.draw == "normal":
            return self._normal_op(spec, x, draw, out)
        if out is None:
            out = _memory.fresh(torch.empty_like(x))

        def reference(part: Tensor, part_step: Tensor, target: Tensor) -> Tensor:
            return ReferenceBackend.elementwise(
                self, spec, part, draw._replace(step=part_step), target
            )

        return self._bernoulli(x, out, draw, spec, reference)

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
            parallel(_launch.set_threads(threads))

    @staticmethod
    def _fused(x: Tensor, out: Tensor, mask_shape: Sequence[int], groups: int = 1) -> bool:
        """Whether the fused single pass applies: dense row-major tensors, a full mask (of
        each of ``groups`` dim-0 groups), and ``out`` either ``x`` itself or disjoint from it."""
        if not (x.is_contiguous() and out.is_contiguous() and x.numel() > 0):
            return False
        full = [x.shape[0] // groups, *x.shape[1:]] if x.dim() > 0 else []
        if list(mask_shape) != full:
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
        draw: Draw,
        spec: OpSpec,
        reference: _Reference,
    ) -> Tensor:
        """``out = keep ? x * a (+ b) : dropped`` with ``(a, b, dropped)`` the spec's constants
        in one fused pass where :meth:`_fused` allows, else ``reference(x, step, out)``.

        A 1-D ``step`` splits dim 0 into ``len(step)`` groups, group ``j`` drawn with ``step[j]``
        (``mask_shape`` is a group's): one kernel call on the fused path, else one reference
        call per group."""
        rate, seed, step, offset, mask_shape = draw
        affine = spec.affine
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

        threshold = _threshold(rate)
        if threshold >= rng.THRESHOLD_ONE:
            return slow()
        a, b, dropped = (
            _scalar(c, x.dtype) for c in _constants(spec, threshold, compute_dtype(x.dtype))
        )
        if not self._fused(x, out, mask_shape, groups):
            plans = self._layout_plans(x, out, step, mask_shape)
            if plans is None:
                return slow()

            def layout() -> Tensor:
                for part, target, part_step, dims in plans:
                    self._layout_pass(
                        part, target, dims, _philox_key(seed, part_step), offset, mask_shape,
                        np.uint16(threshold), (a, b, dropped), affine,
                    )  # fmt: skip
                return out

            return self._guarded(layout, slow)
        source, target = _flat_array(x), _flat_array(out)
        inplace = x.data_ptr() == out.data_ptr()
        args = (np.uint16(threshold), a, b, dropped, affine, inplace)

        def fast() -> Tensor:
            keys = _philox_keys(seed, step) if step.dim() == 1 else _philox_key(seed, step)
            openmp, threads = _launch.bernoulli_launcher(), torch.get_num_threads()
            if openmp is not None and x.numel() >= PARALLEL_MIN_NUMEL and threads > 1:
                # On PyTorch's own OpenMP team (see _launch for why): one launch for all groups.
                openmp(source, target, offset, keys, *args, threads)
            elif step.dim() == 0:
                self._parallel(
                    x.numel(),
                    lambda: _elementwise.bernoulli_span(source, target, offset, keys, *args),
                    lambda parts: _elementwise.bernoulli(
                        source, target, offset, keys, *args, parts
                    ),
                )
            else:
                self._parallel(
                    x.numel(),
                    lambda: _elementwise.bernoulli_groups(source, target, offset, keys, *args, 1),
                    lambda parts: _elementwise.bernoulli_groups_parallel(
                        source, target, offset, keys, *args, -(-parts // groups)
                    ),
                )
            return out

        return self._guarded(fast, slow)

    @staticmethod
    def _layout_plans(
        x: Tensor, out: Tensor, step: Tensor, mask_shape: Sequence[int]
    ) -> list[tuple[Tensor, Tensor, Tensor, np.ndarray]] | None:
        """``(x part, out part, step, dims)`` per dim-0 group of a 1-D ``step`` (one for a 0-d
        step) for :meth:`_layout_pass`; None if the layout pass cannot take every group."""
        if step.dim() == 0:
            parts = [(x, out, step)]
        else:
            parts = list(zip(step_groups(x, step), step_groups(out, step), step.unbind(),
                             strict=True))  # fmt: skip
        plans = []
        for part, target, part_step in parts:
            dims = _layout_plan(part, target, mask_shape)
            if dims is None:
                return None
            plans.append((part, target, part_step, dims))
        return plans

    def _layout_pass(
        self,
        x: Tensor,
        out: Tensor,
        dims: np.ndarray,
        key: np.ndarray,
        offset: int,
        mask_shape: Sequence[int],
        threshold: Any,
        constants: tuple[Any, Any, Any],
        affine: bool,
        gaussian: bool = False,
    ) -> None:
        """One pass of :mod:`._layout` over any layout and mask shape:
        ``out = keep ? x * a (+ b) : dropped``, or with ``gaussian`` ``out = x * (1 + a * n)``
        for float32 standard normals ``n``. A mask smaller than ``x`` is drawn
        whole first (it is small); a full mask chunk by chunk in the pass where the layout
        allows (see :func:`_chunkable`), else whole."""
        source, target = _span_array(x), _span_array(out)
        a, b, dropped = constants
        like = np.empty(0, np.float32 if gaussian else np.bool_)  # the draws' dtype
        mask_numel = math.prod(mask_shape)
        threads = torch.get_num_threads()
        parallel = x.numel() >= PARALLEL_MIN_NUMEL and threads > 1
        # On PyTorch's own OpenMP team where its libgomp is found: see _launch for why.
        openmp = _launch.layout_launcher() if parallel else None
        if mask_numel >= x.numel() and _chunkable(dims, threads if parallel else 1):
            order = _memory_order(dims)
            if openmp is not None:
                openmp(
                    source, target, dims, draws=like, chunked=True, order=order, offset=offset,
                    key=key, threshold=int(threshold), constants=constants, affine=affine,
                    threads=threads,
                )  # fmt: skip
                return
            self._parallel(
                x.numel(),
                lambda: _layout.apply_chunked(
                    source, target, dims, order, offset, key, threshold, like,
                    a, b, dropped, affine,
                ),
                lambda parts: _layout.apply_chunked_parallel(
                    source, target, dims, order, offset, key, threshold, like,
                    a, b, dropped, affine, parts,
                ),
            )  # fmt: skip
            return
        draws = np.empty(mask_numel, like.dtype)
        # A small mask is drawn on this thread: waking numba's pool right before the pass on
        # PyTorch's OpenMP team costs more than the draw (262144 keep draws: 0.04 ms).
        draw_numel = mask_numel if mask_numel >= SERIAL_DRAW_MAX_NUMEL else 0
        if not gaussian:
            self._parallel(
                draw_numel,
                lambda: _philox.keep_span(draws, offset, key, threshold),
                lambda parts: _philox.keep(draws, offset, key, threshold, parts),
            )
        else:
            self._parallel(
                draw_numel,
                lambda: _philox.normals(draws, offset, key),
                lambda parts: _philox.normals_parallel(draws, offset, key, parts),
            )
        walk, period = _periodic(dims)
        if openmp is not None:
            openmp(
                source, target, walk, draws=draws, period=period, constants=constants,
                affine=affine, threads=threads,
            )  # fmt: skip
            return
        self._parallel(
            x.numel(),
            lambda: _layout.apply_drawn(source, target, draws, walk, period, a, b, dropped, affine),
            lambda parts: _layout.apply_drawn_parallel(
                source, target, draws, walk, period, a, b, dropped, affine, parts
            ),
        )

    # -- the draws the reference lowering uses where no fused pass applies ----------------------

    def _keep(self, draw: Draw, threshold: Tensor, mask_shape: Sequence[int]) -> Tensor:
        """The boolean keep mask of ``mask_shape``, drawn by the kernels."""
        return self.keep(draw.rate, draw.seed, draw.step, draw.offset, mask_shape)

    def keep(  # type: ignore[override]  # an instance method: it needs the backend's state
        self, rate: Tensor, seed: Tensor, step: Tensor, offset: int, mask_shape: Sequence[int]
    ) -> Tensor:
        """The boolean keep mask of ``mask_shape`` (used where the fused pass does not apply)."""
        threshold = _threshold(rate)
        mask = _memory.fresh(torch.empty(tuple(mask_shape), dtype=torch.bool))
        if threshold >= rng.THRESHOLD_ONE or mask.numel() == 0:
            return mask.fill_(False)
        target = mask.view(-1).numpy()
        key, limit = _philox_key(seed, step), np.uint16(threshold)

        def fast() -> Tensor:
            self._parallel(
                mask.numel(),
                lambda: _philox.keep_span(target, offset, key, limit),
                lambda parts: _philox.keep(target, offset, key, limit, parts),
            )
            return mask

        return self._guarded(
            fast, lambda: ReferenceBackend.keep(rate, seed, step, offset, mask_shape)
        )

    # -- Gaussian dropout ------------------------------------------------------------------------

    def _normal_op(self, spec: OpSpec, x: Tensor, draw: Draw, out: Tensor | None) -> Tensor:
        """``x * (1 + a * n)`` in one pass, the normals ``n`` computed in the kernel
        (Box-Muller in float32 as :func:`dropkit.rng.uniforms_to_normal`: within a few ulps of
        the reference's, whose ``log``, ``sin`` and ``cos`` are PyTorch's)."""
        rate, seed, step, offset, mask_shape = draw
        target = torch.empty_like(x) if out is None else out

        def reference() -> Tensor:
            return ReferenceBackend.elementwise(self, spec, x, draw, target)

        dims = _layout_plan(x, target, mask_shape)
        if dims is None or step.dim() != 0:
            return reference()
        _memory.fresh(target)
        std = _scalar(spec.constants(rate, compute_dtype(x.dtype))[0], x.dtype)
        zero = std.dtype.type(0.0)

        def fast() -> Tensor:
            self._layout_pass(
                x, target, dims, _philox_key(seed, step), offset, mask_shape, np.uint16(0),
                (std, zero, zero), False, gaussian=True,
            )  # fmt: skip
            return target

        return self._guarded(fast, reference)

    # -- uniform words (normals for the other ops) -----------------------------------------------

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
                lambda: _philox.uniforms_span(target, first_block, key),
                lambda parts: _philox.uniforms(target, first_block, key, parts),
            )
            start = offset - first_block * rng.WORDS_PER_BLOCK
            normals = rng.uniforms_to_normal(uniforms).view(-1)[start : start + numel]
            return normals.reshape(tuple(mask_shape))

        return self._guarded(fast, lambda: ReferenceBackend.normal(seed, step, offset, mask_shape))

    # -- fused ops: residual + dropout(act(x + bias)) and its backward ----------------------------
    # One pass each (see _fused): bias and residual of x's trailing shape are read
    # periodically, never expanded; anything else (another layout, a bias broadcast inside x's
    # shape, a 1-D step) runs on the reference.

    def _bias_act_dropout_add(
        self, spec: OpSpec, x: Tensor, draw: Draw, epilogue: Epilogue
    ) -> Tensor:
        rate, seed, step, offset, _ = draw
        bias, residual, activation = epilogue.bias, epilogue.residual, epilogue.activation

        def slow() -> Tensor:
            return ReferenceBackend._bias_act_dropout_add(self, spec, x, draw, epilogue)

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
                lambda: _fused.forward_span(
                    source, bias_tile, residual_source, target, 0, n, offset, *args
                ),
                lambda parts: _fused.forward(
                    source, bias_tile, residual_source, target, offset, *args, parts
                ),
            )
            return out

        return self._guarded(fast, slow)

    def _bias_act_dropout_backward(
        self, spec: OpSpec, grad: Tensor, draw: Draw, epilogue: Epilogue
    ) -> tuple[Tensor, Tensor]:
        """The bias gradient is summed in :data:`._fused.BIAS_ROW_GROUPS` fixed groups of
        rows, then the groups in order: independent of the thread count, but not PyTorch's
        ``sum`` order (see ``docs/cpu.md`` for the bound)."""

        rate, seed, step, offset, _ = draw
        x, bias, activation = epilogue.input, epilogue.bias, epilogue.activation

        def slow() -> tuple[Tensor, Tensor]:
            return ReferenceBackend._bias_act_dropout_backward(self, spec, grad, draw, epilogue)

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
        groups = min(_fused.BIAS_ROW_GROUPS, rows)
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
                lambda: _fused.backward_serial(*call),
                lambda parts: _fused.backward(*call),
            )
            if bias is None:
                return grad_x, torch.empty(0, dtype=cd)
            period = bias.numel()
            grad_bias = np.empty(period, bias_tile.dtype)
            _fused.sum_groups(partial_sums, period, grad_bias)
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
    threshold = _threshold(rate)
    scale = _constants(BIAS_ACT_DROPOUT_ADD, threshold, compute_dtype(dtype))[0]
    return np.uint32(threshold), _scalar(scale, dtype)
