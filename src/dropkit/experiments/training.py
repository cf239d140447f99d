"""One training run: a model, a technique, per-site rates, a seed and a cross-validation fold.

Tensors are preloaded and batches are drawn by indexing with a ``randperm``, so the loop adds
no Python work per step beyond the model's own; losses are accumulated on-device and read once
per epoch.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dropkit import uncertainty
from dropkit._regularization import regularization
from dropkit.experiments.data import Dataset, load_dataset
from dropkit.experiments.models import build_model, is_custom, load_factory, model_sites
from dropkit.experiments.techniques import get_technique
from dropkit.nn import DropoutModule, LearnedDropoutModule

__all__ = ["RunConfig", "classification_metrics", "fold_indices", "run_config_key", "train_run"]

#: Equal-width confidence bins of the reports' ECE and reliability diagrams.
REPORT_BINS = 10


def classification_metrics(probs: Tensor, labels: Tensor) -> dict[str, Any]:
    """NLL, Brier, ECE and reliability-bin sums of ``(N, K)`` probabilities, through
    :mod:`dropkit.uncertainty`. The bin sums (count, summed confidence, summed correctness) add
    up across runs, which the report needs."""
    samples = probs[None]  # one "sample": the deterministic prediction
    diagram = uncertainty.reliability_diagram(samples, labels, n_bins=REPORT_BINS)
    counts = diagram.counts.to(torch.float64)
    return {
        "test_nll": float(uncertainty.negative_log_likelihood(samples, labels)),
        "test_brier": float(uncertainty.brier_score(samples, labels)),
        "test_ece": float(
            uncertainty.expected_calibration_error(samples, labels, n_bins=REPORT_BINS)
        ),
        "reliability": {
            "count": counts.tolist(),
            "confidence": (diagram.confidence.nan_to_num() * counts).tolist(),
            "correct": (diagram.accuracy.nan_to_num() * counts).tolist(),
        },
    }


#: Validation fraction when ``folds == 1`` (10%: the mnist1d CNN needs ~3,600 examples to reach
#: its published 90-96%).
HOLDOUT = 0.1
#: Fraction of the epochs over which the learned-rate regulariser's weight rises linearly to 1
#: (KL warm-up: sparse VD trained from scratch collapses to the prior without it, Molchanov et
#: al. 2017 sec. 5); the objective is the paper's from there on.
LEARNED_WARMUP = 0.25
#: Examples per forward pass when evaluating.
EVAL_CHUNK = 4096
EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's result; its :meth:`key` identifies it in storage.

    ``folds == 1`` holds out :data:`HOLDOUT` (10%) of the training set for validation;
    ``folds >= 2`` uses fold ``fold`` of a stratified ``folds``-fold split (fixed, so every
    technique sees the same folds). ``train_size`` subsamples the training set first
    (stratified, fixed). ``width`` overrides the model's hidden width (see
    :func:`~dropkit.experiments.models.build_model`).
    """

    dataset: str
    model: str
    technique: str
    rates: tuple[float, ...]
    seed: int
    fold: int = 0
    folds: int = 1
    epochs: int = 20
    batch_size: int = 100
    lr: float = 1e-2
    weight_decay: float = 0.0
    train_size: int | None = None
    width: int | None = None

    @property
    def rate(self) -> float:
        """The nominal rate (the largest per-site rate), for grouping in reports."""
        return max(self.rates, default=0.0)

    def key(self) -> str:
        return run_config_key(self)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        values = json.loads(text)
        values["rates"] = tuple(values["rates"])
        return cls(**values)


def run_config_key(config: RunConfig) -> str:
    """A stable hash of the config (the primary key of a stored run)."""
    return hashlib.sha1(config.to_json().encode()).hexdigest()


