"""Run the fused Bernoulli kernel on PyTorch's own OpenMP thread team.

Why: after a parallel PyTorch op, libgomp's worker threads spin-wait for a few milliseconds
before they sleep. A kernel launched on numba's separate pool right after such an op shares the
cores with those spinning threads: on 2 cores, 16M float32 elements took 5.8 ms after
``out.copy_(x)`` against 3.4 ms after a numba launch. Launching the same numba-compiled body
with ``GOMP_parallel`` from the libgomp that PyTorch loaded hands the work to the spinning
threads themselves, so there is nothing to fight.

The body is a numba ``cfunc`` taking one pointer to a block of int64 parameters (addresses,
sizes, flags) and, per OpenMP thread, running the same :func:`._kernels._bernoulli_piece` as the
numba pool does; any split over threads gives the same bits. The libgomp entry points are called
through addresses passed in that block (not ctypes globals), so the ``cfunc`` can be cached on
disk. Where PyTorch does not use a libgomp that can be found (another OpenMP runtime, TBB, or
``DROPKIT_CPU_LAUNCH=numba``), :func:`launcher` returns ``None`` and the numba pool is used.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from typing import Any

import numpy as np
import torch
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.core.extending import intrinsic

from dropkit.kernels.cpu._kernels import _bernoulli_piece

__all__ = ["BernoulliLauncher", "launcher"]

#: Set to ``numba`` to launch on numba's pool even where PyTorch's OpenMP team is available.
LAUNCH_ENV = "DROPKIT_CPU_LAUNCH"

# Layout of the int64 parameter block.
_X, _OUT, _NUMEL, _OFFSET, _KEYS, _GROUPS, _THRESHOLD, _AFFINE, _INPLACE, _CONSTANTS = range(10)
_THREAD_NUM, _NUM_THREADS = 10, 11
_PARAMETERS = 12


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
_keys_pointer = _pointer_from_address(types.uint64)
_float64_pointer = _pointer_from_address(types.float64)
_float32_pointer = _pointer_from_address(types.float32)
_bfloat16_pointer = _pointer_from_address(types.uint16)
_float16_pointer = _pointer_from_address(types.int16)


@njit(inline="always")
def _run_thread(x: Any, out: Any, parameters: Any, a: Any, b: Any, dropped: Any) -> None:
    """This OpenMP thread's share of the pieces (as :func:`._kernels.bernoulli_groups`)."""
    groups = parameters[_GROUPS]
    keys = carray(_keys_pointer(parameters[_KEYS]), (groups, 4))
    threshold = np.uint16(parameters[_THRESHOLD])
    affine = parameters[_AFFINE] != 0
    inplace = parameters[_INPLACE] != 0
    thread: int = _call_int_function(parameters[_THREAD_NUM])  # type: ignore[call-arg]
    threads: int = _call_int_function(parameters[_NUM_THREADS])
    parts = (threads + groups - 1) // groups
    for piece in range(thread, groups * parts, threads):
        _bernoulli_piece(
            x, out, parameters[_OFFSET], keys, threshold, a, b, dropped, affine, inplace,
            parts, x.size // groups, piece,
        )  # fmt: skip


def _body_float32(data: Any) -> None:
    parameters = carray(data, _PARAMETERS, np.int64)
    numel = parameters[_NUMEL]
    x = carray(_float32_pointer(parameters[_X]), numel)
    out = carray(_float32_pointer(parameters[_OUT]), numel)
    c = carray(_float64_pointer(parameters[_CONSTANTS]), 3)
    _run_thread(x, out, parameters, np.float32(c[0]), np.float32(c[1]), np.float32(c[2]))


def _body_float64(data: Any) -> None:
    parameters = carray(data, _PARAMETERS, np.int64)
    numel = parameters[_NUMEL]
    x = carray(_float64_pointer(parameters[_X]), numel)
    out = carray(_float64_pointer(parameters[_OUT]), numel)
    c = carray(_float64_pointer(parameters[_CONSTANTS]), 3)
    _run_thread(x, out, parameters, c[0], c[1], c[2])


