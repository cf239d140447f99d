"""What every dropkit dropout module shares: a rate buffer, a 64-bit seed and a step counter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from dropkit import rng
from dropkit._checkpoint import claim_step
from dropkit.functional._checks import check_p, check_state_entries

__all__ = ["DropoutModule"]


def _check_loaded_state(module: DropoutModule, state_dict: Any, prefix: str, *_: Any) -> None:
    # Before the copy into the buffers: a rate of 2.0, a step of -7 or a seed of 1.7 (which
    # copy_ would truncate to 1) is refused with the key named.
    check_state_entries(state_dict, prefix, allow_rate_one=module.allow_rate_one)


class DropoutModule(nn.Module):
    """Base class of dropkit's dropout modules.

    Holds three buffers, all in ``state_dict`` so a resumed run draws exactly the masks it would
    have drawn:

    * ``rate`` — float32 0-d tensor; ``module.p`` reads and writes it as a Python float. It keeps
      float32 under ``model.half()``/``.to(bfloat16)``, so the rate never silently changes.
    * ``seed`` — int64 0-d tensor holding 64 bits, drawn at construction from PyTorch's default
      generator (``torch.manual_seed`` makes it reproducible) unless ``seed=`` is given.
    * ``step`` — int64 0-d tensor, incremented on every training-mode forward.

    Subclasses implement ``forward`` as one call into :mod:`dropkit.functional`, passing
    ``self.rate``, ``self.seed`` and ``self.next_step()``.
    """

    rate: Tensor
    seed: Tensor
    step: Tensor
    #: Whether the rate may be 1 (Gaussian dropout's variance is infinite there).
    allow_rate_one: bool = True

    def __init__(self, p: float = 0.5, inplace: bool = False, *, seed: int | None = None) -> None:
        super().__init__()
        p = check_p(p, allow_one=self.allow_rate_one)
        self.inplace = bool(inplace)
        self.register_buffer("rate", torch.tensor(p, dtype=torch.float32))
        self.register_buffer("seed", rng.seed_tensor(rng.draw_seed() if seed is None else seed))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.register_load_state_dict_pre_hook(_check_loaded_state)

    @property
    def p(self) -> float:
        """The drop rate as a Python float (reads the ``rate`` buffer)."""
        return float(self.rate)

    @p.setter
    def p(self, value: float) -> None:
        value = check_p(value, allow_one=self.allow_rate_one)
        with torch.no_grad():
            self.rate.fill_(value)

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
