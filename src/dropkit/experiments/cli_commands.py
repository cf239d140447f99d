"""Handlers of ``dropkit compare``, ``search`` and ``reproduce`` (imported only when used)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from dropkit.experiments import report
from dropkit.experiments._atomic import prepare_out_dir
from dropkit.experiments.compare import default_jobs, plan_runs, run_all, summarise, throughput
from dropkit.experiments.store import RunStore
from dropkit.experiments.training import RunConfig

__all__ = ["compare_command", "run_compare"]


def run_compare(
    configs: Sequence[RunConfig],
    out: Path,
    *,
    jobs: int,
    data_dir: str | None,
    title: str,
    notes: Sequence[str] = (),
) -> int:
    """Run (resuming) the configs into ``out/runs.sqlite``, print the table, write the report."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
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
        ) as progress:
            task = progress.add_task("runs", total=None, last="")

            def advance(done: int, total: int, config: RunConfig) -> None:
                label = f"{config.model}/{config.technique} p={config.rate:g} seed={config.seed}"
                progress.update(task, completed=done, total=total, last=label)

            skipped, ran = run_all(configs, store, jobs=jobs, data_dir=data_dir, progress=advance)
        elapsed = time.perf_counter() - start
        rows = summarise(store.runs(c.key() for c in configs))
    finally:
        store.close()
    report.render_terminal(rows, title)
    rate_note = (
        f"{ran} runs in {elapsed:.0f} s ({throughput(ran, elapsed):.1f} runs/min, {jobs} jobs)"
    )
    if skipped:
        rate_note += f"; {skipped} finished runs reused from {out / 'runs.sqlite'}"
    path = report.write_report(rows, out, title=title, notes=[*notes, rate_note])
    print(rate_note)
    print(f"report: {path}")
    return 0


def compare_command(args: argparse.Namespace) -> int:
    configs = plan_runs(
        dataset=args.dataset,
        models=args.models,
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
    title = f"dropkit compare: {args.dataset}, {args.epochs} epochs, {args.folds} fold(s)"
    jobs = args.jobs or default_jobs()
    return run_compare(configs, args.out, jobs=jobs, data_dir=args.data_dir, title=title)
