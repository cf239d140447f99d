"""The learned-rate techniques on real data: the paper checks of issue 12.

* :func:`run_sparse_vd` — sparse variational dropout (Molchanov, Ashukha & Vetrov 2017) on a
  LeNet-300-100 MLP against the same MLP trained densely, on Fashion-MNIST (Debian's
  ``dataset-fashion-mnist``) or any classification :class:`~dropkit.experiments.data.Dataset`:
  test accuracy of both and the fraction of weights pruned (``log α > 3``).
  ``dropkit reproduce svd-fashion`` runs it.
* :func:`run_concrete_dataset` — concrete dropout (Gal, Hron & Kendall 2017) on the UCI
  regression protocol of :mod:`dropkit.experiments.uci`: the same splits, network, optimiser,
  τ grid and MC scoring, but the dropout rates of the input and hidden layers are learned
  instead of searched over the ``dropout_rates.txt`` grid. ``dropkit reproduce uci-concrete``
  runs it.

References:
    Molchanov, Ashukha & Vetrov, "Variational Dropout Sparsifies Deep Neural Networks",
    ICML 2017. Gal, Hron & Kendall, "Concrete Dropout", NeurIPS 2017.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as torch_f

from dropkit import rng
from dropkit._regularization import regularization
from dropkit.experiments import uci
from dropkit.experiments.data import Dataset
from dropkit.functional._learned import concrete_dropout, concrete_regularizer
from dropkit.nn._learned import LearnedDropoutModule
from dropkit.nn._variational import LinearSVDO, sparsity
from dropkit.uncertainty import sample

__all__ = [
    "MOLCHANOV_LENET_300_100",
    "ConcreteUCIResult",
    "SparseVDResult",
    "format_concrete_table",
    "format_sparse_vd",
    "lenet_300_100",
    "main_concrete",
    "main_sparse_vd",
    "run_concrete_dataset",
    "run_sparse_vd",
]

#: Molchanov et al. 2017, Table 1, LeNet-300-100 on MNIST: test error 1.92% with 1.47% of the
#: weights kept (98.5% pruned, compression 68x); the dense network: 1.64% error.
MOLCHANOV_LENET_300_100 = {"error": 0.0192, "pruned": 0.985, "dense_error": 0.0164}


# ----------------------------------------------------------------------------- sparse VD


def lenet_300_100(
    in_features: int, classes: int, linear: Callable[[int, int], nn.Module] = nn.Linear
) -> nn.Sequential:
    """LeNet-300-100 (LeCun et al. 1998): ``in -> 300 -> 100 -> classes`` with ReLUs."""
    return nn.Sequential(
        nn.Flatten(),
        linear(in_features, 300),
        nn.ReLU(),
        linear(300, 100),
        nn.ReLU(),
        linear(100, classes),
    )


@dataclass
class SparseVDResult:
    """Test accuracy of the dense and the sparse-VD LeNet-300-100 and what sparse VD prunes."""

    dataset: str
    train_size: int
    test_size: int
    dense_epochs: int
    sparse_epochs: int
    dense_accuracy: float
    sparse_accuracy: float
    pruned: float
    layers: dict[str, tuple[int, int]]
    dense_seconds: float
    sparse_seconds: float
    history: list[tuple[int, float, float]] = field(default_factory=list)

    @property
    def compression(self) -> float:
        """Weights of the dense network over the weights sparse VD keeps."""
        total = sum(t for _, t in self.layers.values())
        kept = total - sum(p for p, _ in self.layers.values())
        return total / kept if kept else math.inf


def _accuracy(net: nn.Module, x: Tensor, y: Tensor, batch: int = 2000) -> float:
    net.eval()
    with torch.no_grad():
        correct = sum(
            int((net(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
            for i in range(0, len(x), batch)
        )
    return correct / len(x)


def _train_classifier(
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    warmup_epochs: int,
    seed: int,
    variational: bool,
    on_epoch: Callable[[int], None] | None = None,
) -> None:
    """Adam with the learning rate decayed linearly to 0 (as Molchanov et al.); for sparse VD
    the loss is the negative ELBO per example, ``CE + β KL / N``, with β ramped linearly from
    0 to 1 over ``warmup_epochs`` (their KL warm-up)."""
    n = len(x)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1.0 - step / total)
    order = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        net.train()
        beta = min(1.0, epoch / warmup_epochs) if warmup_epochs else 1.0
        permutation = torch.randperm(n, generator=order)
        for start in range(0, n, batch_size):
            rows = permutation[start : start + batch_size]
            loss = torch_f.cross_entropy(net(x[rows]), y[rows])
            if variational:
                loss = loss + beta * regularization(net, dataset_size=n)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
        if on_epoch is not None:
            on_epoch(epoch)


def run_sparse_vd(
    dataset: Dataset,
    *,
    epochs: int = 30,
    dense_epochs: int | None = None,
    warmup_epochs: int | None = None,
    lr: float = 1e-3,
    batch_size: int = 100,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> SparseVDResult:
    """Train LeNet-300-100 densely and with :class:`~dropkit.nn.LinearSVDO` layers; score both.

    Both use Adam (``lr`` decayed linearly to 0), minibatches of ``batch_size`` and the same
    initial weights' seed. Sparse VD minimises ``CE + β KL / N`` with the KL warm-up over
    ``warmup_epochs`` (default: a third of ``epochs``) and is scored with the weights of
    ``log α > 3`` set to 0 (its eval mode).

    Args:
        dataset: a classification data set (images are flattened).
        epochs: sparse-VD training epochs (Molchanov et al.: 200).
        dense_epochs: dense training epochs (default: ``epochs``).
        train_size, test_size: use the first rows only (default: all).
    """
    if dataset.task != "classification":
        raise ValueError(f"run_sparse_vd needs a classification data set, got {dataset.task}")
    x_train = torch.from_numpy(dataset.x_train[:train_size]).flatten(1)
    y_train = torch.from_numpy(dataset.y_train[:train_size])
    x_test = torch.from_numpy(dataset.x_test[:test_size]).flatten(1)
    y_test = torch.from_numpy(dataset.y_test[:test_size])
    features, classes = x_train.shape[1], dataset.num_classes
    dense_epochs = epochs if dense_epochs is None else dense_epochs
    warmup = max(1, epochs // 3) if warmup_epochs is None else warmup_epochs
    say = progress or (lambda text: None)

    torch.manual_seed(seed)
    dense = lenet_300_100(features, classes)
    started = time.perf_counter()
    _train_classifier(
        dense, x_train, y_train, epochs=dense_epochs, lr=lr, batch_size=batch_size,
        warmup_epochs=0, seed=seed, variational=False,
    )  # fmt: skip
    dense_seconds = time.perf_counter() - started
    dense_accuracy = _accuracy(dense, x_test, y_test)
    say(f"dense: test accuracy {dense_accuracy:.4f} ({dense_seconds:.0f} s)")

    torch.manual_seed(seed)
    net = lenet_300_100(features, classes, lambda i, o: LinearSVDO(i, o))
    history: list[tuple[int, float, float]] = []

    def report(epoch: int) -> None:
        if epoch % 5 == 4 or epoch == epochs - 1:
            accuracy, pruned = _accuracy(net, x_test, y_test), sparsity(net).fraction
            history.append((epoch + 1, accuracy, pruned))
            say(f"sparse VD epoch {epoch + 1}: test accuracy {accuracy:.4f}, pruned {pruned:.4f}")

    started = time.perf_counter()
    _train_classifier(
        net, x_train, y_train, epochs=epochs, lr=lr, batch_size=batch_size,
        warmup_epochs=warmup, seed=seed, variational=True, on_epoch=report,
    )  # fmt: skip
    sparse_seconds = time.perf_counter() - started
    report_ = sparsity(net)
    return SparseVDResult(
        dataset=dataset.name,
        train_size=len(x_train),
        test_size=len(x_test),
        dense_epochs=dense_epochs,
        sparse_epochs=epochs,
        dense_accuracy=dense_accuracy,
        sparse_accuracy=_accuracy(net, x_test, y_test),
        pruned=report_.fraction,
        layers=dict(report_.layers),
        dense_seconds=dense_seconds,
        sparse_seconds=sparse_seconds,
        history=history,
    )


def format_sparse_vd(result: SparseVDResult) -> str:
    """The result as a few lines, beside Molchanov et al.'s MNIST numbers."""
    paper = MOLCHANOV_LENET_300_100
    lines = [
        f"LeNet-300-100 on {result.dataset} ({result.train_size} train / {result.test_size} "
        f"test rows)",
        f"  dense:     {result.dense_epochs:>3} epochs, test error "
        f"{100 * (1 - result.dense_accuracy):.2f}%  ({result.dense_seconds:.0f} s)",
        f"  sparse VD: {result.sparse_epochs:>3} epochs, test error "
        f"{100 * (1 - result.sparse_accuracy):.2f}%, {100 * result.pruned:.2f}% of weights "
        f"pruned (compression {result.compression:.0f}x)  ({result.sparse_seconds:.0f} s)",
    ]
    lines += [
        f"    {name}: {pruned}/{total} pruned ({100 * pruned / total:.2f}%)"
        for name, (pruned, total) in result.layers.items()
    ]
    lines.append(
        f"  Molchanov et al. 2017 (MNIST, 200 epochs): dense {100 * paper['dense_error']:.2f}% "
        f"error; sparse VD {100 * paper['error']:.2f}% error, {100 * paper['pruned']:.1f}% pruned"
    )
    return "\n".join(lines)


