"""Run the layout pass (:mod:`._layout_kernels`) on PyTorch's own OpenMP thread team.

The same launch as :mod:`._openmp` uses for the fused pass, for the same reason: a numba-pool
launch right after a parallel PyTorch op shares the cores with libgomp's still-spinning workers.
Each OpenMP thread runs piece ``omp_get_thread_num()`` of ``omp_get_num_threads()`` of
:func:`._layout_kernels._drawn_piece` (a mask drawn beforehand) or
:func:`._layout_kernels._chunked_piece` (a full mask drawn chunk by chunk); any split gives the
same bits. :func:`launcher` returns ``None`` where :func:`._openmp.launcher` does (no libgomp
found, or ``DROPKIT_CPU_LAUNCH=numba``): the numba pool is used then.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import carray, cfunc, njit, types

from dropkit.kernels.cpu import _openmp
from dropkit.kernels.cpu._layout_kernels import (
    _chunked_piece,
    _drawn_piece,
    _scratch_size,
)
from dropkit.kernels.cpu._openmp import _call_int_function, _pointer_from_address

__all__ = ["LayoutLauncher", "launcher"]

# Layout of the int64 parameter block.
(
    _CHUNKED, _GAUSSIAN, _X, _X_LEN, _OUT, _OUT_LEN, _DRAWS, _DRAWS_LEN, _DIMS, _DEPTH, _ORDER,
    _ORDER_DEPTH, _PERIOD, _OFFSET, _KEY, _THRESHOLD, _AFFINE, _CONSTANTS, _THREAD_NUM,
    _NUM_THREADS,
) = range(20)  # fmt: skip
_PARAMETERS = 20

_int64_pointer = _pointer_from_address(types.int64)
_uint64_pointer = _pointer_from_address(types.uint64)
_uint8_pointer = _pointer_from_address(types.uint8)
_float64_pointer = _pointer_from_address(types.float64)
_float32_pointer = _pointer_from_address(types.float32)
_bfloat16_pointer = _pointer_from_address(types.uint16)
_float16_pointer = _pointer_from_address(types.int16)


@njit(inline="always")
def _run_piece(x: Any, out: Any, p: Any, draws: Any, a: Any, b: Any, dropped: Any) -> None:
    dims = carray(_int64_pointer(p[_DIMS]), (p[_DEPTH], 4))
    affine = p[_AFFINE] != 0
    thread: int = _call_int_function(p[_THREAD_NUM])  # type: ignore[call-arg]
    threads: int = _call_int_function(p[_NUM_THREADS])
    if p[_CHUNKED] == 0:
        _drawn_piece(x, out, draws, dims, p[_PERIOD], a, b, dropped, affine, threads, thread)
        return
    order = carray(_int64_pointer(p[_ORDER]), (p[_ORDER_DEPTH], 2))
    key = carray(_uint64_pointer(p[_KEY]), 4)
    size = _scratch_size(dims)
    scratch = np.empty(size, draws.dtype)
    ordered = np.empty(size if order.shape[0] else 0, draws.dtype)
    _chunked_piece(
        x, out, dims, order, p[_OFFSET], key, np.uint16(p[_THRESHOLD]), scratch, ordered,
        a, b, dropped, affine, threads, thread,
    )  # fmt: skip


@njit(inline="always")
def _run_thread(x: Any, out: Any, p: Any, a: Any, b: Any, dropped: Any) -> None:
    """This OpenMP thread's piece, with boolean keep draws or float32 normals."""
    if p[_GAUSSIAN] == 0:
        keep = carray(_uint8_pointer(p[_DRAWS]), p[_DRAWS_LEN]).view(np.bool_)
        _run_piece(x, out, p, keep, a, b, dropped)
    else:
        normals = carray(_float32_pointer(p[_DRAWS]), p[_DRAWS_LEN])
        _run_piece(x, out, p, normals, a, b, dropped)


# Module-level bodies (no closures), so that numba's disk cache finds them again.
def _body_float32(data: Any) -> None:
    p = carray(data, _PARAMETERS, np.int64)
    x = carray(_float32_pointer(p[_X]), p[_X_LEN])
    out = carray(_float32_pointer(p[_OUT]), p[_OUT_LEN])
    c = carray(_float64_pointer(p[_CONSTANTS]), 3)
    _run_thread(x, out, p, np.float32(c[0]), np.float32(c[1]), np.float32(c[2]))


