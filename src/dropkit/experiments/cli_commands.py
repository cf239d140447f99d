"""Handlers of ``dropkit compare``, ``search`` and ``reproduce`` (imported only when used)."""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Sequence
from pathlib import Path

from dropkit.experiments import report
from dropkit.experiments._atomic import prepare_out_dir
from dropkit.experiments._errors import UsageError
from dropkit.experiments.compare import (
    ComparisonResult,
    default_jobs,
    plan_runs,
    run_all,
    summarise,
    throughput,
)
from dropkit.experiments.store import RunStore
from dropkit.experiments.training import RunConfig

__all__ = ["compare_command", "execute", "run_compare"]


def execute(
    configs: Sequence[RunConfig],
    out: Path,
    *,
    jobs: int,
    data_dir: str | None,
    title: str,
    notes: Sequence[str] = (),
    tensorboard: Path | None = None,
    progress: bool = True,
) -> ComparisonResult:
    """Run (resuming) the configs into ``out/runs.sqlite``; write the report, ``results.csv``,
    ``results.json`` (and TensorBoard files); print the table when ``progress``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if tensorboard is not None and importlib.util.find_spec("tensorboard") is None:
        raise UsageError(  # before training, not after
            "--tensorboard needs the 'tensorboard' package: pip install 'dropkit[experiments]'"
        )
    store = RunStore(prepare_out_dir(out) / "runs.sqlite")
    try:
        start = time.perf_counter()
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[last]}"),
            disable=not progress,
        ) as bar:
            task = bar.add_task("runs", total=None, last="")

            def advance(done: int, total: int, config: RunConfig) -> None:
                label = f"{config.model}/{config.technique} p={config.rate:g} seed={config.seed}"
                bar.update(task, completed=done, total=total, last=label)

            skipped, ran = run_all(configs, store, jobs=jobs, data_dir=data_dir, progress=advance)
        elapsed = time.perf_counter() - start
        runs = store.runs(c.key() for c in configs)
    finally:
        store.close()
    rows = summarise(runs)
    if progress:
        report.render_terminal(rows, title)
    rate_note = (
        f"{ran} runs in {elapsed:.0f} s ({throughput(ran, elapsed):.1f} runs/min, {jobs} jobs)"
    )
    if skipped:
        rate_note += f"; {skipped} finished runs reused from {out / 'runs.sqlite'}"
    from dropkit.experiments.results import write_results, write_tensorboard

    results_csv, results_json = write_results(runs, out)
    if tensorboard is not None:
        write_tensorboard(runs, tensorboard)
    environment = report.environment(wall_s=elapsed, jobs=jobs, runs=runs)
    path = report.write_report(
        rows, out, title=title, notes=[*notes, rate_note], environment=environment
    )
    if progress:
        print(rate_note)
        print(f"results: {results_csv}, {results_json}")
        if tensorboard is not None:
            print(f"tensorboard: tensorboard --logdir {tensorboard}")
        print(f"report: {path}")
    return ComparisonResult(
        rows, out, out / "runs.sqlite", path, results_csv, results_json, ran, skipped, elapsed
    )


def run_compare(
    configs: Sequence[RunConfig],
    out: Path,
    *,
    jobs: int,
    data_dir: str | None,
    title: str,
    notes: Sequence[str] = (),
    tensorboard: Path | None = None,
) -> int:
    """Run (resuming) the configs into ``out/runs.sqlite``, print the table, write the report."""
    execute(
        configs, out, jobs=jobs, data_dir=data_dir, title=title, notes=notes,
        tensorboard=tensorboard,
    )  # fmt: skip
    return 0


def compare_command(args: argparse.Namespace) -> int:
    dataset = args.dataset
    if getattr(args, "data", None) is not None:
        from dropkit.experiments.data import load_file

        dataset = load_file(
            args.data,
            label=args.label,
            task=args.task,
            test_data=args.test_data,
            test_fraction=args.test_fraction,
            image_size=args.image_size,
        ).name
    models = [args.model] if getattr(args, "model", None) else args.models
    configs = plan_runs(
        dataset=dataset,
        models=models,
        techniques=args.techniques,
        rates=args.rates,
        seeds=list(range(args.seeds)),
        folds=args.folds,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        train_sizes=args.train_sizes or [None],
        width=args.width,
        data_dir=args.data_dir,
    )
    title = f"dropkit compare: {dataset}, {args.epochs} epochs, {args.folds} fold(s)"
    jobs = args.jobs or default_jobs()
    return run_compare(
        configs,
        args.out,
        jobs=jobs,
        data_dir=args.data_dir,
        title=title,
        tensorboard=getattr(args, "tensorboard", None),
    )
