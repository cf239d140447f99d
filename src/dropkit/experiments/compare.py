"""``dropkit compare``: the same model over techniques x rates x seeds x folds, resumable and
parallel, summarised with mean ± std, the paired difference to ``none`` with its 95% confidence
interval, and paired tests with Holm's correction across techniques.

The module is also callable: ``dropkit.experiments.compare(model_fn, train_data, test_data,
techniques=..., rates=...)`` is :func:`compare` (type checkers: ``from
dropkit.experiments.compare import compare``).
"""

from __future__ import annotations

import math
import os
import pickle
import sys
import types
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from dropkit.experiments._errors import UsageError
from dropkit.experiments._lifetime import die_with_parent
from dropkit.experiments.data import (
    Dataset,
    from_arrays,
    load_dataset,
    load_file,
    register_dataset,
    registered_datasets,
)
from dropkit.experiments.models import (
    ModelFactory,
    check_factory,
    is_custom,
    model_sites,
    register_factory,
    registered_factories,
)
from dropkit.experiments.store import RunStore
from dropkit.experiments.techniques import get_technique
from dropkit.experiments.training import RunConfig, fold_indices, train_run
from dropkit.functional._checks import check_p

__all__ = [
    "ComparisonResult",
    "Row",
    "compare",
    "default_jobs",
    "holm",
    "plan_runs",
    "run_all",
    "summarise",
    "throughput",
]

Progress = Callable[[int, int, RunConfig], None]


