"""What every dropkit dropout module shares: a rate buffer, a 64-bit seed and a step counter."""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from dropkit import rng
from dropkit._checkpoint import claim_step
from dropkit.functional._checks import check_p, check_state_entries

__all__ = ["DropoutModule", "shortest_float32_decimal"]


def shortest_float32_decimal(value: float) -> float:
    """The shortest decimal that rounds to the same float32 as ``value`` (``0.1`` for
    ``0.10000000149011612``): the rate a user wrote, recovered from a float32 buffer."""
    target = struct.unpack("f", struct.pack("f", value))[0]
    for digits in range(1, 10):
        candidate = float(f"{target:.{digits}g}")
        if struct.unpack("f", struct.pack("f", candidate))[0] == target:
            return candidate
    return target


def _read_rate(module: DropoutModule) -> float:
    cached: float = module.__dict__.get("_p", 0.0)
    if torch.compiler.is_compiling() or module.rate.is_meta:
        return cached
    stored = float(module.rate)
    if struct.unpack("f", struct.pack("f", cached))[0] == stored:
        return cached
    module.__dict__["_p"] = shortest_float32_decimal(stored)
    return module.__dict__["_p"]


def _check_loaded_state(module: DropoutModule, state_dict: Any, prefix: str, *_: Any) -> None:
    # Before the copy into the buffers: a rate of 2.0, a step of -7 or a seed of 1.7 (which
    # copy_ would truncate to 1) is refused with the key named.
    check_state_entries(state_dict, prefix, allow_rate_one=module.allow_rate_one)


class DropoutModule(nn.Module):
    """Base class of dropkit's dropout modules.

    Holds three buffers, all in ``state_dict`` so a resumed run draws exactly the masks it would
    have drawn:

    * ``rate`` — float32 0-d tensor, what ``forward`` passes to the op (a tensor, so changing the
      rate never recompiles). It keeps float32 under ``model.half()``/``.to(bfloat16)``, so the
      rate never silently changes. ``module.p`` reads and writes it as a Python float and reads
      back exactly the float written (``Dropout(0.1).p == 0.1``, as in torch); after the buffer
      itself is written (``load_state_dict``, ``rate.fill_``) ``p`` is the shortest decimal that
      rounds to the float32 value. Under ``torch.compile``/``torch.export`` ``p`` is the Python
      float last written (no data-dependent read of the buffer), so code that reads
      ``module.p`` in ``forward`` (Hugging Face, timm) traces with no graph break.
    * ``seed`` — int64 0-d tensor holding 64 bits, drawn at construction from PyTorch's default
      generator (``torch.manual_seed`` makes it reproducible) unless ``seed=`` is given.
    * ``step`` — int64 0-d tensor, incremented on every training-mode forward.

    ``state_dict`` interchange with ``torch.nn``: a state dict with none of a module's three
    buffers (a ``torch.nn.Dropout`` checkpoint) loads ``strict=True`` and keeps the module's
    rate, seed and step; :func:`dropkit.surgery.torch_state_dict` gives a state dict without
    them, which loads ``strict=True`` into the plain torch model.

    Subclasses implement ``forward`` as one call into :mod:`dropkit.functional`, passing
    ``self.rate``, ``self.seed`` and ``self.next_step()``.
    """

    rate: Tensor
    seed: Tensor
    step: Tensor
    #: Whether the rate may be 1 (Gaussian dropout's variance is infinite there).
    allow_rate_one: bool = True

    #: The buffers that make a dropkit module's state (not in a ``torch.nn`` dropout's).
    dropkit_buffers: tuple[str, ...] = ("rate", "seed", "step")

    def __init__(self, p: float = 0.5, inplace: bool = False, *, seed: int | None = None) -> None:
        # nn.Module.__init__ directly: drop-ins that also derive from a torch.nn dropout class
        # (for isinstance) must not run its __init__, which would set p before the buffers exist.
        nn.Module.__init__(self)
        p = check_p(p, allow_one=self.allow_rate_one)
        self.inplace = bool(inplace)
        self._p = p
        self.register_buffer("rate", torch.tensor(p, dtype=torch.float32))
        self.register_buffer("seed", rng.seed_tensor(rng.draw_seed() if seed is None else seed))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.register_load_state_dict_pre_hook(_check_loaded_state)

    @property
    def p(self) -> float:
        """The drop rate as a Python float: exactly the float last written, while the ``rate``
        buffer still holds it (see the class docstring)."""
        return _read_rate(self)

    @p.setter
    def p(self, value: float) -> None:
        value = check_p(value, allow_one=self.allow_rate_one)
        with torch.no_grad():
            self.rate.fill_(value)
        self._p = value

    def _load_from_state_dict(
        self,
        state_dict: Mapping[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        own = [prefix + name for name in self.dropkit_buffers if name in self._buffers]
        if own and not any(key in state_dict for key in own):
            # A torch.nn dropout's checkpoint: it has no rate/seed/step; keep this module's.
            for key in own:
                if key in missing_keys:
                    missing_keys.remove(key)

    @property
    def p_eff(self) -> float:
        """The rate the Bernoulli mask realises: ``round(p * 65536) / 65536``."""
        return rng.p_eff(self.p)

    def reset_seed(self, seed: int | None = None) -> None:
        """Set a new seed (drawn from PyTorch's default generator if None) and restart step 0."""
        new_seed = rng.seed_tensor(rng.draw_seed() if seed is None else seed)
        with torch.no_grad():
            self.seed.copy_(new_seed)
            self.step.zero_()

    def next_step(self) -> Tensor:
        """The step for this call (a copy), advancing the counter when training; inside
        :func:`dropkit.checkpoint`'s recomputation, the step the checkpointed forward used."""
        if not self.training:
            return self.step
        return claim_step(self.step)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Any:
        # Move the rate with the module but never cast it: a float32 rate of 0.1 becomes 0.0999
        # in float16, which would silently change the mask.
        rate = self.rate
        result = super()._apply(fn, recurse)
        if self.rate.dtype != rate.dtype:
            self._buffers["rate"] = rate.to(device=self.rate.device)
        return result

    def extra_repr(self) -> str:
        parts = [f"p={self.p:g}"]
        if self.inplace:
            parts.append("inplace=True")
        return ", ".join(parts)
