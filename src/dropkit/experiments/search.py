"""``dropkit search``: an Optuna study over techniques and per-site rates.

The objective is the cross-validated validation score (accuracy, or -RMSE for regression) of
:func:`~dropkit.experiments.training.train_run`; fold 0 reports every epoch so the
``MedianPruner`` can stop bad trials early. The study lives in an Optuna storage — a SQLite file
in the run directory by default (rerunning resumes it), or any ``--storage`` URL (PostgreSQL,
MySQL) that several machines share; ``--workers N`` starts N processes on this machine.

Crash safety. The command plans what the study must hold — every grid point (``--sampler
grid``), or ``--trials`` finished trials (TPE) — and reconciles the storage against that plan
before each round of workers: a trial whose worker died is failed and its point planned again
(at once when the worker ran on this machine, by its PID and start time; otherwise when its
heartbeat is older than :data:`GRACE_S`); a trial still RUNNING with a live heartbeat (another
command on a shared storage) is left to finish or expire. Each grid point goes to one worker of
one round; a worker that finds its point taken by an earlier trial (two commands racing on one
storage), when it starts or when it ends, abandons its trial as FAIL. The command ends when
every planned point is finished exactly once (FAIL trials never count), and says what it
resumed. Workers die with the command (:mod:`._lifetime`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from dropkit.experiments._atomic import is_disk_full, prepare_out_dir, write_text
from dropkit.experiments._errors import OutputError, UsageError
from dropkit.experiments._lifetime import die_with_parent
from dropkit.experiments.data import load_dataset
from dropkit.experiments.models import model_sites
from dropkit.experiments.techniques import get_technique
from dropkit.experiments.training import RunConfig, train_run

__all__ = ["Plan", "best_rates", "open_study", "reconcile", "search_command", "trial_config"]

#: A worker that stops sending heartbeats for this long has its trial marked failed.
HEARTBEAT_S = 2
GRACE_S = 10

Point = tuple[str, float]


def _storage_label(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # unparsable: the error says so
        return url


#: Database drivers SQLAlchemy imports per URL scheme, and the package that brings each.
_DRIVERS = {
    "postgresql": "psycopg2-binary",
    "mysql": "mysqlclient (or PyMySQL, with mysql+pymysql://)",
    "mariadb": "mariadb",
    "oracle": "oracledb",
    "mssql": "pyodbc",
}


def _causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return chain


def _storage_error(error: Exception, url: str) -> Exception:
    """A storage failure as one line: full disk -> OutputError, anything else -> UsageError
    (naming the URL, and the root cause: a missing driver, a file that is not a study)."""
    where = _storage_label(url)
    chain = _causes(error)
    if any(is_disk_full(e) for e in chain):
        return OutputError(f"no space left on device writing the study storage {where}")
    missing = next((e for e in chain if isinstance(e, ImportError)), None)
    if missing is not None or "Failed to import DB access module" in str(error):
        scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
        package = _DRIVERS.get(scheme, "the driver for this URL")
        named = f" ({missing})" if missing is not None else ""
        return UsageError(
            f"--storage {where}: its database driver is not installed{named}; pip install {package}"
        )
    root = chain[-1]
    text = (str(root).strip().splitlines() or [type(root).__name__])[0]
    if "Could not parse" in text or ("Invalid" in text and "URL" in text):
        return UsageError(
            f"--storage {where}: not a database URL ({text}); expected e.g. "
            "sqlite:///path/study.sqlite or postgresql://user@host/db"
        )
    return UsageError(
        f"--storage {where}: cannot open the study storage ({text}); if it is a file, move "
        "it away or choose another --out / --storage"
    )


def _check_sqlite_study(url: str) -> None:
    """Refuse an existing SQLite file that is not an Optuna storage before Optuna writes its
    tables into it (read-only look; other URLs are left to Optuna)."""
    import sqlite3

    if not url.startswith("sqlite:///"):
        return
    path = Path(url[len("sqlite:///") :].split("?", 1)[0])
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as database:
            tables = {
                row[0]
                for row in database.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
    except sqlite3.Error as error:
        raise _storage_error(error, url) from error
    # Not one of Optuna's tables (a schema being created by another process has some).
    if tables and not tables & {"studies", "version_info", "trials", "alembic_version"}:
        raise UsageError(
            f"--storage {url}: cannot open the study storage ({path} is an SQLite database "
            f"but not an Optuna storage: tables {sorted(tables)}); if it is a file, move it away "
            "or choose another --out / --storage"
        )


def open_study(url: str, name: str, sampler: str, options: dict[str, Any]) -> Any:
    """Create or load (``load_if_exists``) the study ``name`` in the storage ``url``.

    Raises:
        UsageError: the URL does not parse, its driver is missing, or the storage is not an
            Optuna storage (corrupt file, other schema). OutputError: the disk is full.
    """
    import warnings

    import optuna

    # Heartbeats are how a SIGKILLed worker's trial gets failed; Optuna marks them experimental.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    pruner: Any = (
        optuna.pruners.NopPruner()
        if options["no_prune"]
        else optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    )
    # Grid points are fixed per trial by the worker (PartialFixedSampler), not drawn.
    chosen: Any = optuna.samplers.TPESampler(seed=None)  # workers must not draw the same points
    _check_sqlite_study(url)
    try:
        storage = optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S
        )
        return optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=chosen,
            pruner=pruner,
            direction="maximize",
            load_if_exists=True,
        )
    except (ImportError, RuntimeError, ValueError, KeyError, OSError) as error:
        raise _storage_error(error, url) from error
    except Exception as error:
        import sqlalchemy.exc

        if isinstance(error, (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.OptunaError)):
            raise _storage_error(error, url) from error
        raise


def grid_points(options: dict[str, Any]) -> list[Point]:
    """The planned grid: every (technique, rate) pair, in the order of the options."""
    return [
        (technique, float(rate))
        for technique in options["techniques"]
        for rate in options["grid_rates"]
    ]


def _point(trial: Any) -> Point | None:
    params = trial.params
    if "technique" not in params or "rate" not in params:
        return None
    return params["technique"], float(params["rate"])


@dataclass
class Plan:
    """Where a study stands against its plan (see :func:`reconcile`)."""

    planned: int
    done: int
    running: int
    stale_failed: int
    todo_points: list[Point] = field(default_factory=list)
    todo_trials: int = 0

    @property
    def todo(self) -> int:
        return len(self.todo_points) + self.todo_trials


_FINISHED_NAMES = ("COMPLETE", "PRUNED")


def _proc_start(pid: int | str) -> tuple[str, str] | None:
    """``(state, start time in clock ticks)`` of a process from ``/proc``; ``None``: gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after the command name, which may hold ')'
    return fields[0], fields[19]