def main_sparse_vd(argv: Sequence[str] | None = None) -> SparseVDResult:
    """``python -m dropkit.experiments.learned svd [options]`` (see ``--help``)."""
    from dropkit.experiments.data import load_dataset

    parser = argparse.ArgumentParser(description="sparse VD LeNet-300-100 vs the dense model")
    _sparse_vd_options(parser)
    args = parser.parse_args(argv)
    return sparse_vd_command(args, load_dataset)


def _sparse_vd_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--dense-epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)


def sparse_vd_command(
    args: argparse.Namespace, load: Callable[[str, str | None], Dataset]
) -> SparseVDResult:
    """Run :func:`run_sparse_vd` from parsed options and print the result."""
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    result = run_sparse_vd(
        load(args.dataset, args.data_dir),
        epochs=args.epochs,
        dense_epochs=getattr(args, "dense_epochs", None),
        lr=getattr(args, "lr", 1e-3),
        train_size=getattr(args, "train_size", None),
        test_size=getattr(args, "test_size", None),
        seed=getattr(args, "seed", 0),
        progress=lambda text: print(text, flush=True),
    )
    print(format_sparse_vd(result), flush=True)
    return result


# ----------------------------------------------------------------------------- concrete on UCI


class _NetworkConcrete(LearnedDropoutModule):
    """Concrete dropout on ``(rows, G, features)`` with one learned rate per network (dim 1):
    ``p_logit`` of shape ``(G, 1)`` broadcasts over rows and features."""

    technique = "concrete"

    def __init__(self, networks: int, *, init_p: float, temperature: float, seed: int) -> None:
        super().__init__(seed=seed)
        logit = math.log(init_p) - math.log1p(-init_p)
        self.p_logit = nn.Parameter(torch.full((networks, 1), logit))
        self.temperature = temperature

    def forward(self, x: Tensor) -> Tensor:
        return concrete_dropout(
            x, self.p_logit, self.sampling, temperature=self.temperature, seed=self.seed,
            step=self.next_step(),
        )  # fmt: skip

    def drop_rates(self) -> Tensor:
        return torch.sigmoid(self.p_logit.detach()).reshape(-1)

    def penalty(self, weights: Tensor, scale: Tensor, input_dim: int, n: int) -> Tensor:
        """Per network ``g``: the concrete regulariser of :func:`concrete_regularizer` with
        ``wr = l² / (τ_g N)`` and ``dr = 2 / (τ_g N)`` (``scale = 1 / τ_g``), weights only (the
        protocol's weight decay leaves the biases alone), for ``weights`` ``(G, in, out)``."""

        def one(logit: Tensor, weight: Tensor) -> Tensor:
            return concrete_regularizer(
                logit, [weight], [], weight_regularizer=uci.LENGTH_SCALE**2 / n,
                dropout_regularizer=2.0 / n, input_dim=input_dim,
            )  # fmt: skip

        return torch.vmap(one)(self.p_logit[:, 0], weights) * scale


