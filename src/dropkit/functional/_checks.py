"""Argument checks shared by every functional op: one place, one error text each.

Rule for hot paths: Python ints and floats are checked by value always (cheap, no device
work); tensors are checked by dtype and shape always, and by value only where reading the
value is free (a CPU tensor, in eager mode) -- never a host sync on a CUDA tensor, never inside
torch.compile. Cold paths (constructors, ``load_state_dict``) check every value.

Every op validates all of its arguments before it short-circuits (``p = 0``, eval), so a bad
seed is bad at ``p = 0`` too. This module imports nothing from dropkit at import time, so
:mod:`dropkit.rng` can use it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from dropkit import rng
from dropkit.kernels._dispatch import note_host_rate

__all__ = [
    "as_rate",
    "check_bool",
    "check_dim",
    "check_distinct_dims",
    "check_draw_args",
    "check_floating",
    "check_int",
    "check_noise_shape",
    "check_nonnegative_int",
    "check_offset",
    "check_p",
    "check_positive_finite",
    "check_rate_tensor",
    "check_seed",
    "check_shape",
    "check_state_entries",
    "check_step",
    "check_training",
    "resolve_noise_shape",
    "resolve_seed_step",
]

_UINT64_END = 2**64
_INT64_END = 2**63


def _free_to_read(t: Tensor) -> bool:
    """Whether reading ``t``'s value costs no host sync (CPU, eager, not fake/meta)."""
    return t.device.type == "cpu" and not torch.compiler.is_compiling()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_p(p: object, name: str = "p", *, allow_one: bool = True) -> float:
    """Validate a Python rate and return it as a float; raise naming ``name`` otherwise."""
    upper = "1]" if allow_one else "1)"
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"{name} must be a float in [0, {upper}, got {type(p).__name__} {p!r}")
    value = float(p)
    if math.isnan(value) or not 0.0 <= value <= 1.0 or (value == 1.0 and not allow_one):
        raise ValueError(f"{name} must be in [0, {upper}, got {value}")
    return value


def check_rate_tensor(rate: Tensor, name: str = "p", allow_one: bool = True) -> float | None:
    """Validate a rate tensor: one real element (torch accepts an integer 0-d ``p`` too); its
    value too where that is free. Returns the value where it was read (CPU, eager), else None."""
    if rate.dtype == torch.bool or rate.is_complex() or rate.numel() != 1:
        raise TypeError(
            f"{name} must be a float or a one-element real tensor, got a {rate.dtype} tensor "
            f"of shape {tuple(rate.shape)}"
        )
    # Reading the value needs a host sync: only do it where it is free (CPU, eager).
    if _free_to_read(rate):
        return check_p(float(rate), name, allow_one=allow_one)
    return None


def as_rate(p: float | Tensor, x: Tensor, name: str = "p", *, allow_one: bool = True) -> Tensor:
    """The rate as a 0-d float32 tensor on ``x``'s device, validated. On the CPU the value is
    recorded for the backend (:func:`dropkit.kernels._dispatch.note_host_rate`): the call reads
    it on the host once at most."""
    if isinstance(p, Tensor):
        value = check_rate_tensor(p, name, allow_one)
        rate = rng._as_0d(p, torch.float32, x.device)
        if value is not None and rate.device.type == "cpu":
            note_host_rate(rate, value if p.dtype == torch.float32 else _float32(value))
        return rate
    value = check_p(p, name, allow_one=allow_one)
    rate = torch.tensor(value, dtype=torch.float32, device=x.device)
    if rate.device.type == "cpu" and not torch.compiler.is_compiling():
        note_host_rate(rate, _float32(value))
    return rate


def _float32(value: float) -> float:
    """``value`` rounded to float32 (what the rate tensor holds)."""
    return float(struct.unpack("f", struct.pack("f", value))[0])


def check_floating(x: object, name: str = "input") -> Tensor:
    """Raise unless ``x`` is a floating-point tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float16, bfloat16, float32, float64), "
            f"got {x.dtype}"
        )
    return x


def check_dim(dim: object, ndim: int, name: str) -> int:
    """Normalise a possibly negative dimension index; raise naming ``name`` if out of range."""
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{name} must be an int, got {type(dim).__name__} {dim!r}")
    if not -ndim <= dim < ndim:
        raise ValueError(f"{name} must be in [{-ndim}, {ndim - 1}] for a {ndim}-D input, got {dim}")
    return dim % ndim


def check_offset(offset: object) -> int:
    """A mask element index: an int in ``[0, 2**63)`` (the kernels take it as int64)."""

    # Messages are built only on error: formatting a SymInt breaks torch.compile's graph.
    def message() -> str:
        return (
            f"offset must be a non-negative int below 2**63 (a mask element index), got {offset!r}"
        )

    if not _is_int(offset):
        raise TypeError(message())
    if not 0 <= offset < _INT64_END:  # type: ignore[operator]
        raise ValueError(message())
    return offset  # type: ignore[return-value]


def check_int(value: object, name: str) -> int:
    """An int (not a bool): a dimension index whose range depends on the input's rank."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    return value  # type: ignore[return-value]