def _worker_identity() -> dict[str, Any]:
    """Who runs a trial: enough for a command on the same machine to tell it died."""
    identity: dict[str, Any] = {"pid": os.getpid()}
    try:
        identity["boot"] = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        identity["pidns"] = os.readlink("/proc/self/ns/pid")
        started = _proc_start("self")
        if started is not None:
            identity["start"] = started[1]
    except OSError:  # not Linux: heartbeats alone tell
        pass
    return identity


def _dead_here(identity: Any) -> bool:
    """Whether the worker ``identity`` ran on this machine, in this PID namespace, and is gone
    (exited, a zombie, or its PID reused). Anything else: ``False`` (its heartbeat will tell)."""
    if not isinstance(identity, dict) or "start" not in identity:
        return False
    mine = _worker_identity()
    if identity.get("boot") != mine.get("boot") or identity.get("pidns") != mine.get("pidns"):
        return False
    found = _proc_start(identity["pid"])
    return found is None or found[0] in ("Z", "X") or found[1] != identity["start"]


def _beating(study: Any) -> set[int] | None:
    """Trial ids with a heartbeat row (``None``: cannot tell, e.g. not an RDB storage)."""
    try:
        from optuna.storages._rdb.models import TrialHeartbeatModel

        storage = getattr(study._storage, "_backend", study._storage)
        session = storage.scoped_session()
        try:
            return {row[0] for row in session.query(TrialHeartbeatModel.trial_id)}
        finally:
            storage.scoped_session.remove()
    except Exception:  # Optuna's internals moved: rely on its own stale-trial check alone
        return None


