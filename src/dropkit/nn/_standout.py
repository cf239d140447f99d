"""Standout / adaptive dropout (Ba & Frey 2013): keep probabilities from a belief network."""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from dropkit.functional._learned import (
    check_dataset_size,
    check_finite,
    check_init_rate,
    standout,
)
from dropkit.nn._learned import LearnedDropoutModule

__all__ = ["Standout"]


class Standout(LearnedDropoutModule):
    """A layer whose hidden units are dropped with probabilities computed from its input.

    For the layer's pre-activation ``a = layer(x)`` and hidden units ``h = activation(a)``,
    unit ``j`` is kept with probability ``π_j``, from a belief network over the same input:

    * shared weights (the paper's main variant): ``π = σ(α a + β)``, the layer's own weights
      scaled by ``α`` and shifted by ``β`` (hyperparameters; the belief network is not trained
      apart from the layer, so ``a`` enters it detached);
    * ``own_weights=True``: ``π = σ(belief(x))``, ``belief`` a copy of ``layer`` initialised to
      ``α W``, ``α b + β`` and trained with the model.

    Training outputs ``m ⊙ h`` with ``m_j ~ Bernoulli(π_j)`` (``u_j < π_j``, ``u`` uniform from
    the counter-based stream); the gradient reaches the belief network by the straight-through
    rule (the mask's gradient is that of its mean ``π``). Inference outputs the expectation
    ``π ⊙ h``, as the paper does at test time. Standout adds no term to the objective
    (:meth:`regularization` is 0). Autograd holds ``h`` and the mask plus ``π`` (output-sized;
    the product's gradient needs them).

    Without a ``layer``, Standout is a dropout layer on its input ``h`` (``a = h``, no
    activation): ``π = σ(α h + β)``. Placed after a ReLU this is the paper's shared-weights
    standout of the layer before it: ``σ(α relu(a) + β)`` differs from ``σ(α a + β)`` only
    where ``h = 0``, whose output is 0 either way. This is how ``surgery.convert(model,
    technique="standout")`` and ``dropkit compare`` put it at a model's dropout sites.

    Args:
        layer: a module mapping the input to pre-activations (``nn.Linear``, ``nn.Conv2d``...);
            None: the input itself.
        activation: applied to the pre-activations (``nn.ReLU()`` when None and a ``layer`` is
            given, the identity without a layer).
        alpha, beta: scale and shift of the belief network (finite floats).
        init_p: set ``β = log((1 - init_p) / init_p)`` instead: a unit with pre-activation 0
            starts with drop rate ``init_p``, in (0, 1) (``beta`` must then stay 0).
        own_weights: give the belief network its own (trained) weights.
        seed: 64-bit seed of the uniforms.

    Shape:
        - Input: whatever ``layer`` takes; output: ``layer``'s.

    Example:
        >>> import torch, dropkit
        >>> layer = dropkit.nn.Standout(torch.nn.Linear(8, 4), seed=0)
        >>> layer(torch.randn(16, 8)).shape
        torch.Size([16, 4])

    References:
        Ba & Frey, "Adaptive dropout for training deep neural networks", NeurIPS 2013.
    """

    technique = "standout"
    alpha: Tensor
    beta: Tensor
    mean_keep: Tensor

    def __init__(
        self,
        layer: nn.Module | None = None,
        activation: nn.Module | None = None,
        *,
        alpha: float = 1.0,
        beta: float = 0.0,
        init_p: float | None = None,
        own_weights: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        if layer is not None and not isinstance(layer, nn.Module):
            raise TypeError(f"layer must be a torch.nn.Module or None, got {type(layer).__name__}")
        self.layer = nn.Identity() if layer is None else layer
        if activation is None:
            activation = nn.Identity() if layer is None else nn.ReLU()
        self.activation = activation
        alpha, beta = check_finite(alpha, "alpha"), check_finite(beta, "beta")
        if init_p is not None:
            if beta != 0.0:
                raise TypeError("Standout: pass beta or init_p, not both (init_p sets beta)")
            init_p = check_init_rate(init_p)
            beta = math.log1p(-init_p) - math.log(init_p)
        self.register_buffer("alpha", torch.tensor(alpha))
        self.register_buffer("beta", torch.tensor(beta))
        # Until the first sampling forward, the keep probability of a unit at pre-activation 0.
        self.register_buffer("mean_keep", torch.sigmoid(torch.tensor(beta)))
        self.belief: nn.Module | None = None
        if own_weights and layer is None:
            raise ValueError("own_weights=True needs a layer whose weights the belief net copies")
        if own_weights:
            belief = copy.deepcopy(self.layer)
            with torch.no_grad():
                for name, param in belief.named_parameters():
                    param.mul_(alpha)
                    if name.rsplit(".", 1)[-1].startswith("bias"):
                        param.add_(beta)
            self.belief = belief

    def keep_logit(self, x: Tensor, pre_activation: Tensor) -> Tensor:
        """``α a + β`` (shared weights) or ``belief(x)`` (own weights)."""
        if self.belief is not None:
            return self.belief(x)
        return self.alpha * pre_activation.detach() + self.beta

    def forward(self, x: Tensor) -> Tensor:
        pre_activation = self.layer(x)
        logit = self.keep_logit(x, pre_activation)
        if self.sampling:
            with torch.no_grad():
                self.mean_keep.copy_(torch.sigmoid(logit.detach()).float().mean())
        h = self.activation(pre_activation)
        return standout(h, logit, self.sampling, seed=self.seed, step=self.next_step())

    def regularization(self, dataset_size: int) -> Tensor:
        check_dataset_size(dataset_size)
        return torch.zeros((), device=self.seed.device)

    def drop_rates(self) -> Tensor:
        """The mean drop rate ``1 - π`` over the last sampling forward (before one: ``1 - σ(β)``,
        the rate of a unit at pre-activation 0)."""
        return 1.0 - self.mean_keep.detach()

    def extra_repr(self) -> str:
        own = ", own_weights=True" if self.belief is not None else ""
        return f"alpha={float(self.alpha):g}, beta={float(self.beta):g}{own}, p={self.p:.4g}"