def check_nonnegative_int(value: object, name: str) -> int:
    """An int >= 0 (a count or an index)."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int >= 0, got {value!r}")
    if value < 0:  # type: ignore[operator]
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return value  # type: ignore[return-value]


def check_module(model: object, name: str = "model") -> None:
    """A ``torch.nn.Module`` (what model-level functions walk)."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")


def check_seed(seed: object) -> None:
    """A 64-bit seed: a Python int in ``[0, 2**64)`` or a one-element int64/int32 tensor."""
    if isinstance(seed, Tensor):
        if seed.dtype not in (torch.int64, torch.int32) or seed.numel() != 1:
            raise TypeError(
                f"seed must be an int or a one-element int64 tensor, got a {seed.dtype} tensor "
                f"of shape {tuple(seed.shape)}"
            )
        return
    if not _is_int(seed):
        raise TypeError(f"seed must be an int in [0, 2**64 - 1] or an int64 tensor, got {seed!r}")
    if not 0 <= seed < _UINT64_END:  # type: ignore[operator]
        raise ValueError(f"seed must be an integer in [0, {_UINT64_END - 1}] (64 bits), got {seed}")


def check_step(step: object) -> None:
    """A step counter: a Python int in ``[0, 2**63)`` or an int64/int32 tensor holding values
    >= 0 (checked by value only where that is free: CPU, eager)."""
    if isinstance(step, Tensor):
        if step.dtype not in (torch.int64, torch.int32) or step.numel() != 1:
            raise TypeError(
                f"step must be an int or a one-element int64 tensor, got a {step.dtype} tensor "
                f"of shape {tuple(step.shape)}"
            )
        if _free_to_read(step) and not step.is_meta and int(step) < 0:
            raise ValueError(f"step must be non-negative, got a tensor holding {int(step)}")
        return
    if not _is_int(step):
        raise TypeError(f"step must be a non-negative int or an int64 tensor, got {step!r}")
    if not 0 <= step < _INT64_END:  # type: ignore[operator]
        raise ValueError(f"step must be an integer in [0, {_INT64_END - 1}] (64 bits), got {step}")


def check_training(training: object) -> bool:
    """``training`` must be a real bool: ``training='no'`` would otherwise train."""
    if training is not True and training is not False:
        raise TypeError(
            f"training must be a bool (True or False), got {type(training).__name__} {training!r}"
        )
    return training


def check_bool(value: object, name: str) -> bool:
    if value is not True and value is not False:
        raise TypeError(
            f"{name} must be a bool (True or False), got {type(value).__name__} {value!r}"
        )
    return value


def check_draw_args(training: object, seed: object, step: object, offset: object) -> int:
    """Validate the arguments every drawing op shares (before any short-circuit at ``p = 0``
    or in eval); return the offset. ``seed=None`` is fine (drawn later, only if needed)."""
    check_training(training)
    if seed is not None:
        check_seed(seed)
    check_step(step)
    return check_offset(offset)


