"""Launching the CPU kernels on threads: numba's pool, or PyTorch's own OpenMP thread team.

Why PyTorch's team: after a parallel PyTorch op, libgomp's worker threads spin-wait for a few
milliseconds before they sleep. A kernel launched on numba's separate pool right after such an
op shares the cores with those spinning threads: on 2 cores, 16M float32 elements took 5.8 ms
after ``out.copy_(x)`` against 3.4 ms after a numba launch. Launching the same numba-compiled
body with ``GOMP_parallel`` from the libgomp that PyTorch loaded hands the work to the spinning
threads themselves, so there is nothing to fight.

A body is a numba ``cfunc`` taking one pointer to a block of int64 parameters (addresses,
sizes, flags) and, per OpenMP thread, running piece ``omp_get_thread_num()`` of
``omp_get_num_threads()`` of a kernel: :func:`._elementwise.bernoulli_piece` for the
elementwise pass (:class:`BernoulliLauncher`), :func:`._layout.drawn_piece` (a mask drawn
beforehand) or :func:`._layout.chunked_piece` (a full mask drawn chunk by chunk) for the layout
pass (:class:`LayoutLauncher`); any split over threads gives the same bits. The libgomp entry
points are called through addresses passed in that block (not ctypes globals), so the bodies
can be cached on disk. Where PyTorch does not use a libgomp that can be found (another OpenMP
runtime, TBB, or ``DROPKIT_CPU_LAUNCH=numba``), :func:`bernoulli_launcher` and
:func:`layout_launcher` return ``None`` and the numba pool is used (:func:`set_threads`).
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.core.extending import intrinsic

from dropkit.kernels.cpu._elementwise import bernoulli_piece
from dropkit.kernels.cpu._layout import chunked_piece, drawn_piece, scratch_size

__all__ = [
    "LAUNCH_ENV",
    "BernoulliLauncher",
    "LayoutLauncher",
    "OpenMPTeam",
    "bernoulli_launcher",
    "layout_launcher",
    "set_threads",
]

#: Set to ``numba`` to launch on numba's pool even where PyTorch's OpenMP team is available.
LAUNCH_ENV = "DROPKIT_CPU_LAUNCH"

#: numba's thread pool when the user has not chosen one. Measured here (2 cores, PyTorch's
#: OpenMP pool beside numba's): 2^22 elements took 2.3-4.1 ms with "workqueue" and 16-20 ms
#: with "omp", whose spinning threads fight PyTorch's own for the same cores.
PREFERRED_THREADING_LAYER = "workqueue"
if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":  # type: ignore[attr-defined]
    numba.config.THREADING_LAYER = PREFERRED_THREADING_LAYER  # type: ignore[attr-defined]


def set_threads(count: int) -> int:
    """Use ``count`` numba threads (clamped to the pool size); returns the count used."""
    count = max(1, min(count, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    numba.set_num_threads(count)
    return count


# -- numba helpers of the OpenMP bodies ------------------------------------------------------------


def _pointer_from_address(pointee: Any) -> Any:
    """An intrinsic turning an int64 address into a ``CPointer(pointee)``."""

    @intrinsic
    def pointer(typingctx: Any, address: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

        return types.CPointer(pointee)(types.int64), codegen

    return pointer


@intrinsic
def _call_int_function(typingctx: Any, address: Any) -> Any:
    """Call the C function ``int f(void)`` at int64 ``address``."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        function_type = ir.FunctionType(ir.IntType(32), [])
        function = builder.inttoptr(args[0], function_type.as_pointer())
        return builder.call(function, [])

    return types.int32(types.int64), codegen


# Module-level (no closures), so that numba's disk cache finds the compiled bodies again.
_int64_pointer = _pointer_from_address(types.int64)
_uint64_pointer = _pointer_from_address(types.uint64)
_uint8_pointer = _pointer_from_address(types.uint8)
_float64_pointer = _pointer_from_address(types.float64)
_float32_pointer = _pointer_from_address(types.float32)
_bfloat16_pointer = _pointer_from_address(types.uint16)
_float16_pointer = _pointer_from_address(types.int16)


