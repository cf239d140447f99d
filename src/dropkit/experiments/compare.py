"""``dropkit compare``: the same model over techniques x rates x seeds x folds, resumable and
parallel, summarised with mean ± std and a paired test against ``none``."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from dropkit.experiments._lifetime import die_with_parent
from dropkit.experiments.data import load_dataset
from dropkit.experiments.models import model_sites
from dropkit.experiments.store import RunStore
from dropkit.experiments.techniques import get_technique
from dropkit.experiments.training import RunConfig, train_run
from dropkit.functional._checks import check_p

__all__ = ["Row", "default_jobs", "plan_runs", "run_all", "summarise", "throughput"]

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
    configs = []
    for model in models:
        sites = model_sites(model, dataset_info.input_shape)
        for technique in chosen:
            if not technique.applies_to(sites):
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


def _init_worker(data_dir: str | None, parent_pid: int | None = None) -> None:
    import torch

    if parent_pid is not None:  # a pool worker: end with the command, even on SIGKILL
        die_with_parent(parent_pid)
    global _WORKER_DATA_DIR
    _WORKER_DATA_DIR = data_dir
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
    if jobs <= 1:
        _init_worker(directory)
        for config in pending:
            store.add(config, _work(config))
            finished += 1
            if progress:
                progress(finished, len(pending), config)
        return skipped, finished
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(directory, os.getpid()),
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
    curves: dict[str, list[float]] = field(default_factory=dict)
    reliability: dict[str, list[float]] = field(default_factory=dict)

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


def summarise(runs: Sequence[tuple[RunConfig, dict[str, Any]]]) -> list[Row]:
    """Group runs into rows, average folds within a seed, and test each row against ``none``
    of the same model (paired by seed: ``scipy.stats.ttest_rel`` and ``wilcoxon``)."""
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
        curves = {
            key: np.mean([r["curves"][key] for r in all_results], axis=0).tolist()
            for key in all_results[0]["curves"]
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
                reliability=reliability,
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
        row.delta_vs_none = float(np.mean(ours - theirs))
        if len(common) >= 2 and np.any(ours != theirs):
            row.p_value_t = _finite(stats.ttest_rel(ours, theirs).pvalue)
            row.p_value_wilcoxon = _finite(stats.wilcoxon(ours, theirs).pvalue)
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