def _body_bfloat16(data: Any) -> None:
    parameters = carray(data, _PARAMETERS, np.int64)
    numel = parameters[_NUMEL]
    x = carray(_bfloat16_pointer(parameters[_X]), numel)
    out = carray(_bfloat16_pointer(parameters[_OUT]), numel)
    c = carray(_float64_pointer(parameters[_CONSTANTS]), 3)
    _run_thread(x, out, parameters, np.float32(c[0]), np.float32(c[1]), np.float32(c[2]))


def _body_float16(data: Any) -> None:
    parameters = carray(data, _PARAMETERS, np.int64)
    numel = parameters[_NUMEL]
    x = carray(_float16_pointer(parameters[_X]), numel)
    out = carray(_float16_pointer(parameters[_OUT]), numel)
    c = carray(_float64_pointer(parameters[_CONSTANTS]), 3)
    _run_thread(x, out, parameters, np.float32(c[0]), np.float32(c[1]), np.float32(c[2]))


# Storage dtype -> the OpenMP region body (compiled on first use).
_BODIES = {
    np.dtype(np.float32): _body_float32,
    np.dtype(np.float64): _body_float64,
    np.dtype(np.uint16): _body_bfloat16,
    np.dtype(np.int16): _body_float16,
}


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


class BernoulliLauncher:
    """Runs the fused Bernoulli pass over ``keys.shape[0]`` groups on PyTorch's OpenMP team."""

    def __init__(self, libgomp: ctypes.CDLL) -> None:
        self._parallel = libgomp.GOMP_parallel
        self._parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        self._parallel.restype = None
        self._thread_num = _address(libgomp.omp_get_thread_num)
        self._num_threads = _address(libgomp.omp_get_num_threads)
        self._bodies: dict[np.dtype, Any] = {}

    def _body(self, storage: np.dtype) -> Any:
        if storage not in self._bodies:
            self._bodies[storage] = cfunc(types.void(types.voidptr), cache=True)(_BODIES[storage])
        return self._bodies[storage]

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
        """``out = keep ? x * a (+ b) : dropped`` as :func:`._kernels.bernoulli_groups`; ``a``,
        ``b``, ``dropped`` travel as float64 (exact for float32 values)."""
        body = self._body(x.dtype)
        keys = np.ascontiguousarray(keys, dtype=np.uint64).reshape(-1, 4)
        constants = np.array([a, b, dropped], dtype=np.float64)
        parameters = np.zeros(_PARAMETERS, dtype=np.int64)
        parameters[_X], parameters[_OUT] = x.ctypes.data, out.ctypes.data
        parameters[_NUMEL], parameters[_OFFSET] = x.size, offset
        parameters[_KEYS], parameters[_GROUPS] = keys.ctypes.data, keys.shape[0]
        parameters[_THRESHOLD] = int(threshold)
        parameters[_AFFINE], parameters[_INPLACE] = int(affine), int(inplace)
        parameters[_CONSTANTS] = constants.ctypes.data
        parameters[_THREAD_NUM], parameters[_NUM_THREADS] = self._thread_num, self._num_threads
        self._parallel(body.address, parameters.ctypes.data, threads, 0)


_LAUNCHER: list[BernoulliLauncher | None] = []


def launcher() -> BernoulliLauncher | None:
    """The OpenMP launcher, or ``None`` where the numba pool must be used (found once)."""
    if not _LAUNCHER:
        found = None
        if os.environ.get(LAUNCH_ENV, "openmp") != "numba":
            try:
                libgomp = _torch_libgomp()
                found = BernoulliLauncher(libgomp) if libgomp is not None else None
            except (OSError, AttributeError):  # not loadable, or an entry point is missing
                found = None
        _LAUNCHER.append(found)
    return _LAUNCHER[0]
