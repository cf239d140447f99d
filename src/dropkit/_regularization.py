"""One API over every learned-rate technique: the regulariser of the objective and the rates."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dropkit.functional._learned import check_dataset_size
from dropkit.nn._learned import LearnedDropoutModule

__all__ = ["LearnedRate", "learned_rates", "regularization"]


def _learned_modules(model: object) -> list[tuple[str, LearnedDropoutModule]]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, LearnedDropoutModule)
    ]


def regularization(model: nn.Module, *, dataset_size: int) -> Tensor:
    """The sum of every learned-rate module's term of the training objective, per example.

    Add it to the mean loss over a batch: ``loss = criterion(out, y) + regularization(model,
    dataset_size=N)`` with ``N`` the number of training examples. Each technique's term is
    scaled for ``N`` as its paper's objective prescribes:

    * :class:`~dropkit.nn.ConcreteDropout`: ``wr ||W||² / (1 - p) + wr ||b||² +
      dr D (p log p + (1-p) log(1-p))`` with ``wr = l²/N``, ``dr = 2/(τN)`` (already per
      example, as in Gal et al.);
    * Kingma VD and sparse VD layers: ``KL / N`` (the negative ELBO divided by N);
    * :class:`~dropkit.nn.Standout`: 0 (no regulariser in the paper).

    A model without any learned-rate module is an error (``ValueError``), not a silent 0: a
    loss that should regularise and does not is a bug worth hearing about.

    Args:
        model: any module containing learned-rate modules.
        dataset_size: ``N``, the number of training examples (int > 0).

    Example:
        >>> import torch, dropkit
        >>> net = torch.nn.Sequential(dropkit.nn.LinearSVDO(4, 2, seed=0))
        >>> dropkit.regularization(net, dataset_size=100).shape
        torch.Size([])
    """
    modules = _learned_modules(model)
    n = check_dataset_size(dataset_size)
    if not modules:
        raise ValueError(
            "model has no learned-rate dropout module (ConcreteDropout, VariationalDropout*, "
            "*SVDO, Standout): regularization() has nothing to sum"
        )
    terms = [module.regularization(n) for _, module in modules]
    return torch.stack([t.reshape(()).to(terms[0].dtype) for t in terms]).sum()


@dataclass
class LearnedRate:
    """The current rates of one learned-rate module (drop probabilities, detached)."""

    name: str
    technique: str
    rates: Tensor
    feature_rates: Tensor | None

    @property
    def mean(self) -> float:
        """The mean drop rate."""
        return float(self.rates.float().mean())

    def ranking(self) -> Tensor:
        """Input features, most important first: sorted by increasing drop rate (dropout
        feature ranking, Chang et al. 2017). Needs a rate per input feature."""
        if self.feature_rates is None:
            raise ValueError(
                f"{self.name or '<model>'} ({self.technique}) learns no rate per input feature; "
                "use ConcreteDropout(rate_shape=(D,)) or alpha_shape='unit'/'weight'"
            )
        return torch.argsort(self.feature_rates, stable=True)


def learned_rates(model: nn.Module) -> list[LearnedRate]:
    """The current learned rates of every learned-rate module of ``model``, in module order.

    Each entry has the module's path, technique, its rates (as drop probabilities, in the
    shape it learns them: a scalar, one per feature, or one per weight), one rate per input
    feature where it has one, and :meth:`LearnedRate.ranking` of the input features.

    Example:
        >>> import torch, dropkit
        >>> net = torch.nn.Sequential(dropkit.nn.ConcreteDropout(torch.nn.Linear(3, 1),
        ...                           rate_shape=(3,), seed=0))
        >>> [(r.name, r.technique, round(r.mean, 2)) for r in dropkit.learned_rates(net)]
        [('0', 'concrete', 0.1)]
    """
    return [
        LearnedRate(name, module.technique, module.drop_rates(), module.feature_drop_rates())
        for name, module in _learned_modules(model)
    ]