def plan_runs(
    *,
    dataset: str,
    models: Sequence[str],
    techniques: Sequence[str],
    rates: Sequence[float],
    seeds: Sequence[int],
    folds: int = 1,
    epochs: int = 20,
    batch_size: int = 100,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
    train_sizes: Sequence[int | None] = (None,),
    width: int | None = None,
    data_dir: str | Path | None = None,
) -> list[RunConfig]:
    """Every run of the grid, validated; techniques that fit no site of a model are skipped
    for that model (``spatial`` needs conv maps, ``locked`` a sequence)."""
    for rate in rates:
        check_p(rate, "rate", allow_one=False)
    if folds < 1:
        raise ValueError(f"folds must be >= 1, got {folds}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    chosen = [get_technique(name) for name in techniques]
    dataset_info = load_dataset(dataset, data_dir)
    available = len(dataset_info.y_train)
    for train_size in train_sizes:  # a split that cannot be made fails here, before any store
        if train_size is not None and not 1 <= train_size <= available:
            raise UsageError(
                f"--train-sizes: {dataset} has {available} training examples, so each size "
                f"must be in [1, {available}], got {train_size}"
            )
        try:
            fold_indices(dataset_info, folds, 0, train_size)
        except ValueError as error:
            raise UsageError(
                f"{dataset}: cannot split {len(dataset_info.y_train)} training examples into "
                f"{'a 10% validation holdout' if folds == 1 else f'{folds} folds'} ({error})"
            ) from None
    configs = []
    for model in models:
        sites = model_sites(model, dataset_info.input_shape)
        custom = is_custom(model)
        if custom:  # the user's factory: built and run once on zeros before anything is stored
            trying = next((t.name for t in chosen if t.uses_rate), "dropout")
            check_factory(model, dataset_info.input_shape, dataset_info.num_outputs, trying)
        for technique in chosen:
            if not custom and not technique.applies_to(sites):
                continue
            technique_rates = rates if technique.uses_rate else [0.0]
            for rate, train_size, seed, fold in (
                (r, t, s, f)
                for r in technique_rates
                for t in train_sizes
                for s in seeds
                for f in range(folds)
            ):
                configs.append(
                    RunConfig(
                        dataset,
                        model,
                        technique.name,
                        (float(rate),) * len(sites),
                        seed,
                        fold,
                        folds,
                        epochs,
                        batch_size,
                        lr,
                        weight_decay,
                        train_size,
                        width,
                    )
                )
    if not configs:
        raise ValueError(f"no technique of {list(techniques)} applies to models {list(models)}")
    return configs


_WORKER_DATA_DIR: str | None = None


def _init_worker(
    data_dir: str | None,
    datasets: dict[str, Dataset] | None = None,
    factories: dict[str, ModelFactory] | None = None,
    parent_pid: int | None = None,
) -> None:
    import torch

    if parent_pid is not None:  # a pool worker: end with the command, even on SIGKILL
        die_with_parent(parent_pid)
    global _WORKER_DATA_DIR
    _WORKER_DATA_DIR = data_dir
    for dataset in (datasets or {}).values():  # the user's data and models, sent by the parent
        register_dataset(dataset)
    for name, factory in (factories or {}).items():
        register_factory(name, factory)
    torch.set_num_threads(1)  # one process per core beats intra-op threads on small models


def _work(config: RunConfig) -> dict[str, Any]:
    return train_run(config, _WORKER_DATA_DIR)


def run_all(
    configs: Sequence[RunConfig],
    store: RunStore,
    *,
    jobs: int = 1,
    data_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> tuple[int, int]:
    """Run every config not yet in ``store``, storing each as soon as it ends.

    ``jobs > 1`` runs that many worker processes (spawned, one thread each). Returns
    ``(already_done, newly_run)``.
    """
    done = store.finished_keys()
    pending = [c for c in dict.fromkeys(configs) if c.key() not in done]
    skipped = len(configs) - len(pending)
    directory = None if data_dir is None else str(data_dir)
    finished = 0
    if not pending:
        return skipped, 0
    if jobs <= 1 or len(pending) == 1:  # no worker processes to start for one run
        _init_worker(directory)
        for config in pending:
            store.add(config, _work(config))
            finished += 1
            if progress:
                progress(finished, len(pending), config)
        return skipped, finished
    datasets = registered_datasets({c.dataset for c in pending})
    factories = registered_factories([c.model for c in pending])
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(directory, datasets, factories, os.getpid()),
    ) as pool:
        queue = iter(pending)
        running: dict[Future[dict[str, Any]], RunConfig] = {}
        # Keep only `jobs` runs submitted, so a kill loses no more than the runs in flight.
        for config in queue:
            running[pool.submit(_work, config)] = config
            if len(running) >= jobs:
                break
        while running:
            completed, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in completed:
                config = running.pop(future)
                store.add(config, future.result())
                finished += 1
                if progress:
                    progress(finished, len(pending), config)
                following = next(queue, None)
                if following is not None:
                    running[pool.submit(_work, following)] = following
    return skipped, finished


@dataclass
class Row:
    """One line of the summary: a (model, technique, rate, train_size) cell over its seeds."""

    model: str
    technique: str
    rate: float
    train_size: int | None
    seeds: list[int]
    test_score: list[float]  # per seed, averaged over folds
    val_score: list[float]
    test_nll: list[float]
    test_ece: list[float]
    gap: list[float]
    wall_s: list[float]
    p_value_t: float | None = None
    p_value_wilcoxon: float | None = None
    delta_vs_none: float | None = None
    #: 95% t interval of the mean paired difference (``delta_vs_none``) over seeds.
    delta_ci: tuple[float, float] | None = None
    #: ``p_value_t`` adjusted by Holm's method over the techniques of the same model (and size).
    p_value_holm: float | None = None
    curves: dict[str, list[float]] = field(default_factory=dict)  # mean over seeds
    curves_std: dict[str, list[float]] = field(default_factory=dict)  # std over seeds
    reliability: dict[str, list[float]] = field(default_factory=dict)
    runs: int = 0  # seeds x folds

    @staticmethod
    def stats(values: Sequence[float]) -> tuple[float, float]:
        """Mean and sample standard deviation (0 for one value)."""
        array = np.asarray([v for v in values if v is not None], dtype=np.float64)
        if array.size == 0:
            return math.nan, math.nan
        return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


def _mean(values: Iterable[float | None]) -> float:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else math.nan


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (Holm 1979) of a family of p-values, in the input order.

    With the p-values sorted ``p_(1) <= ... <= p_(m)``, the adjusted ``p_(i)`` is
    ``max_{j <= i} min(1, (m - j + 1) p_(j))``; rejecting where it is below alpha keeps the
    family-wise error rate at alpha.

    Example::

        holm([0.01, 0.04, 0.03])  # [0.03, 0.06, 0.06]
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def summarise(runs: Sequence[tuple[RunConfig, dict[str, Any]]]) -> list[Row]:
    """Group runs into rows, average folds within a seed, and compare each row with ``none``
    of the same model, paired by seed: the mean difference with its 95% t interval,
    ``scipy.stats.ttest_rel`` (Holm-adjusted over the model's techniques) and ``wilcoxon``."""
    from scipy import stats

    cells: dict[tuple[str, str, float, int | None], dict[int, list[dict[str, Any]]]] = {}
    for config, result in runs:
        cell = (config.model, config.technique, config.rate, config.train_size)
        cells.setdefault(cell, {}).setdefault(config.seed, []).append(result)
    rows = []
    for (model, technique, rate, train_size), by_seed in cells.items():
        seeds = sorted(by_seed)
        per_seed = [by_seed[s] for s in seeds]
        all_results = [r for results in per_seed for r in results]
        # Folds averaged within a seed, then mean and spread over seeds.
        seed_curves = {
            key: np.asarray(
                [np.mean([r["curves"][key] for r in results], axis=0) for results in per_seed]
            )
            for key in all_results[0]["curves"]
        }
        curves = {key: values.mean(axis=0).tolist() for key, values in seed_curves.items()}
        curves_std = {
            key: (values.std(axis=0, ddof=1) if len(values) > 1 else 0 * values[0]).tolist()
            for key, values in seed_curves.items()
        }
        reliability: dict[str, list[float]] = {}
        if "reliability" in all_results[0]:
            for key in all_results[0]["reliability"]:
                reliability[key] = np.sum(
                    [r["reliability"][key] for r in all_results], axis=0
                ).tolist()
        per_metric = {
            metric: [_mean(r.get(metric) for r in results) for results in per_seed]
            for metric in ("test_score", "val_score", "test_nll", "test_ece", "gap", "wall_s")
        }
        rows.append(
            Row(
                model,
                technique,
                rate,
                train_size,
                seeds,
                test_score=per_metric["test_score"],
                val_score=per_metric["val_score"],
                test_nll=per_metric["test_nll"],
                test_ece=per_metric["test_ece"],
                gap=per_metric["gap"],
                wall_s=per_metric["wall_s"],
                curves=curves,
                curves_std=curves_std,
                reliability=reliability,
                runs=len(all_results),
            )
        )
    baselines = {(r.model, r.train_size): r for r in rows if r.technique == "none"}
    for row in rows:
        base = baselines.get((row.model, row.train_size))
        if base is None or row is base:
            continue
        common = [s for s in row.seeds if s in base.seeds]
        ours = np.array([row.test_score[row.seeds.index(s)] for s in common])
        theirs = np.array([base.test_score[base.seeds.index(s)] for s in common])
        if len(common) == 0:
            continue
        differences = ours - theirs
        row.delta_vs_none = float(np.mean(differences))
        if len(common) >= 2:
            half = float(
                stats.t.ppf(0.975, len(common) - 1)
                * np.std(differences, ddof=1)
                / math.sqrt(len(common))
            )
            row.delta_ci = (row.delta_vs_none - half, row.delta_vs_none + half)
        if len(common) >= 2 and np.any(ours != theirs):
            row.p_value_t = _finite(stats.ttest_rel(ours, theirs).pvalue)
            row.p_value_wilcoxon = _finite(stats.wilcoxon(ours, theirs).pvalue)
    families: dict[tuple[str, int | None], list[Row]] = {}
    for row in rows:
        if row.p_value_t is not None:
            families.setdefault((row.model, row.train_size), []).append(row)
    for family in families.values():
        for row, adjusted in zip(family, holm([r.p_value_t or 0.0 for r in family]), strict=True):
            row.p_value_holm = adjusted
    order = {"none": 0}
    rows.sort(
        key=lambda r: (r.model, r.train_size or 0, order.get(r.technique, 1), r.technique, r.rate)
    )
    return rows


def default_jobs() -> int:
    """Worker processes to use when ``--jobs`` is not given: the usable cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def throughput(runs: int, seconds: float) -> float:
    """Runs per minute."""
    return runs / seconds * 60.0 if seconds > 0 else math.nan


@dataclass
class ComparisonResult:
    """What :func:`compare` (and ``dropkit compare``) produced."""

    rows: list[Row]  # the summary table, one row per (model, technique, rate, train size)
    out: Path  # the run directory
    store: Path  # runs.sqlite (resumable)
    report: Path  # report.html
    results_csv: Path  # one row per run
    results_json: Path
    ran: int  # runs trained by this call
    reused: int  # runs found in the store
    wall_s: float


def _as_arrays(data: Any, what: str) -> tuple[Any, Any]:
    """``(x, y)`` from a pair of arrays/tensors or a map-style dataset of ``(x, y)`` items."""
    if isinstance(data, tuple) and len(data) == 2:
        return data
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        import torch

        items = [data[i] for i in range(len(data))]
        if not items or not all(isinstance(i, (tuple, list)) and len(i) == 2 for i in items):
            raise UsageError(f"{what} must be (x, y) arrays or a dataset of (x, y) pairs")
        x = torch.stack([torch.as_tensor(i[0]) for i in items])
        y = torch.as_tensor([torch.as_tensor(i[1]).item() for i in items])
        return x, y
    raise UsageError(f"{what} must be (x, y) arrays or a dataset of (x, y) pairs, got {data!r}")


def _factory_name(model_fn: ModelFactory, jobs: int) -> str:
    module = getattr(model_fn, "__module__", None) or "__main__"
    name = getattr(model_fn, "__qualname__", None) or type(model_fn).__name__
    if jobs > 1:
        try:
            pickle.dumps(model_fn)
        except Exception as error:
            raise UsageError(
                f"model_fn {module}:{name} cannot be sent to worker processes ({error}); with "
                "jobs > 1 pass a module-level function (or jobs=1)"
            ) from None
    return f"{module}:{name}"


def compare(
    model_fn: ModelFactory | str,
    train_data: Any,
    test_data: Any = None,
    *,
    techniques: Sequence[str] = ("none", "dropout"),
    rates: Sequence[float] = (0.1,),
    seeds: int | Sequence[int] = 5,
    epochs: int = 20,
    folds: int = 1,
    batch_size: int = 100,
    lr: float = 1e-2,
    weight_decay: float = 0.0,
    task: str = "auto",
    name: str = "data",
    out: str | Path = "runs/compare",
    jobs: int = 1,
    tensorboard: str | Path | None = None,
    title: str | None = None,
    progress: bool = False,
) -> ComparisonResult:
    """Train ``model_fn``'s model under each technique x rate x seed (x fold) on your data:
    the plan, resumable store, summary and report of ``dropkit compare``.

    Args:
        model_fn: a factory ``(technique, p) -> nn.Module`` that puts
            ``technique.make_layer(kind, p)`` where it wants dropout (``kind``: ``"dense"``,
            ``"conv1d"``, ``"conv2d"`` or ``"sequence"``; ``technique.name`` is the name);
            or a built-in model name (``"mlp"``, ``"cnn"``, ``"gru"``). Schedules
            (``curriculum``, ``early``, ``late``) drive every dropkit module in the model.
            With ``jobs > 1`` it must be picklable: a module-level function.
        train_data: ``(x, y)`` (NumPy arrays, tensors or lists; ``x`` is ``(N, ...)``), a
            map-style dataset of ``(x, y)`` pairs, or a path (CSV, ``.npz``, ImageFolder
            directory: see :func:`dropkit.experiments.data.load_file`).
        test_data: the same for the test set; None with a path splits it 80/20.
        techniques, rates, seeds, epochs, folds, batch_size, lr, weight_decay: the grid and
            the training (``seeds`` an int means ``0..seeds-1``); ``folds >= 2`` validates by
            k-fold on ``train_data``, 1 holds out 10%.
        task: ``"classification"``, ``"regression"`` or ``"auto"`` (integer labels with at
            most 20 values, or non-numeric labels, are classes).
        name: the data set's name in the store and report (a digest of the data is appended).
        out: the run directory (``runs.sqlite``, ``report.html``, ``results.csv/json``);
            rerunning the same call reuses its finished runs.
        jobs: worker processes.
        tensorboard: a directory for TensorBoard event files (one run per subdirectory).

    Returns:
        A :class:`ComparisonResult` with the summary rows and the written paths.

    Example::

        import numpy as np
        from torch import nn
        import dropkit.experiments

        def make(technique, p):
            return nn.Sequential(nn.Linear(8, 32), nn.ReLU(),
                                 technique.make_layer("dense", p), nn.Linear(32, 2))

        x = np.random.default_rng(0).normal(size=(200, 8)).astype("float32")
        y = (x[:, 0] > 0).astype("int64")
        result = dropkit.experiments.compare(make, (x[:150], y[:150]), (x[150:], y[150:]),
                                             techniques=["none", "dropout"], rates=[0.2],
                                             seeds=3, epochs=2, out="runs/mine")
        print(result.rows[1].delta_vs_none, result.report)

    Raises:
        UsageError: bad data (NaNs, non-numeric features, one class), a factory that does not
            return an ``nn.Module``, bad options. Nothing is written before these checks.
    """
    from dropkit.experiments.cli_commands import execute

    if isinstance(train_data, (str, Path)):
        test_path = test_data if isinstance(test_data, (str, Path)) else None
        dataset = load_file(train_data, task=task, test_data=test_path)
    else:
        if test_data is None:
            raise UsageError("test_data is required when train_data is not a file")
        x_train, y_train = _as_arrays(train_data, "train_data")
        x_test, y_test = _as_arrays(test_data, "test_data")
        loaded = from_arrays(name, x_train, y_train, x_test, y_test, task=task)
        from dropkit.experiments.data import _digest

        digest = _digest(loaded.x_train, loaded.y_train, loaded.x_test, loaded.y_test)
        dataset = Dataset(
            f"{name}@{digest}",
            loaded.x_train,
            loaded.y_train,
            loaded.x_test,
            loaded.y_test,
            loaded.task,
            loaded.num_classes,
        )
    register_dataset(dataset)
    if jobs < 1:
        raise UsageError(f"jobs must be >= 1, got {jobs}")
    if isinstance(model_fn, str):
        model = model_fn
    elif callable(model_fn):
        model = register_factory(_factory_name(model_fn, jobs), model_fn)
    else:
        raise UsageError("model_fn must be a factory (technique, p) -> nn.Module or a model name")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    configs = plan_runs(
        dataset=dataset.name,
        models=[model],
        techniques=techniques,
        rates=rates,
        seeds=seed_list,
        folds=folds,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
    )
    return execute(
        configs,
        Path(out),
        jobs=jobs,
        data_dir=None,
        title=title or f"dropkit compare: {dataset.name}, {epochs} epochs, {folds} fold(s)",
        tensorboard=None if tensorboard is None else Path(tensorboard),
        progress=progress,
    )


class _CallableModule(types.ModuleType):
    """``dropkit.experiments.compare(...)`` calls :func:`compare`; the module stays a module."""

    def __call__(self, *args: Any, **kwargs: Any) -> ComparisonResult:
        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
