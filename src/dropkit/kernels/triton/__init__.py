"""dropkit's Triton GPU backend (imported lazily: ``import dropkit`` never imports triton).

``@triton.jit`` kernels live in :mod:`._kernels`; layout planning, constants and launches in
:mod:`._launch`. :mod:`dropkit.kernels` registers :class:`TritonBackend` for CUDA tensors.
"""

from dropkit.kernels.triton._launch import TritonBackend

__all__ = ["TritonBackend"]
