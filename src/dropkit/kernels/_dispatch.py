"""Backend selection and the one fallback rule: the only place in dropkit that picks an
implementation.

A backend (:class:`Backend`) says which ops it can run on a tensor (``supports(spec, x)``) and
runs them (``run(spec, x, draw, out)``). Every backend produces the same bits as the reference
for the same ``(seed, step, offset)``, so the choice changes speed, never results.

Choosing:
    * ``DROPKIT_BACKEND=<name>`` in the environment, or
    * ``with dropkit.kernels.use_backend("<name>"): ...`` (wins over the environment), or
    * ``"auto"`` (default): the first registered backend for the tensor's device type that
      supports the op, else the reference.

The fallback rule: an op a forced backend cannot run on a tensor (an unsupported dtype, a
missing optional dependency) runs on the reference, with a one-time warning that points at the
caller's line, and gives the same result.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from dropkit.kernels._spec import Draw, OpSpec

__all__ = [
    "ENV_VAR",
    "Backend",
    "Epilogue",
    "available_backends",
    "backend_for",
    "check_step",
    "current_backend_name",
    "register_backend",
    "register_lazy_backend",
    "run",
    "step_groups",
    "use_backend",
    "warn_at_caller",
]

ENV_VAR = "DROPKIT_BACKEND"
AUTO = "auto"
REFERENCE = "reference"

#: The extra that installs each optional backend's dependency.
EXTRAS = {"cpu": "cpu", "triton": "triton"}


class Epilogue:
    """The fused ops' operands besides the main tensor: ``bias`` and ``residual`` of
    ``residual + dropout(act(x + bias))``, and for its backward the forward's ``input``."""

    __slots__ = ("activation", "bias", "input", "residual")

    def __init__(
        self,
        activation: str,
        bias: Tensor | None,
        residual: Tensor | None = None,
        input: Tensor | None = None,  # the forward's input, named as PyTorch does
    ) -> None:
        self.activation = activation
        self.bias = bias
        self.residual = residual
        self.input = input


@runtime_checkable
class Backend(Protocol):
    """What dispatch needs from a backend.

    ``grouped_step_ops`` names the specs whose 1-D ``step`` (dim-0 groups, one step each) the
    backend takes in one call; for the others :func:`run` calls it group by group.
    """

    name: str
    grouped_step_ops: frozenset[str]

    def supports(self, spec: OpSpec, x: Tensor) -> bool:
        """Whether :meth:`run` can run ``spec`` on ``x`` (device and dtype)."""
        ...

    def run(
        self,
        spec: OpSpec,
        x: Tensor,
        draw: Draw,
        out: Tensor | None = None,
        epilogue: Epilogue | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """``spec`` on ``x`` into ``out`` (a new tensor like ``x`` if None; ``x`` itself for
        in place); returns the result (a pair for the fused backward)."""
        ...


_BACKENDS: dict[str, Backend] = {}
# Backends whose module is imported on first use (keeps triton & co. off the import path).
_LAZY: dict[str, Callable[[], Backend]] = {}
# Per device type, backend names in order of preference for "auto".
_PREFERENCE: dict[str, list[str]] = {}
_forced: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "dropkit_backend", default=None
)
_warned: set[tuple[str, str, str]] = set()
_PACKAGE_DIRS = (str(Path(__file__).resolve().parents[1]), str(Path(torch.__file__).parent))


def warn_at_caller(message: str) -> None:
    """A ``RuntimeWarning`` attributed to the first frame outside dropkit and torch: the user's
    line that called dropkit (a module's ``forward`` goes through ``nn.Module.__call__``)."""
    frame = sys._getframe(1)
    level = 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIRS):
        frame = frame.f_back
        level += 1
    warnings.warn(message, RuntimeWarning, stacklevel=level)


def _prefer(name: str, device_types: tuple[str, ...]) -> None:
    for device_type in device_types:
        names = _PREFERENCE.setdefault(device_type, [])
        if name in names:
            names.remove(name)
        names.insert(0, name)


def register_backend(backend: Backend, *, device_types: tuple[str, ...] = ()) -> None:
    """Register ``backend`` (a :class:`Backend`).

    ``device_types`` lists the device types (``"cuda"``, ``"cpu"``) for which ``"auto"`` prefers
    it over the reference; later registrations are preferred over earlier ones.
    """
    _BACKENDS[backend.name] = backend
    _prefer(backend.name, device_types)


def register_lazy_backend(
    name: str, loader: Callable[[], Backend], *, device_types: tuple[str, ...] = ()
) -> None:
    """Register backend ``name`` whose object ``loader()`` builds on first use.

    If the loader raises ``ImportError`` (an optional dependency is missing), the backend is
    unavailable: ops run on the reference, with a one-time warning.
    """
    _LAZY[name] = loader
    _prefer(name, device_types)


