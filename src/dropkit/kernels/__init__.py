"""dropkit's kernels: the op table (:mod:`._spec`), the registered ops (:mod:`._ops`) and the
backends that run them, chosen in one place (:mod:`._dispatch`).

A backend is a :class:`~dropkit.kernels._dispatch.Backend`: ``supports(spec, x)`` and
``run(spec, x, draw, out)``. Every backend produces the same bits as the reference for the same
``(seed, step, offset)``, so the choice changes speed, never results.

Choosing:
    * ``DROPKIT_BACKEND=<name>`` in the environment, or
    * ``with dropkit.kernels.use_backend("<name>"): ...`` (wins over the environment), or
    * ``"auto"`` (default): the fastest registered backend that supports the tensor's device
      and dtype, else the reference.

A forced backend that cannot run a given tensor (e.g. float64 on the Triton path) falls back to
the reference, with a one-time warning, and gives the same result.
"""

from __future__ import annotations

from dropkit.kernels._dispatch import (  # the registry's tables too: tests inspect them
    _BACKENDS,  # noqa: F401
    _LAZY,  # noqa: F401
    _PREFERENCE,  # noqa: F401
    ENV_VAR,
    Backend,
    available_backends,
    backend_for,
    current_backend_name,
    register_backend,
    register_lazy_backend,
    use_backend,
)
from dropkit.kernels._spec import SPECS, Draw, OpSpec
from dropkit.kernels.reference import ReferenceBackend

__all__ = [
    "ENV_VAR",
    "SPECS",
    "Backend",
    "Draw",
    "OpSpec",
    "available_backends",
    "backend_for",
    "current_backend_name",
    "register_backend",
    "register_lazy_backend",
    "use_backend",
]

register_backend(ReferenceBackend())


def _load_triton_backend() -> Backend:
    """Build the Triton backend; raises ImportError (reference fallback) without triton."""
    from dropkit.kernels.triton import TritonBackend

    return TritonBackend()


register_lazy_backend("triton", _load_triton_backend, device_types=("cuda",))


def _load_cpu_backend() -> Backend:
    from dropkit.kernels.cpu import CPUBackend  # imports numba: only on first use

    return CPUBackend()


register_lazy_backend("cpu", _load_cpu_backend, device_types=("cpu",))