# -- the OpenMP bodies of the elementwise pass -----------------------------------------------------

# Layout of the int64 parameter block of the elementwise pass.
(
    _B_X, _B_OUT, _B_NUMEL, _B_OFFSET, _B_KEYS, _B_GROUPS, _B_THRESHOLD, _B_AFFINE, _B_INPLACE,
    _B_CONSTANTS, _B_THREAD_NUM, _B_NUM_THREADS,
) = range(12)  # fmt: skip
_B_PARAMETERS = 12


@njit(inline="always")
def _bernoulli_thread(x: Any, out: Any, parameters: Any, a: Any, b: Any, dropped: Any) -> None:
    """This OpenMP thread's share of the pieces (as :func:`._elementwise.bernoulli_groups`)."""
    groups = parameters[_B_GROUPS]
    keys = carray(_uint64_pointer(parameters[_B_KEYS]), (groups, 4))
    threshold = np.uint16(parameters[_B_THRESHOLD])
    affine = parameters[_B_AFFINE] != 0
    inplace = parameters[_B_INPLACE] != 0
    thread: int = _call_int_function(parameters[_B_THREAD_NUM])  # type: ignore[call-arg]
    threads: int = _call_int_function(parameters[_B_NUM_THREADS])
    parts = (threads + groups - 1) // groups
    for piece in range(thread, groups * parts, threads):
        bernoulli_piece(
            x, out, parameters[_B_OFFSET], keys, threshold, a, b, dropped, affine, inplace,
            parts, x.size // groups, piece,
        )  # fmt: skip


def _bernoulli_body_float32(data: Any) -> None:
    parameters = carray(data, _B_PARAMETERS, np.int64)
    numel = parameters[_B_NUMEL]
    x = carray(_float32_pointer(parameters[_B_X]), numel)
    out = carray(_float32_pointer(parameters[_B_OUT]), numel)
    c = carray(_float64_pointer(parameters[_B_CONSTANTS]), 3)
    _bernoulli_thread(x, out, parameters, np.float32(c[0]), np.float32(c[1]), np.float32(c[2]))


def _bernoulli_body_float64(data: Any) -> None:
    parameters = carray(data, _B_PARAMETERS, np.int64)
    numel = parameters[_B_NUMEL]
    x = carray(_float64_pointer(parameters[_B_X]), numel)
    out = carray(_float64_pointer(parameters[_B_OUT]), numel)
    c = carray(_float64_pointer(parameters[_B_CONSTANTS]), 3)
    _bernoulli_thread(x, out, parameters, c[0], c[1], c[2])


def _bernoulli_body_bfloat16(data: Any) -> None:
    parameters = carray(data, _B_PARAMETERS, np.int64)
    numel = parameters[_B_NUMEL]
    x = carray(_bfloat16_pointer(parameters[_B_X]), numel)
    out = carray(_bfloat16_pointer(parameters[_B_OUT]), numel)
    c = carray(_float64_pointer(parameters[_B_CONSTANTS]), 3)
    _bernoulli_thread(x, out, parameters, np.float32(c[0]), np.float32(c[1]), np.float32(c[2]))


def _bernoulli_body_float16(data: Any) -> None:
    parameters = carray(data, _B_PARAMETERS, np.int64)
    numel = parameters[_B_NUMEL]
    x = carray(_float16_pointer(parameters[_B_X]), numel)
    out = carray(_float16_pointer(parameters[_B_OUT]), numel)
    c = carray(_float64_pointer(parameters[_B_CONSTANTS]), 3)
    _bernoulli_thread(x, out, parameters, np.float32(c[0]), np.float32(c[1]), np.float32(c[2]))


# Storage dtype -> the OpenMP region body of the elementwise pass (compiled on first use).
_BERNOULLI_BODIES: dict[np.dtype, Callable[[Any], None]] = {
    np.dtype(np.float32): _bernoulli_body_float32,
    np.dtype(np.float64): _bernoulli_body_float64,
    np.dtype(np.uint16): _bernoulli_body_bfloat16,
    np.dtype(np.int16): _bernoulli_body_float16,
}


