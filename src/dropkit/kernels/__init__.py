"""Backend selection: the only place in dropkit that picks an implementation.

A backend is an object with the primitive ops of
:class:`~dropkit.kernels.reference.ReferenceBackend` and a ``supports(x)`` predicate. Every
backend produces the same bits as the reference for the same ``(seed, step, offset)``, so the
choice changes speed, never results.

Choosing:
    * ``DROPKIT_BACKEND=<name>`` in the environment, or
    * ``with dropkit.kernels.use_backend("<name>"): ...`` (wins over the environment), or
    * ``"auto"`` (default): the fastest registered backend that supports the tensor's device
      and dtype, else the reference.

A forced backend that cannot run a given tensor (e.g. float64 on the Triton path) falls back to
the reference, with a one-time warning, and gives the same result.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from torch import Tensor

from dropkit.kernels.reference import ReferenceBackend

__all__ = [
    "ENV_VAR",
    "available_backends",
    "backend_for",
    "current_backend_name",
    "register_backend",
    "register_lazy_backend",
    "use_backend",
]

ENV_VAR = "DROPKIT_BACKEND"
AUTO = "auto"

_REFERENCE = ReferenceBackend()
_BACKENDS: dict[str, Any] = {_REFERENCE.name: _REFERENCE}
# Backends whose module is imported on first use (keeps triton & co. off the import path).
_LAZY: dict[str, Callable[[], Any]] = {}
# Per device type, backend names in order of preference for "auto".
_PREFERENCE: dict[str, list[str]] = {}
_forced: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "dropkit_backend", default=None
)
_warned: set[tuple[str, str, str]] = set()


def register_backend(backend: Any, *, device_types: tuple[str, ...] = ()) -> None:
    """Register ``backend`` (an object with ``name``, ``supports`` and the primitive ops).

    ``device_types`` lists the device types (``"cuda"``, ``"cpu"``) for which ``"auto"`` prefers
    it over the reference; later registrations are preferred over earlier ones.
    """
    _BACKENDS[backend.name] = backend
    for device_type in device_types:
        names = _PREFERENCE.setdefault(device_type, [])
        if backend.name in names:
            names.remove(backend.name)
        names.insert(0, backend.name)


def register_lazy_backend(
    name: str, loader: Callable[[], Any], *, device_types: tuple[str, ...] = ()
) -> None:
    """Register backend ``name`` whose object ``loader()`` builds on first use.

    If the loader raises ``ImportError`` (an optional dependency is missing), the backend is
    unavailable: ops run on the reference, with a one-time warning.
    """
    _LAZY[name] = loader
    for device_type in device_types:
        names = _PREFERENCE.setdefault(device_type, [])
        if name in names:
            names.remove(name)
        names.insert(0, name)


#: The extra of ``pyproject.toml`` that brings a lazy backend's dependency.
_EXTRAS = {"triton": "triton", "cpu": "cpu"}

_DROPKIT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside dropkit and torch: a fallback warning
    points at the user's line (``model(x)``, ``F.dropout(...)``), whatever the call depth."""
    import torch

    internal = (_DROPKIT_DIR, os.path.dirname(torch.__file__))
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(internal):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def _resolve(name: str) -> Any:
    """The backend object for ``name``, loading a lazy one; None if it cannot be loaded."""
    if name in _BACKENDS:
        return _BACKENDS[name]
    loader = _LAZY.get(name)
    if loader is None:
        return None
    try:
        backend = loader()
    except ImportError as error:
        _LAZY.pop(name)
        extra = _EXTRAS.get(name)
        hint = f": pip install 'dropkit[{extra}]'" if extra else ""
        warnings.warn(
            f"dropkit backend {name!r} is unavailable ({error}); using the reference backend "
            f"(same results, slower){hint}",
            RuntimeWarning,
            stacklevel=_caller_stacklevel(),
        )
        _BACKENDS[name] = _Unavailable(name)
        return _BACKENDS[name]
    _BACKENDS[name] = backend
    return backend


class _Unavailable:
    """Stands in for a backend whose optional dependency is missing: supports nothing."""

    def __init__(self, name: str) -> None:
        self.name = name

    def supports(self, x: Tensor) -> bool:
        return False


def available_backends() -> list[str]:
    """Names accepted by :func:`use_backend` and ``DROPKIT_BACKEND``."""
    return [AUTO, *sorted(set(_BACKENDS) | set(_LAZY))]


def _check_name(name: str, source: str) -> str:
    if name not in available_backends():
        raise ValueError(f"{source} must be one of {available_backends()}, got {name!r}")
    return name


def current_backend_name() -> str:
    """The forced backend name (context manager first, then the environment), or ``"auto"``."""
    forced = _forced.get()
    if forced is not None:
        return forced
    env = os.environ.get(ENV_VAR, "").strip()
    return _check_name(env, f"environment variable {ENV_VAR}") if env else AUTO


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Force backend ``name`` (or ``"auto"``) inside the ``with`` block.

    Example:
        >>> import torch, dropkit
        >>> with dropkit.kernels.use_backend("reference"):
        ...     y = dropkit.functional.dropout(torch.ones(4), 0.5, seed=0)
    """
    token = _forced.set(_check_name(name, "backend"))
    try:
        yield
    finally:
        _forced.reset(token)


def _warn_once(backend_name: str, op: str, x: Tensor) -> None:
    key = (backend_name, op, f"{x.device.type}/{x.dtype}")
    if key not in _warned:
        _warned.add(key)
        warnings.warn(
            f"dropkit backend {backend_name!r} cannot run {op} on {x.dtype} tensors on "
            f"{x.device.type}; using the reference backend (same results, slower)",
            RuntimeWarning,
            stacklevel=_caller_stacklevel(),
        )


def _can_run(backend: Any, op: str, x: Tensor) -> bool:
    return hasattr(backend, op) and bool(backend.supports(x))


def backend_for(x: Tensor, op: str) -> Any:
    """The backend that runs primitive ``op`` on ``x`` under the current selection.

    A backend may implement a subset of the ops; the others run on the reference.
    """
    name = current_backend_name()
    if name != AUTO:
        backend = _resolve(name)
        if _can_run(backend, op, x):
            return backend
        if not isinstance(backend, _Unavailable):  # that one has warned already
            _warn_once(name, op, x)
        return _REFERENCE
    for candidate in _PREFERENCE.get(x.device.type, []):
        backend = _resolve(candidate)
        if backend is not None and _can_run(backend, op, x):
            return backend
    return _REFERENCE


def _load_triton_backend() -> Any:
    """Build the Triton backend; raises ImportError (reference fallback) without triton."""
    from dropkit.kernels.triton import TritonBackend

    return TritonBackend()


register_lazy_backend("triton", _load_triton_backend, device_types=("cuda",))


def _load_cpu_backend() -> Any:
    from dropkit.kernels.cpu import CPUBackend  # imports numba: only on first use

    return CPUBackend()


register_lazy_backend("cpu", _load_cpu_backend, device_types=("cpu",))