def fold_indices(
    dataset: Dataset, folds: int, fold: int, train_size: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices into ``dataset.x_train`` for one fold."""
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    if not 0 <= fold < max(folds, 1):
        raise ValueError(f"fold must be in [0, {max(folds, 1) - 1}], got {fold}")
    classify = dataset.task == "classification"
    indices = np.arange(len(dataset.y_train))
    labels = dataset.y_train
    if train_size is not None and train_size < len(indices):
        indices, _ = train_test_split(
            indices, train_size=train_size, random_state=0, stratify=labels if classify else None
        )
        indices = np.sort(indices)
    if folds == 1:
        train, val = train_test_split(
            indices,
            test_size=HOLDOUT,
            random_state=0,
            stratify=labels[indices] if classify else None,
        )
        return np.sort(train), np.sort(val)
    splitter = (StratifiedKFold if classify else KFold)(folds, shuffle=True, random_state=0)
    train, val = list(splitter.split(indices, labels[indices]))[fold]
    return indices[train], indices[val]


def _evaluate(
    model: nn.Module, x: Tensor, y: Tensor, classify: bool
) -> tuple[float, float, Tensor]:
    model.eval()
    with torch.no_grad():
        # In chunks: a whole image training set in one batch would need gigabytes of activations.
        out = torch.cat([model(chunk) for chunk in x.split(EVAL_CHUNK)])
        if classify:
            loss = nn.functional.cross_entropy(out, y)
            score = (out.argmax(1) == y).double().mean()
        else:
            out = out.squeeze(-1)
            loss = nn.functional.mse_loss(out, y)
            score = -loss.sqrt()
    return float(loss), float(score), out


def train_run(
    config: RunConfig, data_dir: str | Path | None = None, on_epoch: EpochCallback | None = None
) -> dict[str, Any]:
    """Train one run and return its curves and final metrics (a JSON-able dict).

    Per epoch: ``train_loss``/``train_score`` (training mode, averaged over batches; the data
    loss alone: a model with learned rates minimises it plus :func:`dropkit.regularization`,
    weighted up from ``1 / W`` to 1 over the first ``W`` = :data:`LEARNED_WARMUP` of the epochs)
    and ``val_loss``/``val_score`` (eval mode). ``score`` is accuracy for classification and
    ``-RMSE`` for regression. At the end, on the test set: ``test_score``, ``test_nll``,
    ``test_brier``, ``test_ece`` and reliability bins (classification); ``gap`` is the eval-mode
    training score minus the test score. ``on_epoch(epoch, values)`` may raise to stop (pruning).
    """
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    dataset = load_dataset(config.dataset, data_dir)
    technique = get_technique(config.technique)
    sites = model_sites(config.model, dataset.input_shape)
    rates = config.rates if technique.uses_rate else (0.0,) * len(sites)
    train_idx, val_idx = fold_indices(dataset, config.folds, config.fold, config.train_size)
    classify = dataset.task == "classification"
    x_all, y_all = torch.from_numpy(dataset.x_train), torch.from_numpy(dataset.y_train)
    x_train, y_train = x_all[train_idx], y_all[train_idx]
    x_val, y_val = x_all[val_idx], y_all[val_idx]
    x_test, y_test = torch.from_numpy(dataset.x_test), torch.from_numpy(dataset.y_test)

    torch.manual_seed(config.seed)  # weights and every dropout module's seed
    schedules: list[tuple[DropoutModule, Callable[[int], float]]] = []
    model: nn.Module
    if is_custom(config.model):  # the user's factory: one rate for every dropout module in it
        model = load_factory(config.model)(technique, rates[0])
        if technique.schedule is not None:
            schedules = [
                (module, technique.schedule(rates[0], config.epochs))
                for module in model.modules()
                if isinstance(module, DropoutModule)
            ]
    else:
        built = build_model(
            config.model, dataset.input_shape, dataset.num_outputs, technique, rates, config.width
        )
        model = built
        if technique.schedule is not None:
            for index, rate in enumerate(rates, start=1):
                site = built.site(index)
                if isinstance(site, DropoutModule):
                    schedules.append((site, technique.schedule(rate, config.epochs)))
    if technique.transform is not None:
        model = technique.transform(model, rates[0])
    # Learned rates (concrete, VD, ...): the objective adds their regulariser, per example.
    learned = any(isinstance(m, LearnedDropoutModule) for m in model.modules())
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    order = torch.Generator().manual_seed(config.seed)
    curves: dict[str, list[float]] = {
        k: [] for k in ("train_loss", "train_score", "val_loss", "val_score")
    }
    n = len(y_train)
    warmup_epochs = max(1, round(LEARNED_WARMUP * config.epochs))
    for epoch in range(config.epochs):
        for module, schedule in schedules:
            module.p = schedule(epoch)
        kl_weight = min(1.0, (epoch + 1) / warmup_epochs)
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64)
        score_sum = torch.zeros((), dtype=torch.float64)
        permutation = torch.randperm(n, generator=order)
        for begin in range(0, n, config.batch_size):
            batch = permutation[begin : begin + config.batch_size]
            xb, yb = x_train[batch], y_train[batch]
            out = model(xb)
            if classify:
                loss = nn.functional.cross_entropy(out, yb)
                score_sum += (out.detach().argmax(1) == yb).sum()
            else:
                loss = nn.functional.mse_loss(out.squeeze(-1), yb)
            objective = loss
            if learned:
                objective = loss + kl_weight * regularization(model, dataset_size=n)
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(batch)
        train_loss = float(loss_sum) / n
        train_score = float(score_sum) / n if classify else -math.sqrt(train_loss)
        val_loss, val_score, _ = _evaluate(model, x_val, y_val, classify)
        for key, value in zip(curves, (train_loss, train_score, val_loss, val_score), strict=True):
            curves[key].append(value)
        if on_epoch is not None:
            on_epoch(
                epoch,
                {
                    "train_loss": train_loss,
                    "train_score": train_score,
                    "val_loss": val_loss,
                    "val_score": val_score,
                },
            )

    _, train_eval_score, _ = _evaluate(model, x_train, y_train, classify)
    test_loss, test_score, test_out = _evaluate(model, x_test, y_test, classify)
    result: dict[str, Any] = {
        "curves": curves,
        "val_loss": curves["val_loss"][-1] if curves["val_loss"] else math.nan,
        "val_score": curves["val_score"][-1] if curves["val_score"] else math.nan,
        "test_score": test_score,
        "gap": train_eval_score - test_score,
    }
    if classify:
        result.update(classification_metrics(torch.softmax(test_out.double(), dim=1), y_test))
    else:
        # Gaussian NLL with the variance of the training residuals (a homoscedastic model).
        variance = max(-train_eval_score, 1e-6) ** 2
        result["test_nll"] = 0.5 * (math.log(2 * math.pi * variance) + test_loss / variance)
    result["wall_s"] = time.perf_counter() - start_wall
    result["cpu_s"] = time.process_time() - start_cpu
    return result
