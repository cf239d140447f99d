"""Standout / adaptive dropout (Ba & Frey 2013): keep probabilities from a belief network."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from dropkit.functional._learned import check_dataset_size, check_finite, standout
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

    Args:
        layer: a module mapping the input to pre-activations (``nn.Linear``, ``nn.Conv2d``...).
        activation: applied to the pre-activations (``nn.ReLU()`` when None).
        alpha, beta: scale and shift of the belief network (finite floats).
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
        layer: nn.Module,
        activation: nn.Module | None = None,
        *,
        alpha: float = 1.0,
        beta: float = 0.0,
        own_weights: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        if not isinstance(layer, nn.Module):
            raise TypeError(f"layer must be a torch.nn.Module, got {type(layer).__name__}")
        self.layer = layer
        self.activation = nn.ReLU() if activation is None else activation
        alpha, beta = check_finite(alpha, "alpha"), check_finite(beta, "beta")
        self.register_buffer("alpha", torch.tensor(alpha))
        self.register_buffer("beta", torch.tensor(beta))
        self.register_buffer("mean_keep", torch.tensor(float("nan")))
        self.belief: nn.Module | None = None
        if own_weights:
            self.belief = copy.deepcopy(layer)
            with torch.no_grad():
                for name, param in self.belief.named_parameters():
                    param.mul_(alpha)
                    if name.rsplit(".", 1)[-1].startswith("bias"):
                        param.add_(beta)

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
        """The mean drop rate ``1 - π`` over the last sampling forward (NaN before one)."""
        return 1.0 - self.mean_keep.detach()

    def extra_repr(self) -> str:
        own = ", own_weights=True" if self.belief is not None else ""
        return f"alpha={float(self.alpha):g}, beta={float(self.beta):g}{own}"
