"""``dropkit search``: an Optuna study over techniques and per-site rates.

The objective is the cross-validated validation score (accuracy, or -RMSE for regression) of
:func:`~dropkit.experiments.training.train_run`; fold 0 reports every epoch so the
``MedianPruner`` can stop bad trials early. The study lives in an Optuna storage — a SQLite file
in the run directory by default (rerunning resumes it), or any ``--storage`` URL (PostgreSQL,
MySQL) that several machines share; ``--workers N`` starts N processes on this machine.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from dropkit.experiments.data import load_dataset
from dropkit.experiments.models import model_sites
from dropkit.experiments.techniques import get_technique
from dropkit.experiments.training import RunConfig, train_run

__all__ = ["best_rates", "open_study", "search_command", "trial_config"]

#: A worker that stops sending heartbeats for this long has its trial marked failed.
HEARTBEAT_S = 2
GRACE_S = 10


def open_study(url: str, name: str, sampler: str, options: dict[str, Any]) -> Any:
    """Create or load (``load_if_exists``) the study ``name`` in the storage ``url``."""
    import warnings

    import optuna

    # Heartbeats are how a SIGKILLed worker's trial gets failed; Optuna marks them experimental.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    storage = optuna.storages.RDBStorage(
        url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S
    )
    if sampler == "grid":
        space = {"technique": list(options["techniques"]), "rate": list(options["grid_rates"])}
        chosen: Any = optuna.samplers.GridSampler(space, seed=options["seed"])
    else:
        chosen = optuna.samplers.TPESampler(seed=None)  # workers must not draw the same points
    pruner: Any = (
        optuna.pruners.NopPruner()
        if options["no_prune"]
        else optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    )
    return optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=chosen,
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )


def trial_config(trial: Any, options: dict[str, Any], sites: list[str]) -> tuple[str, list[float]]:
    """Ask the trial for a technique and one rate per site (one shared rate for grid)."""
    technique = get_technique(trial.suggest_categorical("technique", list(options["techniques"])))
    if options["sampler"] == "grid":
        rate = trial.suggest_float("rate", 0.0, 1.0)
        rates = [
            rate if technique.uses_rate and kind in technique.site_kinds else 0.0 for kind in sites
        ]
        return technique.name, rates
    rates = []
    for index, kind in enumerate(sites, start=1):
        if technique.uses_rate and kind in technique.site_kinds:
            rates.append(trial.suggest_float(f"drop{index}", 0.0, options["max_rate"]))
        else:
            rates.append(0.0)
    return technique.name, rates


def _objective(trial: Any, options: dict[str, Any], sites: list[str]) -> float:
    import optuna

    technique, rates = trial_config(trial, options, sites)
    trial.set_user_attr("rates", {f"drop{i}": r for i, r in enumerate(rates, start=1)})

    def report(epoch: int, values: dict[str, float]) -> None:
        trial.report(values["val_score"], epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()

    scores = []
    for fold in range(options["folds"]):
        config = RunConfig(
            options["dataset"],
            options["model"],
            technique,
            tuple(rates),
            options["seed"],
            fold,
            options["folds"],
            options["epochs"],
            options["batch_size"],
            options["lr"],
            options["weight_decay"],
            width=options["width"],
        )
        result = train_run(config, options["data_dir"], on_epoch=report if fold == 0 else None)
        scores.append(result["val_score"])
    return float(sum(scores) / len(scores))


def _worker(url: str, name: str, options: dict[str, Any], trials: int) -> None:
    try:
        _optimize(url, name, options, trials)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole group: the parent reports, quietly
        raise SystemExit(130) from None


def _optimize(url: str, name: str, options: dict[str, Any], trials: int) -> None:
    import optuna
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(url, name, options["sampler"], options)
    sites = model_sites(
        options["model"], load_dataset(options["dataset"], options["data_dir"]).input_shape
    )
    study.optimize(lambda trial: _objective(trial, options, sites), n_trials=trials)


def _finished(study: Any) -> list[Any]:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(deepcopy=False, states=states)


def best_rates(study: Any) -> dict[str, Any]:
    """The best trial as ``{"technique", "rates": {site: rate}, "value", "trial"}``; ``rates``
    is a :func:`dropkit.surgery.set_rates` mapping."""
    best = study.best_trial
    return {
        "technique": best.params["technique"],
        "rates": best.user_attrs["rates"],
        "value": best.value,
        "trial": best.number,
    }


def search_command(args: argparse.Namespace) -> int:
    import optuna
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    if len(args.models) != 1:
        raise ValueError(f"search takes one model (--models M), got {args.models}")
    for name in args.techniques:
        get_technique(name)
    dataset = load_dataset(args.dataset, args.data_dir)
    sites = model_sites(args.models[0], dataset.input_shape)
    options = {
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "model": args.models[0],
        "techniques": args.techniques,
        "sampler": args.sampler,
        "max_rate": args.max_rate,
        "grid_rates": args.grid_rates,
        "seed": args.seed,
        "folds": args.folds,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "width": args.width,
        "no_prune": args.no_prune,
    }
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    url = args.storage or f"sqlite:///{(out / 'study.sqlite').resolve()}"
    name = args.study or f"{args.dataset}-{args.models[0]}-{args.sampler}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(url, name, args.sampler, options)
    wanted = args.trials
    if args.sampler == "grid":
        wanted = min(wanted, len(args.techniques) * len(args.grid_rates))
    remaining = max(0, wanted - len(_finished(study)))
    shares = [
        remaining // args.workers + (i < remaining % args.workers) for i in range(args.workers)
    ]
    context = get_context("spawn")
    workers = [
        context.Process(target=_worker, args=(url, name, options, share))
        for share in shares
        if share > 0
    ]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    with Progress(
        TextColumn("[bold]trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ) as progress:
        task = progress.add_task("trials", total=wanted, completed=wanted - remaining)
        while any(worker.is_alive() for worker in workers):
            time.sleep(1.0)
            progress.update(task, completed=len(_finished(study)))
        progress.update(task, completed=len(_finished(study)))
    failed = [worker.exitcode for worker in workers if worker.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} search worker(s) failed (exit codes {failed})")
    finished = _finished(study)
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in finished):
        raise ValueError("no trial completed (all pruned or failed)")
    best = best_rates(study)
    best.update(dataset=args.dataset, model=args.models[0], sites=sites, storage=url, study=name)
    (out / "best.json").write_text(json.dumps(best, indent=2))
    from dropkit.experiments.results import write_trials

    write_trials(study, out, getattr(args, "tensorboard", None))
    elapsed = time.perf_counter() - start
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in finished)
    print(
        f"{len(finished)} finished trials ({pruned} pruned) in study {name!r} at {url}; "
        f"{remaining} run now in {elapsed:.0f} s"
    )
    print(
        f"best (trial {best['trial']}): technique={best['technique']} "
        f"validation score={best['value']:.4f}"
    )
    print("dropkit.surgery.set_rates mapping:", json.dumps(best["rates"]))
    print(f"written to {out / 'best.json'}")
    return 0 if not math.isnan(best["value"]) else 1