def _body_float64(data: Any) -> None:
    p = carray(data, _PARAMETERS, np.int64)
    x = carray(_float64_pointer(p[_X]), p[_X_LEN])
    out = carray(_float64_pointer(p[_OUT]), p[_OUT_LEN])
    c = carray(_float64_pointer(p[_CONSTANTS]), 3)
    _run_thread(x, out, p, c[0], c[1], c[2])


def _body_bfloat16(data: Any) -> None:
    p = carray(data, _PARAMETERS, np.int64)
    x = carray(_bfloat16_pointer(p[_X]), p[_X_LEN])
    out = carray(_bfloat16_pointer(p[_OUT]), p[_OUT_LEN])
    c = carray(_float64_pointer(p[_CONSTANTS]), 3)
    _run_thread(x, out, p, np.float32(c[0]), np.float32(c[1]), np.float32(c[2]))


def _body_float16(data: Any) -> None:
    p = carray(data, _PARAMETERS, np.int64)
    x = carray(_float16_pointer(p[_X]), p[_X_LEN])
    out = carray(_float16_pointer(p[_OUT]), p[_OUT_LEN])
    c = carray(_float64_pointer(p[_CONSTANTS]), 3)
    _run_thread(x, out, p, np.float32(c[0]), np.float32(c[1]), np.float32(c[2]))


_BODIES = {
    np.dtype(np.float32): _body_float32,
    np.dtype(np.float64): _body_float64,
    np.dtype(np.uint16): _body_bfloat16,
    np.dtype(np.int16): _body_float16,
}


class LayoutLauncher:
    """Runs one layout pass on PyTorch's OpenMP team (see the module docstring)."""

    def __init__(self, fused: _openmp.BernoulliLauncher) -> None:
        # The fused pass's launcher found libgomp: share its entry points.
        self._parallel = fused._parallel
        self._thread_num = fused._thread_num
        self._num_threads = fused._num_threads
        self._bodies: dict[np.dtype, Any] = {}

    def _body(self, storage: np.dtype) -> Any:
        if storage not in self._bodies:
            self._bodies[storage] = cfunc(types.void(types.voidptr), cache=True)(_BODIES[storage])
        return self._bodies[storage]

    def __call__(
        self,
        x: np.ndarray,
        out: np.ndarray,
        dims: np.ndarray,
        *,
        draws: np.ndarray,
        period: int = 0,
        chunked: bool = False,
        order: np.ndarray | None = None,
        offset: int = 0,
        key: np.ndarray | None = None,
        threshold: int = 0,
        constants: tuple[Any, Any, Any],
        affine: bool,
        threads: int,
    ) -> None:
        """``draws``: the mask drawn beforehand (boolean or float32), or, with ``chunked``, an
        empty array of the draws' dtype (the kernel draws chunk by chunk with ``key``)."""
        dims = np.ascontiguousarray(dims, dtype=np.int64)
        order = np.ascontiguousarray(
            np.zeros((0, 2), np.int64) if order is None else order, dtype=np.int64
        )
        key = np.ascontiguousarray(np.zeros(4, np.uint64) if key is None else key, np.uint64)
        flat_draws = draws if draws.size else np.empty(1, draws.dtype)
        constants_array = np.array(constants, dtype=np.float64)
        p = np.zeros(_PARAMETERS, dtype=np.int64)
        p[_CHUNKED], p[_GAUSSIAN] = int(chunked), int(draws.dtype == np.float32)
        p[_X], p[_X_LEN] = x.ctypes.data, x.size
        p[_OUT], p[_OUT_LEN] = out.ctypes.data, out.size
        p[_DRAWS], p[_DRAWS_LEN] = flat_draws.ctypes.data, draws.size
        p[_DIMS], p[_DEPTH] = dims.ctypes.data, dims.shape[0]
        p[_ORDER], p[_ORDER_DEPTH] = order.ctypes.data, order.shape[0]
        p[_PERIOD], p[_OFFSET], p[_KEY] = period, offset, key.ctypes.data
        p[_THRESHOLD], p[_AFFINE] = threshold, int(affine)
        p[_CONSTANTS] = constants_array.ctypes.data
        p[_THREAD_NUM], p[_NUM_THREADS] = self._thread_num, self._num_threads
        self._parallel(self._body(x.dtype).address, p.ctypes.data, threads, 0)


_LAUNCHER: list[LayoutLauncher | None] = []


def launcher() -> LayoutLauncher | None:
    """The OpenMP launcher of the layout pass, or ``None`` where the numba pool must be used."""
    if not _LAUNCHER:
        fused = _openmp.launcher()
        _LAUNCHER.append(LayoutLauncher(fused) if fused is not None else None)
    return _LAUNCHER[0]