def _fail_dead_trials(study: Any) -> int:
    """Fail the RUNNING trials nobody runs: a worker on this machine that is gone (at once,
    no grace period), or a trial older than :data:`GRACE_S` that never sent a heartbeat (its
    worker died between creating it and starting the heartbeat). Returns how many."""
    import datetime

    import optuna

    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if not running:
        return 0
    beating: set[int] | None = None
    old = datetime.datetime.now() - datetime.timedelta(seconds=GRACE_S)
    failed = 0
    for trial in running:
        dead = _dead_here(trial.user_attrs.get("worker"))
        started = trial.datetime_start
        if not dead and "worker" not in trial.user_attrs and started is not None and started < old:
            beating = _beating(study) if beating is None else beating
            dead = beating is not None and trial._trial_id not in beating
        if not dead:
            continue
        try:
            study._storage.set_trial_state_values(
                trial._trial_id, state=optuna.trial.TrialState.FAIL
            )
            failed += 1
        except optuna.exceptions.UpdateFinishedTrialError:  # it finished meanwhile
            pass
    return failed


def reconcile(study: Any, points: Sequence[Point] | None, wanted: int) -> Plan:
    """Fail the stale RUNNING trials, then count finished and live trials against the plan.

    ``points``: the planned grid (each done by one finished trial), or ``None`` for ``wanted``
    finished trials (TPE). FAIL trials never count; a live RUNNING trial holds its point.
    """
    import warnings

    import optuna

    running_before = {
        t.number
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    }
    _fail_dead_trials(study)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    stale = sum(
        t.number in running_before and t.state == optuna.trial.TrialState.FAIL for t in trials
    )
    finished = [t for t in trials if t.state.name in _FINISHED_NAMES]
    running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    if points is None:
        todo = max(0, wanted - len(finished) - len(running))
        return Plan(wanted, min(len(finished), wanted), len(running), stale, todo_trials=todo)
    done_points = {_point(t) for t in finished}
    held = {_point(t) for t in running}
    todo_points = [p for p in points if p not in done_points and p not in held]
    done = sum(p in done_points for p in points)
    return Plan(len(points), done, len(running), stale, todo_points=todo_points)


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


class _TakenPoint(Exception):
    """This trial's grid point is held by an earlier trial (two commands raced for it)."""


def _objective(
    trial: Any, options: dict[str, Any], sites: list[str], point: Point | None = None
) -> float:
    import optuna

    trial.set_user_attr("worker", _worker_identity())  # a rerun here fails it at once if dead
    technique, rates = trial_config(trial, options, sites)
    trial.set_user_attr("rates", {f"drop{i}": r for i, r in enumerate(rates, start=1)})
    if point is not None:
        _check_point_free(trial, point)

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
    if point is not None:  # again at the end: two trials that raced for a point, one finishes
        _check_point_free(trial, point)
    return float(sum(scores) / len(scores))


def _check_point_free(trial: Any, point: Point) -> None:
    """Abandon ``trial`` (:class:`_TakenPoint`, stored as FAIL) if an earlier trial holds its
    grid point: finished, or RUNNING by a worker not known to be dead."""
    for other in trial.study.get_trials(deepcopy=False):
        if other.number >= trial.number or _point(other) != point:
            continue
        finished = other.state.name in _FINISHED_NAMES
        live = other.state.name == "RUNNING" and not _dead_here(other.user_attrs.get("worker"))
        if finished or live:
            trial.set_user_attr("abandoned_for", other.number)
            raise _TakenPoint(f"grid point {point} is held by trial {other.number}")


def _worker(
    url: str,
    name: str,
    options: dict[str, Any],
    trials: int,
    points: list[Point],
    parent_pid: int,
) -> None:
    die_with_parent(parent_pid)
    try:
        _optimize(url, name, options, trials, points)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole group: the parent reports, quietly
        raise SystemExit(130) from None


def _optimize(
    url: str, name: str, options: dict[str, Any], trials: int, points: list[Point]
) -> None:
    import optuna
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(url, name, options["sampler"], options)
    sites = model_sites(
        options["model"], load_dataset(options["dataset"], options["data_dir"]).input_shape
    )
    if not points:
        study.optimize(lambda trial: _objective(trial, options, sites), n_trials=trials)
        return
    base = optuna.samplers.RandomSampler()
    for point in points:
        fixed = {"technique": point[0], "rate": point[1]}
        study.sampler = optuna.samplers.PartialFixedSampler(fixed, base)
        study.optimize(
            lambda trial, point=point: _objective(trial, options, sites, point),
            n_trials=1,
            catch=(_TakenPoint,),
        )


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