class _StackedConcreteMLP(nn.Module):
    """:class:`dropkit.experiments.uci`'s stacked one-hidden-layer networks with concrete
    dropout (learned rates) on the input and on the hidden layer."""

    def __init__(
        self,
        n_in: int,
        n_hidden: int,
        networks: int,
        generator: torch.Generator,
        *,
        init_p: float,
        temperature: float,
    ) -> None:
        super().__init__()

        def glorot(fan_in: int, fan_out: int) -> nn.Parameter:
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            weights = torch.rand(networks, fan_in, fan_out, generator=generator) * 2 - 1
            return nn.Parameter(weights * bound)

        self.n_in, self.n_hidden = n_in, n_hidden
        self.w1, self.w2 = glorot(n_in, n_hidden), glorot(n_hidden, 1)
        self.b1 = nn.Parameter(torch.zeros(networks, n_hidden))
        self.b2 = nn.Parameter(torch.zeros(networks, 1))
        options = dict(init_p=init_p, temperature=temperature)
        self.drop_in = _NetworkConcrete(networks, seed=rng.draw_seed(generator), **options)
        self.drop_hidden = _NetworkConcrete(networks, seed=rng.draw_seed(generator), **options)

    def forward(self, x: Tensor) -> Tensor:
        hidden = torch.einsum("ngi,gio->ngo", self.drop_in(x), self.w1) + self.b1
        hidden = self.drop_hidden(torch.relu(hidden))
        return (torch.einsum("ngi,gio->ngo", hidden, self.w2) + self.b2).squeeze(-1)

    def penalty(self, scale: Tensor, n: int) -> Tensor:
        return self.drop_in.penalty(self.w1, scale, self.n_in, n) + self.drop_hidden.penalty(
            self.w2, scale, self.n_hidden, n
        )


