"""The CPU fast path (numba). Imported only on first use: see :mod:`dropkit.kernels`."""

from __future__ import annotations

from dropkit.kernels.cpu import _cache_guard

# Before any kernel is loaded from numba's cache: see _cache_guard for why.
_cache_guard.invalidate_if_sources_changed()

from dropkit.kernels.cpu.backend import PARALLEL_MIN_NUMEL, CPUBackend  # noqa: E402

__all__ = ["PARALLEL_MIN_NUMEL", "CPUBackend"]