# -- the OpenMP bodies of the layout pass ----------------------------------------------------------

# Layout of the int64 parameter block of the layout pass.
(
    _L_CHUNKED, _L_GAUSSIAN, _L_X, _L_X_LEN, _L_OUT, _L_OUT_LEN, _L_DRAWS, _L_DRAWS_LEN, _L_DIMS,
    _L_DEPTH, _L_ORDER, _L_ORDER_DEPTH, _L_PERIOD, _L_OFFSET, _L_KEY, _L_THRESHOLD, _L_AFFINE,
    _L_CONSTANTS, _L_THREAD_NUM, _L_NUM_THREADS,
) = range(20)  # fmt: skip
_L_PARAMETERS = 20


@njit(inline="always")
def _layout_piece(x: Any, out: Any, p: Any, draws: Any, a: Any, b: Any, dropped: Any) -> None:
    dims = carray(_int64_pointer(p[_L_DIMS]), (p[_L_DEPTH], 4))
    affine = p[_L_AFFINE] != 0
    thread: int = _call_int_function(p[_L_THREAD_NUM])  # type: ignore[call-arg]
    threads: int = _call_int_function(p[_L_NUM_THREADS])
    if p[_L_CHUNKED] == 0:
        drawn_piece(x, out, draws, dims, p[_L_PERIOD], a, b, dropped, affine, threads, thread)
        return
    order = carray(_int64_pointer(p[_L_ORDER]), (p[_L_ORDER_DEPTH], 2))
    key = carray(_uint64_pointer(p[_L_KEY]), 4)
    size = scratch_size(dims)
    scratch = np.empty(size, draws.dtype)
    ordered = np.empty(size if order.shape[0] else 0, draws.dtype)
    chunked_piece(
        x, out, dims, order, p[_L_OFFSET], key, np.uint16(p[_L_THRESHOLD]), scratch, ordered,
        a, b, dropped, affine, threads, thread,
    )  # fmt: skip


@njit(inline="always")
def _layout_thread(x: Any, out: Any, p: Any, a: Any, b: Any, dropped: Any) -> None:
    """This OpenMP thread's piece, with boolean keep draws or float32 normals."""
    if p[_L_GAUSSIAN] == 0:
        keep = carray(_uint8_pointer(p[_L_DRAWS]), p[_L_DRAWS_LEN]).view(np.bool_)
        _layout_piece(x, out, p, keep, a, b, dropped)
    else:
        normals = carray(_float32_pointer(p[_L_DRAWS]), p[_L_DRAWS_LEN])
        _layout_piece(x, out, p, normals, a, b, dropped)


def _layout_body_float32(data: Any) -> None:
    p = carray(data, _L_PARAMETERS, np.int64)
    x = carray(_float32_pointer(p[_L_X]), p[_L_X_LEN])
    out = carray(_float32_pointer(p[_L_OUT]), p[_L_OUT_LEN])
    c = carray(_float64_pointer(p[_L_CONSTANTS]), 3)
    _layout_thread(x, out, p, np.float32(c[0]), np.float32(c[1]), np.float32(c[2]))


def _layout_body_float64(data: Any) -> None:
    p = carray(data, _L_PARAMETERS, np.int64)
    x = carray(_float64_pointer(p[_L_X]), p[_L_X_LEN])
    out = carray(_float64_pointer(p[_L_OUT]), p[_L_OUT_LEN])
    c = carray(_float64_pointer(p[_L_CONSTANTS]), 3)
    _layout_thread(x, out, p, c[0], c[1], c[2])


def _layout_body_bfloat16(data: Any) -> None:
    p = carray(data, _L_PARAMETERS, np.int64)
    x = carray(_bfloat16_pointer(p[_L_X]), p[_L_X_LEN])
    out = carray(_bfloat16_pointer(p[_L_OUT]), p[_L_OUT_LEN])
    c = carray(_float64_pointer(p[_L_CONSTANTS]), 3)
    _layout_thread(x, out, p, np.float32(c[0]), np.float32(c[1]), np.float32(c[2]))


