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
from numba import cfunc, types

from dropkit.kernels.cpu import _openmp
from dropkit.kernels.cpu._layout_kernels import (
    _AFFINE,
    _BODIES,
    _CHUNKED,
    _CONSTANTS,
    _DEPTH,
    _DIMS,
    _DRAWS,
    _DRAWS_LEN,
    _GAUSSIAN,
    _KEY,
    _NUM_THREADS,
    _OFFSET,
    _ORDER,
    _ORDER_DEPTH,
    _OUT,
    _OUT_LEN,
    _PARAMETERS,
    _PERIOD,
    _THREAD_NUM,
    _THRESHOLD,
    _X,
    _X_LEN,
)

__all__ = ["LayoutLauncher", "launcher"]


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