class _Unavailable:
    """Stands in for a backend whose optional dependency is missing: supports nothing."""

    grouped_step_ops: frozenset[str] = frozenset()

    def __init__(self, name: str) -> None:
        self.name = name

    def supports(self, spec: OpSpec, x: Tensor) -> bool:
        return False

    def run(
        self,
        spec: OpSpec,
        x: Tensor,
        draw: Draw,
        out: Tensor | None = None,
        epilogue: Epilogue | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        raise NotImplementedError(f"dropkit backend {self.name!r} is unavailable")


def _resolve(name: str) -> Backend | None:
    """The backend object for ``name``, loading a lazy one; None if there is no such name."""
    backend = _BACKENDS.get(name)
    if backend is not None:
        return backend
    loader = _LAZY.get(name)
    if loader is None:
        return None
    try:
        backend = loader()
    except ImportError as error:
        _LAZY.pop(name)
        install = f"; pip install 'dropkit[{EXTRAS[name]}]' for it" if name in EXTRAS else ""
        warn_at_caller(
            f"dropkit backend {name!r} is unavailable ({error}{install}); using the reference "
            "backend (same results, slower)"
        )
        backend = _Unavailable(name)
    _BACKENDS[name] = backend
    return backend


def available_backends() -> list[str]:
    """Names accepted by :func:`use_backend` and ``DROPKIT_BACKEND``."""
    return [AUTO, *sorted(set(_BACKENDS) | set(_LAZY))]


def _check_name(name: str, source: str) -> str:
    if name not in _BACKENDS and name not in _LAZY and name != AUTO:
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


def _warn_once(backend_name: str, spec: OpSpec, x: Tensor) -> None:
    key = (backend_name, spec.name, f"{x.device.type}/{x.dtype}")
    if key not in _warned:
        _warned.add(key)
        warn_at_caller(
            f"dropkit backend {backend_name!r} cannot run {spec.name} on {x.dtype} tensors on "
            f"{x.device.type}; using the reference backend (same results, slower)"
        )


def backend_for(spec: OpSpec, x: Tensor) -> Backend:
    """The backend that runs ``spec`` on ``x`` under the current selection: the forced one if
    it supports it (else the reference, warning once), or under ``"auto"`` the first of the
    device type's preferred backends that does, else the reference."""
    name = current_backend_name()
    if name != AUTO:
        backend = _resolve(name)
        if backend is not None and backend.supports(spec, x):
            return backend
        if not isinstance(backend, _Unavailable):  # that one has warned already
            _warn_once(name, spec, x)
        return _BACKENDS[REFERENCE]
    for candidate in _PREFERENCE.get(x.device.type, ()):
        backend = _resolve(candidate)
        if backend is not None and backend.supports(spec, x):
            return backend
    return _BACKENDS[REFERENCE]


def check_step(x: Tensor, step: Tensor) -> None:
    """A primitive op's ``step``: 0-d, or 1-D of length ``k`` dividing ``x``'s leading dim."""
    if step.dim() == 0:
        return
    if step.dim() != 1 or step.numel() == 0 or x.dim() == 0 or x.shape[0] % step.numel() != 0:
        raise ValueError(
            f"step must be 0-d or 1-D with a length that divides the input's leading dim, got "
            f"step of shape {tuple(step.shape)} for an input of shape {tuple(x.shape)}"
        )


def step_groups(t: Tensor, step: Tensor) -> list[Tensor]:
    """The ``k`` equal dim-0 groups of ``t`` (views) for a 1-D ``step`` of length ``k``."""
    return list(t.unflatten(0, (step.numel(), t.shape[0] // step.numel())).unbind(0))


def run(
    spec: OpSpec,
    x: Tensor,
    draw: Draw,
    out: Tensor | None = None,
    epilogue: Epilogue | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """``spec`` on ``x`` on the selected backend (see :func:`backend_for`).

    A 1-D ``draw.step`` of length ``k`` (MC sampling, :mod:`dropkit._mc_context`) makes ``x``
    ``k`` equal groups along dim 0, group ``j`` drawn with ``step[j]`` exactly as a separate
    call on that group would draw it (``draw.mask_shape`` is one group's): in one call where the
    backend lists the spec in ``grouped_step_ops``, else here, group by group into ``out``.
    """
    step = draw.step
    check_step(x, step)
    backend = backend_for(spec, x)
    if step.dim() == 0 or spec.name in backend.grouped_step_ops:
        return backend.run(spec, x, draw, out, epilogue)
    target = torch.empty_like(x) if out is None else out
    for part, part_step, part_out in zip(
        step_groups(x, step), step.unbind(), step_groups(target, step), strict=True
    ):
        backend.run(spec, part, draw._replace(step=part_step), part_out, epilogue)
    return target