def _layout_body_float16(data: Any) -> None:
    p = carray(data, _L_PARAMETERS, np.int64)
    x = carray(_float16_pointer(p[_L_X]), p[_L_X_LEN])
    out = carray(_float16_pointer(p[_L_OUT]), p[_L_OUT_LEN])
    c = carray(_float64_pointer(p[_L_CONSTANTS]), 3)
    _layout_thread(x, out, p, np.float32(c[0]), np.float32(c[1]), np.float32(c[2]))


_LAYOUT_BODIES: dict[np.dtype, Callable[[Any], None]] = {
    np.dtype(np.float32): _layout_body_float32,
    np.dtype(np.float64): _layout_body_float64,
    np.dtype(np.uint16): _layout_body_bfloat16,
    np.dtype(np.int16): _layout_body_float16,
}


# -- launchers -------------------------------------------------------------------------------------


def _torch_libgomp() -> ctypes.CDLL | None:
    """PyTorch's libgomp, if PyTorch runs on OpenMP and the library is loaded in this process."""
    if not sys.platform.startswith("linux"):
        return None
    if "ATen parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        with open("/proc/self/maps") as maps:
            loaded = {line.split()[-1] for line in maps if "libgomp" in line}
    except OSError:
        return None
    torch_lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    for path in sorted(glob.glob(os.path.join(torch_lib, "libgomp*.so*"))):
        if os.path.realpath(path) in {os.path.realpath(p) for p in loaded}:
            return ctypes.CDLL(path)
    return None


def _address(function: Any) -> int:
    address = ctypes.cast(function, ctypes.c_void_p).value
    if address is None:
        raise OSError("libgomp function without an address")
    return address


@dataclass(frozen=True)
class OpenMPTeam:
    """The libgomp entry points a launch needs: ``GOMP_parallel`` (a ctypes function) and the
    addresses of ``omp_get_thread_num`` and ``omp_get_num_threads`` (called by the bodies)."""

    parallel: Any
    thread_num: int
    num_threads: int

    @classmethod
    def of(cls, libgomp: ctypes.CDLL) -> OpenMPTeam:
        parallel = libgomp.GOMP_parallel
        parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        parallel.restype = None
        return cls(
            parallel, _address(libgomp.omp_get_thread_num), _address(libgomp.omp_get_num_threads)
        )


def _compiled(
    bodies: dict[np.dtype, Callable[[Any], None]], compiled: dict[np.dtype, Any], storage: np.dtype
) -> Any:
    """The ``cfunc`` of ``bodies[storage]``, compiled (or loaded from the cache) on first use."""
    if storage not in compiled:
        compiled[storage] = cfunc(types.void(types.voidptr), cache=True)(bodies[storage])
    return compiled[storage]


class BernoulliLauncher:
    """Runs the elementwise pass over ``keys.shape[0]`` groups on PyTorch's OpenMP team."""

    def __init__(self, team: OpenMPTeam) -> None:
        self._team = team
        self._bodies: dict[np.dtype, Any] = {}

    def __call__(
        self,
        x: np.ndarray,
        out: np.ndarray,
        offset: int,
        keys: np.ndarray,
        threshold: Any,
        a: Any,
        b: Any,
        dropped: Any,
        affine: bool,
        inplace: bool,
        threads: int,
    ) -> None:
        """``out = keep ? x * a (+ b) : dropped`` as :func:`._elementwise.bernoulli_groups`;
        ``a``, ``b``, ``dropped`` travel as float64 (exact for float32 values)."""
        body = _compiled(_BERNOULLI_BODIES, self._bodies, x.dtype)
        keys = np.ascontiguousarray(keys, dtype=np.uint64).reshape(-1, 4)
        constants = np.array([a, b, dropped], dtype=np.float64)
        p = np.zeros(_B_PARAMETERS, dtype=np.int64)
        p[_B_X], p[_B_OUT] = x.ctypes.data, out.ctypes.data
        p[_B_NUMEL], p[_B_OFFSET] = x.size, offset
        p[_B_KEYS], p[_B_GROUPS] = keys.ctypes.data, keys.shape[0]
        p[_B_THRESHOLD] = int(threshold)
        p[_B_AFFINE], p[_B_INPLACE] = int(affine), int(inplace)
        p[_B_CONSTANTS] = constants.ctypes.data
        p[_B_THREAD_NUM], p[_B_NUM_THREADS] = self._team.thread_num, self._team.num_threads
        self._team.parallel(body.address, p.ctypes.data, threads, 0)