@dataclass
class _ConcreteScores:
    rmse: list[float]
    log_likelihood: list[float]
    rates: list[tuple[float, float]]


def _train_and_score_concrete(
    tasks: list[uci._Task],
    n_hidden: int,
    epochs: int,
    mc_samples: int,
    seed: int,
    init_p: float,
    temperature: float,
) -> _ConcreteScores:
    """Train one stacked concrete network per task (its τ fixes the regulariser), then score
    each by MC dropout on its eval rows, as :mod:`~dropkit.experiments.uci` does."""
    from dropkit.uncertainty import gaussian_log_likelihood, rmse

    generator = torch.Generator().manual_seed(seed)
    sizes = {len(t.train_y) for t in tasks}
    if len(sizes) != 1:
        raise ValueError(f"tasks trained together need equal training sizes, got {sizes}")
    n_train = sizes.pop()
    model = _StackedConcreteMLP(
        tasks[0].train_x.shape[1], n_hidden, len(tasks), generator,
        init_p=init_p, temperature=temperature,
    )  # fmt: skip
    train_x = torch.stack([t.train_x for t in tasks])  # (G, N, D)
    train_y = torch.stack([t.train_y for t in tasks])  # (G, N)
    # τ is the precision in the targets' original units; the network fits standardised targets,
    # whose precision is τ σ_y²: that is the τ of the regulariser (Gal et al.'s 2 / (τ N)).
    scale = torch.tensor([1.0 / (t.tau * t.y_std**2) for t in tasks])
    optimiser = torch.optim.Adam(model.parameters(), lr=uci.LEARNING_RATE)
    networks = torch.arange(len(tasks)).unsqueeze(1)
    model.train()
    for _ in range(epochs):
        shuffled = torch.rand(len(tasks), n_train, generator=generator).argsort(1)
        for start in range(0, n_train, uci.BATCH_SIZE):
            rows = shuffled[:, start : start + uci.BATCH_SIZE]
            x = train_x[networks, rows].transpose(0, 1)  # (batch, G, D)
            y = train_y[networks, rows].transpose(0, 1)
            squared_error = ((model(x) - y) ** 2).mean(0)  # per network
            optimiser.zero_grad(set_to_none=True)
            (squared_error + model.penalty(scale, n_train)).sum().backward()
            optimiser.step()
    eval_rows = max(len(t.eval_y) for t in tasks)
    eval_x = torch.zeros(eval_rows, len(tasks), tasks[0].eval_x.shape[1])
    for g, t in enumerate(tasks):
        eval_x[: len(t.eval_y), g] = t.eval_x
    model.eval()
    draws = sample(model, eval_x, samples=mc_samples, seed=seed)  # (T, rows, G)
    scores = _ConcreteScores([], [], [])
    rates_in, rates_hidden = model.drop_in.drop_rates(), model.drop_hidden.drop_rates()
    for g, t in enumerate(tasks):
        predictions = draws[:, : len(t.eval_y), g].double() * t.y_std + t.y_mean
        scores.rmse.append(float(rmse(predictions, t.eval_y)))
        scores.log_likelihood.append(float(gaussian_log_likelihood(predictions, t.eval_y, t.tau)))
        scores.rates.append((float(rates_in[g]), float(rates_hidden[g])))
    return scores


@dataclass
class ConcreteUCIResult(uci.UCIResult):
    """:class:`~dropkit.experiments.uci.UCIResult` of the concrete run; ``chosen`` holds the
    learned ``(input rate, hidden rate)`` and ``taus`` the τ picked on validation, per split."""

    taus: list[float] = field(default_factory=list)
    cpu_seconds: float = math.nan


