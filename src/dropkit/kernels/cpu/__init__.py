"""The CPU fast path (numba). Imported only on first use: see :mod:`dropkit.kernels`."""

from __future__ import annotations

from dropkit.kernels.cpu.backend import PARALLEL_MIN_NUMEL, CPUBackend

__all__ = ["PARALLEL_MIN_NUMEL", "CPUBackend"]