class LayoutLauncher:
    """Runs one layout pass on PyTorch's OpenMP team."""

    def __init__(self, team: OpenMPTeam) -> None:
        self._team = team
        self._bodies: dict[np.dtype, Any] = {}

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
        body = _compiled(_LAYOUT_BODIES, self._bodies, x.dtype)
        dims = np.ascontiguousarray(dims, dtype=np.int64)
        order = np.ascontiguousarray(
            np.zeros((0, 2), np.int64) if order is None else order, dtype=np.int64
        )
        key = np.ascontiguousarray(np.zeros(4, np.uint64) if key is None else key, np.uint64)
        flat_draws = draws if draws.size else np.empty(1, draws.dtype)
        constants_array = np.array(constants, dtype=np.float64)
        p = np.zeros(_L_PARAMETERS, dtype=np.int64)
        p[_L_CHUNKED], p[_L_GAUSSIAN] = int(chunked), int(draws.dtype == np.float32)
        p[_L_X], p[_L_X_LEN] = x.ctypes.data, x.size
        p[_L_OUT], p[_L_OUT_LEN] = out.ctypes.data, out.size
        p[_L_DRAWS], p[_L_DRAWS_LEN] = flat_draws.ctypes.data, draws.size
        p[_L_DIMS], p[_L_DEPTH] = dims.ctypes.data, dims.shape[0]
        p[_L_ORDER], p[_L_ORDER_DEPTH] = order.ctypes.data, order.shape[0]
        p[_L_PERIOD], p[_L_OFFSET], p[_L_KEY] = period, offset, key.ctypes.data
        p[_L_THRESHOLD], p[_L_AFFINE] = threshold, int(affine)
        p[_L_CONSTANTS] = constants_array.ctypes.data
        p[_L_THREAD_NUM], p[_L_NUM_THREADS] = self._team.thread_num, self._team.num_threads
        self._team.parallel(body.address, p.ctypes.data, threads, 0)


_TEAM: list[OpenMPTeam | None] = []
_BERNOULLI_LAUNCHER: list[BernoulliLauncher | None] = []
_LAYOUT_LAUNCHER: list[LayoutLauncher | None] = []


def _openmp_team() -> OpenMPTeam | None:
    """PyTorch's OpenMP team, or ``None`` where the numba pool must be used (found once)."""
    if not _TEAM:
        found = None
        if os.environ.get(LAUNCH_ENV, "openmp") != "numba":
            try:
                libgomp = _torch_libgomp()
                found = OpenMPTeam.of(libgomp) if libgomp is not None else None
            except (OSError, AttributeError):  # not loadable, or an entry point is missing
                found = None
        _TEAM.append(found)
    return _TEAM[0]


def bernoulli_launcher() -> BernoulliLauncher | None:
    """The OpenMP launcher of the elementwise pass, or ``None`` where the numba pool must be
    used."""
    if not _BERNOULLI_LAUNCHER:
        team = _openmp_team()
        _BERNOULLI_LAUNCHER.append(BernoulliLauncher(team) if team is not None else None)
    return _BERNOULLI_LAUNCHER[0]


def layout_launcher() -> LayoutLauncher | None:
    """The OpenMP launcher of the layout pass, or ``None`` where the numba pool must be used."""
    if not _LAYOUT_LAUNCHER:
        team = _openmp_team()
        _LAYOUT_LAUNCHER.append(LayoutLauncher(team) if team is not None else None)
    return _LAYOUT_LAUNCHER[0]