def run_concrete_dataset(
    data: uci.UCIDataset,
    *,
    epochs: int | None = None,
    splits: int | None = None,
    mc_samples: int = 10_000,
    validation_samples: int = 1_000,
    seed: int = 0,
    init_p: float = 0.1,
    temperature: float = 0.1,
) -> ConcreteUCIResult:
    """The UCI protocol of :func:`dropkit.experiments.uci.run_dataset` with learned rates.

    Per split, the first 80% of the training rows train one network per τ of
    ``tau_values.txt`` (the rates are learned, so ``dropout_rates.txt`` is not searched) and
    the last 20% validate it; the τ of the best validation MC log-likelihood is retrained on
    the whole training split, rates learned anew, and scored on the test split.

    The objective per network is the protocol's mean squared error (on standardised targets)
    plus, for each of the two concrete layers, ``wr ||W||² / (1 - p) + dr D (p log p + (1 - p)
    log(1 - p))`` with ``wr = l² / (τ' N)``, ``dr = 2 / (τ' N)`` (Gal et al.'s values; the
    negative ELBO per example times ``2 / τ'``), ``τ' = τ σ_y²`` the precision τ of the grid
    (original units) in standardised units, the protocol's ``l = 1e-2`` and weights only.
    Rates start at ``init_p``; relaxation temperature ``temperature`` (the paper's 0.1).
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    epochs = data.n_epochs if epochs is None else epochs
    n_splits = data.n_splits if splits is None else min(splits, data.n_splits)
    taus = list(data.tau_values)
    validation_tasks = []
    for k in range(n_splits):
        train = data.train_indices[k]
        n_fit = int(len(train) * (1 - uci.VALIDATION_FRACTION))
        for tau in taus:
            validation_tasks.append(uci._task(data, train[:n_fit], train[n_fit:], 0.0, tau))
    validation = _train_and_score_concrete(
        validation_tasks, data.n_hidden, epochs, validation_samples, seed, init_p, temperature
    )
    chosen_taus = []
    for k in range(n_splits):
        scores = validation.log_likelihood[k * len(taus) : (k + 1) * len(taus)]
        chosen_taus.append(taus[max(range(len(taus)), key=scores.__getitem__)])
    test_tasks = [
        uci._task(data, data.train_indices[k], data.test_indices[k], 0.0, chosen_taus[k])
        for k in range(n_splits)
    ]
    test = _train_and_score_concrete(
        test_tasks, data.n_hidden, epochs, mc_samples, seed + 1, init_p, temperature
    )
    return ConcreteUCIResult(
        name=data.name,
        rmse=test.rmse,
        log_likelihood=test.log_likelihood,
        chosen=test.rates,
        epochs=epochs,
        mc_samples=mc_samples,
        seconds=time.perf_counter() - started,
        taus=chosen_taus,
        cpu_seconds=time.process_time() - cpu_started,
    )


def format_concrete_table(
    concrete: Sequence[ConcreteUCIResult],
    grid: Sequence[uci.UCIResult] = (),
    grid_cpu_seconds: dict[str, float] | None = None,
) -> str:
    """Concrete's RMSE, test LL, mean learned rates and CPU time beside the fixed-grid
    MC-dropout run of the same data set (where ``grid`` has one; its CPU seconds from
    ``grid_cpu_seconds``) and the share of the grid's CPU time that learning the rates saves."""
    by_name = {r.name: r for r in grid}
    grid_cpu = grid_cpu_seconds or {}
    header = (
        f"{'data set':<18}{'splits':>6}{'epochs':>7}  {'RMSE concrete':>15}  {'RMSE grid':>15}"
        f"  {'LL concrete':>15}  {'LL grid':>15}  {'p in/hid':>11}  {'cpu s conc':>10}"
        f"{'cpu s grid':>11}{'saved':>7}"
    )
    lines = [header, "-" * len(header)]

    def pair(values: tuple[float, float]) -> str:
        return f"{values[0]:>7.3f} ± {values[1]:<5.3f}"

    for r in concrete:
        other = by_name.get(r.name)
        p_in = sum(p for p, _ in r.chosen) / len(r.chosen)
        p_hidden = sum(p for _, p in r.chosen) / len(r.chosen)
        other_cpu = grid_cpu.get(r.name, math.nan)
        saved = 1 - r.cpu_seconds / other_cpu
        lines.append(
            f"{r.name:<18}{len(r.rmse):>6}{r.epochs:>7}  {pair(r.rmse_mean_se)}  "
            f"{pair(other.rmse_mean_se) if other else '-':>15}  {pair(r.log_likelihood_mean_se)}  "
            f"{pair(other.log_likelihood_mean_se) if other else '-':>15}  "
            f"{p_in:>5.3f}/{p_hidden:<5.3f}  {r.cpu_seconds:>10.1f}{other_cpu:>11.1f}"
            f"{saved:>7.0%}"
        )
    return "\n".join(lines)


