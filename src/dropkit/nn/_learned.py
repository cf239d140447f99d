"""What every learned-rate module shares: seed and step buffers, MC sampling, a regulariser and
a report of its current rates."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dropkit import rng
from dropkit._checkpoint import claim_step

__all__ = ["LearnedDropoutModule"]


class LearnedDropoutModule(nn.Module):
    """Base class of the modules whose dropout rates are parameters learned with the model
    (:class:`ConcreteDropout`, :class:`VariationalDropoutLinear`, :class:`LinearSVDO`,
    :class:`Standout`, ...).

    Like every :class:`~dropkit.nn.DropoutModule` it holds two int64 buffers in ``state_dict``:
    ``seed`` (64 bits, drawn from PyTorch's default generator at construction unless ``seed=``
    is given) and ``step`` (advanced on each sampling forward), so noise is a pure function of
    ``(seed, step, element index)``. The rates themselves are parameters of the subclass.

    These modules wrap or are layers with weights, so they are not ``DropoutModule``\\ s (a
    rate buffer would be a second, stale copy of the learned rate): :func:`dropkit.mc_mode`
    reaches them through :meth:`set_mc_mode`, sampling while the rest of the model is in eval
    mode.

    Subclasses implement :meth:`regularization` (their term of the training objective, per
    training example) and :meth:`drop_rates` (the current rates, as drop probabilities).
    """

    seed: Tensor
    step: Tensor
    #: Name used by :func:`dropkit.learned_rates` and the technique registry.
    technique: str = "learned"

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__()
        self.register_buffer("seed", rng.seed_tensor(rng.draw_seed() if seed is None else seed))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.mc = False

    @property
    def sampling(self) -> bool:
        """Whether a forward draws noise: in training mode or in MC mode."""
        return self.training or self.mc

    def set_mc_mode(self, enabled: bool) -> bool:
        """Keep sampling in eval mode (see :func:`dropkit.mc_mode`); returns the old setting."""
        previous, self.mc = self.mc, bool(enabled)
        return previous

    def next_step(self) -> Tensor:
        """The step of this call (a copy), advancing the counter when sampling."""
        if not self.sampling:
            return self.step
        return claim_step(self.step)

    def reset_seed(self, seed: int | None = None) -> None:
        """Set a new seed (drawn from PyTorch's default generator if None) and restart step 0."""
        new_seed = rng.seed_tensor(rng.draw_seed() if seed is None else seed)
        with torch.no_grad():
            self.seed.copy_(new_seed)
            self.step.zero_()

    def regularization(self, dataset_size: int) -> Tensor:
        """This module's term of the loss, per training example (``dataset_size`` = N)."""
        raise NotImplementedError

    def drop_rates(self) -> Tensor:
        """The current drop probabilities (detached), in the shape the module learns them."""
        raise NotImplementedError

    def feature_drop_rates(self) -> Tensor | None:
        """One drop probability per input feature, where the module learns one (else None)."""
        return None

    @property
    def p(self) -> float:
        """The mean learned drop rate as a Python float (read-only: it is learned)."""
        return float(self.drop_rates().float().mean())
