"""Argument checks shared by every functional op: one place, one error text each."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from dropkit import rng

__all__ = [
    "as_rate",
    "check_dim",
    "check_floating",
    "check_offset",
    "check_p",
    "resolve_noise_shape",
    "resolve_seed_step",
]


def check_p(p: object, name: str = "p", *, allow_one: bool = True) -> float:
    """Validate a Python rate and return it as a float; raise naming ``name`` otherwise."""
    upper = "1]" if allow_one else "1)"
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"{name} must be a float in [0, {upper}, got {type(p).__name__} {p!r}")
    value = float(p)
    if math.isnan(value) or not 0.0 <= value <= 1.0 or (value == 1.0 and not allow_one):
        raise ValueError(f"{name} must be in [0, {upper}, got {value}")
    return value


def _check_rate_tensor(rate: Tensor, name: str, allow_one: bool) -> None:
    if rate.dtype == torch.bool or rate.is_complex() or rate.numel() != 1:
        raise TypeError(
            f"{name} must be a float or a one-element real tensor, got a {rate.dtype} tensor "
            f"of shape {tuple(rate.shape)}"
        )
    # Reading the value needs a host sync: only do it where it is free (CPU, eager).
    if rate.device.type == "cpu" and not torch.compiler.is_compiling():
        check_p(float(rate), name, allow_one=allow_one)


def as_rate(p: float | Tensor, x: Tensor, name: str = "p", *, allow_one: bool = True) -> Tensor:
    """The rate as a 0-d float32 tensor on ``x``'s device, validated."""
    if isinstance(p, Tensor):
        _check_rate_tensor(p, name, allow_one)
        return rng._as_0d(p, torch.float32, x.device)
    return torch.tensor(check_p(p, name, allow_one=allow_one), dtype=torch.float32, device=x.device)


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
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(
            f"offset must be a non-negative int (a mask element index), got {offset!r}"
        )
    return offset


def resolve_noise_shape(
    noise_shape: Sequence[int | None] | None, shape: Sequence[int]
) -> list[int]:
    """Keras-style ``noise_shape`` to a concrete mask shape broadcastable to ``shape``.

    ``None`` entries take the input's size; every other entry must equal it or be 1.
    """
    if noise_shape is None:
        return [int(s) for s in shape]
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
