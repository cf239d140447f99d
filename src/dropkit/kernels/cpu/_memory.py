"""Fresh output tensors backed by transparent huge pages where the kernel allows it.

Why: a large new tensor is fresh memory (glibc maps allocations of 32 MiB or more with
``mmap``, and they are unmapped again when freed), so the first write to each 4 KiB page takes
a page fault. For a 64 MiB output that is 16384 faults, and they, not the arithmetic, dominate
an allocating op: ``torch.mul(x, 2.0, out=fresh)`` on 16M float32 elements took 34-40 ms with
4 KiB pages and 8 ms after ``madvise(MADV_HUGEPAGE)`` (32 faults of 2 MiB), on 2 cores with
transparent huge pages in ``madvise`` mode (the common default). PyTorch has the same knob for
all its CPU allocations (``THP_MEM_ALLOC_ENABLE=1``); dropkit applies it only to the outputs its
own kernels are about to write in full, so no page is made resident that would not be anyway.

The advice covers the 2 MiB-aligned interior of the tensor's bytes only (never memory outside
it), is skipped below :data:`HUGE_PAGES_MIN_BYTES`, and changes no value: with transparent huge
pages off (``never``), on other systems, or with ``DROPKIT_CPU_HUGE_PAGES=0``, it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

from torch import Tensor

__all__ = ["HUGE_PAGES_ENV", "HUGE_PAGES_MIN_BYTES", "advise_huge_pages", "fresh"]

#: Set to ``0`` to leave dropkit's outputs on the system's default pages.
HUGE_PAGES_ENV = "DROPKIT_CPU_HUGE_PAGES"
#: Outputs smaller than this are left alone: they hold at most one aligned huge page, and glibc
#: usually serves them from memory it has already touched (measured: no faults below 32 MiB in
#: a loop of equal allocations), where the advice cannot help.
HUGE_PAGES_MIN_BYTES = 4 << 20
HUGE_PAGE_BYTES = 2 << 20
_MADV_HUGEPAGE = 14  # Linux, every architecture
_THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"

#: Whether :func:`fresh` advises (read once from the environment; tests switch it).
enabled = os.environ.get(HUGE_PAGES_ENV, "1") != "0"


def _find_madvise() -> Any:
    """libc's ``madvise`` where transparent huge pages can be had (Linux, mode not ``never``)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open(_THP_MODE) as modes:
            if "[never]" in modes.read():
                return None
    except OSError:  # a kernel without transparent huge pages
        return None
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


_madvise = _find_madvise()


def advise_huge_pages(t: Tensor) -> bool:
    """Ask the kernel for huge pages under the 2 MiB-aligned interior of ``t``'s storage;
    whether the advice was given (and accepted). Values are never changed."""
    nbytes = t.untyped_storage().nbytes()
    if _madvise is None or t.device.type != "cpu" or nbytes < HUGE_PAGES_MIN_BYTES:
        return False
    start = t.untyped_storage().data_ptr()
    first = -(-start // HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES
    last = (start + nbytes) // HUGE_PAGE_BYTES * HUGE_PAGE_BYTES
    return last > first and _madvise(first, last - first, _MADV_HUGEPAGE) == 0


def fresh(out: Tensor) -> Tensor:
    """``out`` (a new, untouched tensor that a kernel is about to write in full), advised onto
    huge pages where :func:`advise_huge_pages` can give them."""
    if enabled:
        advise_huge_pages(out)
    return out
