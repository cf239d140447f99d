"""Element storage of the CPU kernels: bit casts, and loads and stores of every dtype (numba
functions only, inlined into the kernels of :mod:`._elementwise`, :mod:`._layout` and
:mod:`._fused`).

numba has neither ``bfloat16`` nor ``float16``, so those tensors travel as ``uint16``
(bfloat16) and ``int16`` (float16) arrays; :func:`load` and :func:`to_storage` convert with the
same rounding as PyTorch (bfloat16: round to nearest even on the bit pattern, as ``c10`` does;
float16: LLVM's ``fptrunc``, IEEE round to nearest even).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import types
from numba.core.extending import intrinsic, overload

__all__ = ["JIT", "bits_from_float32", "float32_from_bits", "load", "to_storage"]

#: The options of every cached kernel of the package.
JIT: dict[str, Any] = {"cache": True, "nogil": True, "boundscheck": False, "fastmath": False}


@intrinsic
def float32_from_bits(typingctx: Any, bits: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


@intrinsic
def bits_from_float32(typingctx: Any, value: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@intrinsic
def _float32_from_half_bits(typingctx: Any, bits: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(types.int16), codegen


@intrinsic
def _half_bits_from_float32(typingctx: Any, value: Any) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return types.int16(types.float32), codegen


def load(stored: Any) -> Any:  # pragma: no cover - replaced by the overload
    raise NotImplementedError


def to_storage(value: Any, like: Any) -> Any:  # pragma: no cover - replaced by the overload
    raise NotImplementedError


@overload(load, inline="always")
def _load_overload(stored: Any) -> Any:
    """A stored element in compute precision (float32, or float64 for float64 storage)."""
    if stored == types.uint16:  # bfloat16 bits: the high half of a float32

        def load_bfloat16(stored: Any) -> Any:
            return float32_from_bits(np.uint32(stored) << np.uint32(16))  # type: ignore[call-arg]

        return load_bfloat16
    if stored == types.int16:  # float16 bits

        def load_float16(stored: Any) -> Any:
            return _float32_from_half_bits(stored)  # type: ignore[call-arg]

        return load_float16

    def load_native(stored: Any) -> Any:
        return stored

    return load_native


@overload(to_storage, inline="always")
def _to_storage_overload(value: Any, like: Any) -> Any:
    """``value`` rounded to the storage type of array ``like``, as PyTorch's ``.to`` rounds."""
    if like.dtype == types.uint16:

        def store_bfloat16(value: Any, like: Any) -> Any:
            # Branch-free (the vectoriser wants straight-line code): a NaN gets its quiet bit
            # set and its low half cleared, so rounding keeps it a NaN.
            bits = np.uint64(bits_from_float32(value))  # type: ignore[call-arg]
            nan = np.uint64((bits & np.uint64(0x7FFFFFFF)) > np.uint64(0x7F800000))
            bits = (bits | (nan * np.uint64(0x400000))) & ~(nan * np.uint64(0xFFFF))
            rounding = ((bits >> np.uint64(16)) & np.uint64(1)) + np.uint64(0x7FFF)
            return np.uint16((bits + rounding) >> np.uint64(16))

        return store_bfloat16
    if like.dtype == types.int16:

        def store_float16(value: Any, like: Any) -> Any:
            return _half_bits_from_float32(value)  # type: ignore[call-arg]

        return store_float16

    def store_native(value: Any, like: Any) -> Any:
        return value

    return store_native