def check_positive_finite(value: object, name: str) -> float:
    """A finite float > 0 (a scale factor)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a finite float > 0, got {type(value).__name__} {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite float > 0, got {value!r}")
    return float(value)


def check_shape(shape: object, name: str = "shape") -> tuple[int, ...]:
    """A shape: a sequence of ints >= 0 (SymInts pass under tracing)."""

    def message() -> str:
        return f"{name} must be a sequence of ints >= 0, got {shape!r}"

    if not isinstance(shape, (Sequence, torch.Size)) or isinstance(shape, str):
        raise TypeError(
            f"{name} must be a sequence of ints >= 0, got {type(shape).__name__} {shape!r}"
        )
    for size in shape:
        if isinstance(size, torch.SymInt):
            continue
        if not _is_int(size):
            raise TypeError(message())
        if size < 0:
            raise ValueError(message())
    return tuple(shape)


def check_noise_shape(
    noise_shape: object, name: str = "noise_shape"
) -> tuple[int | None, ...] | None:
    """Keras-style ``noise_shape`` on its own (before an input is seen): None or an iterable
    whose entries are None or ints >= 1; returned as a tuple."""
    if noise_shape is None:
        return None
    allowed = f"{name} must be None or a sequence of ints >= 1 or None"
    if isinstance(noise_shape, (str, bytes, Tensor)) or not hasattr(noise_shape, "__iter__"):
        raise TypeError(f"{allowed}, got {type(noise_shape).__name__} {noise_shape!r}")
    entries = tuple(noise_shape)
    for size in entries:
        if size is None or isinstance(size, torch.SymInt):
            continue
        if not _is_int(size):
            raise TypeError(
                f"{allowed}: its entries must be ints or None, got {type(size).__name__} "
                f"{size!r} in {entries}"
            )
        if size < 1:
            raise ValueError(f"{allowed}: its entries must be positive, got {entries}")
    return entries


def check_distinct_dims(first: int, second: int | None, names: tuple[str, str]) -> None:
    """Two normalised dimension indices that must differ (e.g. channel and batch)."""
    if second is not None and first == second:
        raise ValueError(
            f"{names[0]} and {names[1]} must be different dimensions, got both {first}"
        )


def check_state_floats(
    state_dict: Mapping[str, Any],
    prefix: str,
    *,
    positive: Sequence[str] = (),
    finite: Sequence[str] = (),
) -> None:
    """Float buffers of a state dict about to be loaded that must be finite (and > 0 for those
    in ``positive``), e.g. a temperature: cold path, values are read even on a GPU."""
    for name in (*positive, *finite):
        entry = state_dict.get(prefix + name)
        if not isinstance(entry, Tensor):
            continue
        key, need = prefix + name, "a finite float > 0" if name in positive else "a finite float"
        if not entry.is_floating_point() or entry.numel() != 1:
            raise TypeError(
                f"state_dict entry {key!r} must be {need} (a one-element floating tensor), got "
                f"a {entry.dtype} tensor of shape {tuple(entry.shape)}"
            )
        value = float(entry)
        if not math.isfinite(value) or (name in positive and value <= 0):
            raise ValueError(f"state_dict entry {key!r} must be {need}, got {value}")


def check_state_entries(
    state_dict: Mapping[str, Any], prefix: str, *, allow_rate_one: bool = True
) -> None:
    """A dropout module's ``rate``/``seed``/``step`` entries of a state dict about to be
    loaded: cold path, so values are read even on a GPU."""
    rate = state_dict.get(prefix + "rate")
    if isinstance(rate, Tensor):
        key = prefix + "rate"
        if not rate.is_floating_point() or rate.numel() != 1:
            raise TypeError(
                f"state_dict entry {key!r} must be a one-element floating tensor, got a "
                f"{rate.dtype} tensor of shape {tuple(rate.shape)}"
            )
        value = float(rate)
        upper = "1]" if allow_rate_one else "1)"
        if math.isnan(value) or not 0.0 <= value <= 1.0 or (value == 1.0 and not allow_rate_one):
            raise ValueError(
                f"state_dict entry {key!r} must be a drop rate in [0, {upper}, got {value}"
            )
    for name in ("seed", "step"):
        entry = state_dict.get(prefix + name)
        if not isinstance(entry, Tensor):
            continue
        key = prefix + name
        if entry.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8) or (
            entry.numel() != 1
        ):
            raise TypeError(
                f"state_dict entry {key!r} must be a one-element integer tensor, got a "
                f"{entry.dtype} tensor of shape {tuple(entry.shape)}"
            )
        if name == "step" and int(entry) < 0:
            raise ValueError(f"state_dict entry {key!r} must be >= 0, got {int(entry)}")


def resolve_noise_shape(
    noise_shape: Sequence[int | None] | None, shape: Sequence[int]
) -> list[int]:
    """Keras-style ``noise_shape`` to a concrete mask shape broadcastable to ``shape``.

    ``None`` entries take the input's size; every other entry must equal it or be 1.
    """
    if noise_shape is None:
        return [int(s) for s in shape]
    check_noise_shape(noise_shape)
    if len(noise_shape) != len(shape) or any(
        n is not None and (isinstance(n, bool) or not isinstance(n, int) or n not in (1, s))
        for n, s in zip(noise_shape, shape, strict=False)
    ):
        raise ValueError(
            f"noise_shape {tuple(noise_shape)} does not broadcast to the input shape "
            f"{tuple(shape)}: it needs {len(shape)} entries, each None, 1 or the input's size"
        )
    return [int(s) if n is None else int(n) for n, s in zip(noise_shape, shape, strict=True)]


def resolve_seed_step(
    seed: rng.SeedLike | None, step: rng.StepLike, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Seed and step as 0-d int64 tensors on ``device``; ``seed=None`` draws one from PyTorch's
    default generator."""
    seed_value = rng.draw_seed() if seed is None else seed
    return rng.seed_tensor(seed_value, device), rng.step_tensor(step, device)
