"""Meta-learned dropout rates: per-layer concrete-dropout rates tuned by a one-step unrolled
hypergradient on a held-out batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from dropkit.functional._learned import check_dataset_size, check_temperature
from dropkit.nn._concrete import ConcreteDropout

__all__ = ["MetaRateTuner"]

Batch = tuple[Any, Tensor]


class MetaRateTuner:
    """Tune the rates of a model's :class:`~dropkit.nn.ConcreteDropout` layers to minimise a
    held-out loss, by the hypergradient of a one-step unrolled bilevel problem.

    With weights ``θ`` and rate logits ``φ``, one :meth:`step` computes

    * the training loss ``L_train(θ, φ)`` on a training batch, with dropout sampling through
      the concrete relaxation (so it is differentiable in ``φ``), plus
      :func:`dropkit.regularization` where ``dataset_size`` is given;
    * one virtual SGD step ``θ'(φ) = θ - η ∇_θ L_train(θ, φ)`` (``η = inner_lr``), keeping the
      graph (``create_graph=True``);
    * the validation loss ``L_val(θ'(φ))`` on a held-out batch, in eval mode (no dropout: the
      rates act only through ``θ'``);
    * the hypergradient ``d L_val / d φ`` by backpropagating through the virtual step, and one
      step of the rate optimiser (Adam, ``rate_lr``) on ``φ`` alone.

    The weights are left as they were: train them with your own optimiser as usual (on the
    training loss, excluding the rates from it: :meth:`weight_parameters`), and call
    :meth:`step` every ``k`` training steps. This is the DARTS-style first unrolled step
    (Liu, Simonyan & Yang 2019; Luketina et al. 2016 for hyperparameters).

    Cost: one forward and one backward with ``create_graph`` on the training batch, one
    forward on the validation batch and one backward through both (second-order,
    Hessian-vector products): about 3-5 times a plain training step in time, and the memory of
    the unrolled graph (measured in ``docs/techniques/meta_rates.md``).

    Args:
        model: a model with at least one :class:`~dropkit.nn.ConcreteDropout` layer.
        loss_fn: ``loss_fn(output, target) -> scalar``.
        inner_lr: ``η`` of the virtual step (the weight optimiser's learning rate, roughly).
        rate_lr: Adam learning rate of the rate logits.
        dataset_size: ``N`` for :func:`dropkit.regularization` in the training loss (None:
            no regulariser).

    Example:
        >>> import torch, dropkit
        >>> net = torch.nn.Sequential(dropkit.nn.ConcreteDropout(torch.nn.Linear(3, 1), seed=0))
        >>> tuner = dropkit.MetaRateTuner(net, torch.nn.functional.mse_loss, inner_lr=0.1)
        >>> batch = (torch.randn(8, 3), torch.randn(8, 1))
        >>> val_loss = tuner.step(batch, batch)
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Any, Tensor], Tensor],
        *,
        inner_lr: float,
        rate_lr: float = 0.05,
        dataset_size: int | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        self.model = model
        self.loss_fn = loss_fn
        self.inner_lr = check_temperature(inner_lr, "inner_lr")
        self.dataset_size = None if dataset_size is None else check_dataset_size(dataset_size)
        rate_ids = {id(m.p_logit) for m in model.modules() if isinstance(m, ConcreteDropout)}
        if not rate_ids:
            raise ValueError(
                "model has no ConcreteDropout layer: MetaRateTuner tunes concrete-dropout rates"
            )
        named = dict(model.named_parameters())
        self.rate_names = [n for n, p in named.items() if id(p) in rate_ids]
        self.weight_names = [
            n for n, p in named.items() if id(p) not in rate_ids and p.requires_grad
        ]
        self.optimizer = torch.optim.Adam(
            [named[n] for n in self.rate_names], lr=check_temperature(rate_lr, "rate_lr")
        )

    def weight_parameters(self) -> list[nn.Parameter]:
        """The model's trainable parameters except the tuned rate logits."""
        named = dict(self.model.named_parameters())
        return [named[n] for n in self.weight_names]

    def hypergradient(self, train_batch: Batch, val_batch: Batch) -> tuple[Tensor, list[Tensor]]:
        """The validation loss after the virtual step and ``d L_val / d φ`` per rate logit."""
        from dropkit._regularization import regularization

        named = dict(self.model.named_parameters())
        weights = {n: named[n] for n in self.weight_names}
        rates = {n: named[n] for n in self.rate_names}
        x, y = train_batch
        was_training = self.model.training
        self.model.train()
        train_loss = self.loss_fn(self.model(x), y)
        if self.dataset_size is not None:
            train_loss = train_loss + regularization(self.model, dataset_size=self.dataset_size)
        grads = torch.autograd.grad(
            train_loss, list(weights.values()), create_graph=True, allow_unused=True
        )
        stepped = {
            n: w if g is None else w - self.inner_lr * g
            for (n, w), g in zip(weights.items(), grads, strict=True)
        }
        self.model.eval()
        try:
            xv, yv = val_batch
            val_loss = self.loss_fn(functional_call(self.model, {**stepped, **rates}, (xv,)), yv)
        finally:
            self.model.train(was_training)
        hyper = torch.autograd.grad(val_loss, list(rates.values()))
        return val_loss.detach(), list(hyper)

    def step(self, train_batch: Batch, val_batch: Batch) -> float:
        """One hypergradient step on the rates; returns the validation loss it measured."""
        val_loss, hyper = self.hypergradient(train_batch, val_batch)
        named = dict(self.model.named_parameters())
        for name, grad in zip(self.rate_names, hyper, strict=True):
            named[name].grad = grad
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(val_loss)