def _resumed_line(plan: Plan, name: str, grid: bool) -> str:
    unit = "points" if grid else "trials"
    line = f"resumed study {name!r}: {plan.done} of {plan.planned} {unit} done"
    if plan.stale_failed:
        line += f", {plan.stale_failed} stale trial(s) of killed workers failed and retried"
    if plan.running:
        line += f", {plan.running} trial(s) in flight (live elsewhere, or expiring in {GRACE_S} s)"
    return line


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
        raise UsageError(f"search takes one model (--models M), got {args.models}")
    if args.study is not None and not args.study.strip():
        raise UsageError("--study must be a non-empty name, got ''")
    for technique_name in args.techniques:
        get_technique(technique_name)
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
    out: Path = prepare_out_dir(args.out)
    url = args.storage or f"sqlite:///{(out / 'study.sqlite').resolve()}"
    name = args.study or f"{args.dataset}-{args.models[0]}-{args.sampler}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(url, name, args.sampler, options)
    grid = args.sampler == "grid"
    points = grid_points(options)[: args.trials] if grid else None
    wanted = len(points) if points is not None else args.trials
    try:
        plan = reconcile(study, points, wanted)
    except Exception as error:
        raise _storage_error(error, url) from error
    if plan.done or plan.running or plan.stale_failed:
        print(_resumed_line(plan, name, grid))
    context = get_context("spawn")
    start = time.perf_counter()
    ran = 0
    waited = False
    with Progress(
        TextColumn("[bold]trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ) as progress:
        task = progress.add_task("trials", total=wanted, completed=plan.done)
        while plan.todo or plan.running:
            if not plan.todo:  # only trials in flight: wait until they end or expire
                if not waited:
                    progress.console.print(
                        f"waiting for {plan.running} trial(s) in flight (at most {GRACE_S} s "
                        "if their workers were killed)"
                    )
                    waited = True
                time.sleep(HEARTBEAT_S)
                plan = reconcile(study, points, wanted)
                progress.update(task, completed=plan.done)
                continue
            count = min(args.workers, plan.todo)
            shares = [
                plan.todo_trials // count + (i < plan.todo_trials % count) for i in range(count)
            ]
            assigned = [plan.todo_points[i::count] for i in range(count)]
            workers = [
                context.Process(
                    target=_worker, args=(url, name, options, share, chunk, os.getpid())
                )
                for share, chunk in zip(shares, assigned, strict=True)
            ]
            for worker in workers:
                worker.start()
            while any(worker.is_alive() for worker in workers):
                time.sleep(1.0)
                progress.update(task, completed=reconcile(study, points, wanted).done)
            failed = [worker.exitcode for worker in workers if worker.exitcode != 0]
            if failed:
                raise RuntimeError(f"{len(failed)} search worker(s) failed (exit codes {failed})")
            ran += plan.todo
            plan = reconcile(study, points, wanted)
            progress.update(task, completed=plan.done)
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.name in _FINISHED_NAMES]
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in finished):
        raise ValueError("no trial completed (all pruned or failed)")
    best = best_rates(study)
    best.update(
        dataset=args.dataset,
        model=args.models[0],
        sites=sites,
        storage=_storage_label(url),
        study=name,
    )
    write_text(out / "best.json", json.dumps(best, indent=2))
    from dropkit.experiments.results import write_trials

    write_trials(study, out, getattr(args, "tensorboard", None))
    elapsed = time.perf_counter() - start
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in finished)
    print(
        f"{len(finished)} finished trials ({pruned} pruned) in study {name!r} at "
        f"{_storage_label(url)}; {ran} run now in {elapsed:.0f} s"
    )
    print(
        f"best (trial {best['trial']}): technique={best['technique']} "
        f"validation score={best['value']:.4f}"
    )
    print("dropkit.surgery.set_rates mapping:", json.dumps(best["rates"]))
    print(f"written to {out / 'best.json'}")
    return 0 if not math.isnan(best["value"]) else 1