def main_concrete(argv: Sequence[str] | None = None) -> list[ConcreteUCIResult]:
    """``python -m dropkit.experiments.learned uci-concrete --data DIR [options]``: concrete
    dropout on the UCI protocol; ``--grid`` also runs the fixed-grid MC dropout of
    :mod:`dropkit.experiments.uci` on the same data sets, splits and epochs, for the table
    and the time saved."""
    parser = argparse.ArgumentParser(description="concrete dropout on the UCI protocol")
    parser.add_argument("--data", required=True, help="folder with the UCI data set folders")
    _concrete_options(parser)
    return concrete_command(parser.parse_args(argv))


def _concrete_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--datasets", nargs="+", choices=uci.DATASETS,
                        default=["bostonHousing", "concrete", "energy", "wine-quality-red",
                                 "yacht"])  # fmt: skip
    parser.add_argument("--epochs", type=int, default=None, help="default: n_epochs.txt (40)")
    parser.add_argument("--splits", type=int, default=None, help="default: all splits")
    parser.add_argument("--mc-samples", type=int, default=10_000)
    parser.add_argument("--validation-samples", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", choices=("concrete", "grid"),
                        default=["concrete"],
                        help="concrete: learned rates; grid: the fixed grid over p of "
                        "dropkit.experiments.uci")  # fmt: skip
    parser.add_argument("--grid-masks", choices=("torch", "dropkit"), default="torch",
                        help="training masks of the grid run (dropkit: counter-based, as "
                        "concrete's uniforms)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def concrete_command(args: argparse.Namespace) -> list[ConcreteUCIResult]:
    """Run :func:`run_concrete_dataset` (and the grid with ``--grid``) and print the table."""
    if args.threads:
        torch.set_num_threads(args.threads)
    options = dict(
        epochs=args.epochs,
        splits=args.splits,
        mc_samples=args.mc_samples,
        validation_samples=args.validation_samples,
        seed=args.seed,
    )
    concrete: list[ConcreteUCIResult] = []
    grid: list[uci.UCIResult] = []
    grid_cpu: dict[str, float] = {}
    masks: uci.TrainMasks = getattr(args, "grid_masks", "torch")
    for name in args.datasets:
        data = uci.load_uci(name, args.data)
        if "concrete" in args.methods:
            concrete.append(run_concrete_dataset(data, **options))
            learned_result = concrete[-1]
            print(f"concrete {name}: RMSE {learned_result.rmse_mean_se[0]:.3f} ± "
                  f"{learned_result.rmse_mean_se[1]:.3f}, "
                  f"LL {learned_result.log_likelihood_mean_se[0]:.3f} ± "
                  f"{learned_result.log_likelihood_mean_se[1]:.3f}, "
                  f"cpu s {learned_result.cpu_seconds:.1f}, wall s {learned_result.seconds:.1f}",
                  flush=True)  # fmt: skip
        if "grid" in args.methods:
            cpu_started = time.process_time()
            grid.append(uci.run_dataset(data, train_masks=masks, **options))
            grid_cpu[name] = time.process_time() - cpu_started
            result = grid[-1]
            print(f"grid {name}: RMSE {result.rmse_mean_se[0]:.3f} ± "
                  f"{result.rmse_mean_se[1]:.3f}, LL {result.log_likelihood_mean_se[0]:.3f} ± "
                  f"{result.log_likelihood_mean_se[1]:.3f}, cpu s {grid_cpu[name]:.1f}, "
                  f"wall s {result.seconds:.1f}", flush=True)  # fmt: skip
    if concrete:
        print(format_concrete_table(concrete, grid, grid_cpu), flush=True)
    return concrete


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "svd":
        main_sparse_vd(sys.argv[2:])
    else:
        main_concrete(sys.argv[2:] if len(sys.argv) > 1 and sys.argv[1] == "uci-concrete" else None)
