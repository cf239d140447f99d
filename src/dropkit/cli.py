"""The ``dropkit`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16"}  # fmt: skip


class _ArgumentParser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"dropkit: error: {message}\n")


def _positive_size(text: str) -> int:
    try:
        value = int(text, 0) if not text.startswith("2^") else 1 << int(text[2:])
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"size must be an int or 2^K, got {text!r}") from error
    if value < 1:
        raise argparse.ArgumentTypeError(f"size must be >= 1, got {value}")
    return value


def _bench(args: argparse.Namespace) -> int:
    import torch

    from dropkit import benchmark

    dtypes = [getattr(torch, _DTYPES[d]) for d in args.dtypes]
    suites = _suites(args)
    progress = lambda text: print(f"  timing {text}", file=sys.stderr, flush=True)  # noqa: E731
    results: list[benchmark.BenchResult] = []
    tables: list[str] = []
    if "ops" in suites:
        sizes = args.sizes or ([1 << 16, 1 << 20, 1 << 24] if args.full else [1 << 16, 1 << 20])
        previous_threads = torch.get_num_threads()
        if args.threads is not None:
            torch.set_num_threads(args.threads[0])
        ops_results = benchmark.run_benchmarks(
            ops=args.ops,
            sizes=sizes,
            dtypes=dtypes,
            device=args.device,
            min_time_s=args.min_time,
            progress=progress,
        )
        torch.set_num_threads(previous_threads)
        results += ops_results
        tables.append(benchmark.format_table(ops_results))
    if "dropout" in suites:
        sizes = args.sizes or ([1 << 16, 1 << 20, 1 << 24] if args.full else [1 << 16, 1 << 20])
        default_threads = [1, 2] if args.full else None
        dropout_results = benchmark.run_dropout_benchmarks(
            sizes=sizes,
            dtypes=dtypes,
            threads=args.threads or default_threads,
            rates=args.rates or ([0.1, 0.5] if args.full else [0.1]),
            device=args.device,
            min_time_s=args.min_time,
            progress=progress,
        )
        results += dropout_results
        tables.append(benchmark.format_dropout_table(dropout_results))
    if "fused" in suites:
        sizes = args.sizes or ([1 << 20, 1 << 24] if args.full else [1 << 20])
        fused_results = benchmark.run_fused_benchmarks(
            sizes=sizes,
            dtypes=dtypes,
            threads=args.threads,
            rates=args.rates or [0.1],
            activations=args.activations,
            device=args.device,
            min_time_s=args.min_time,
            progress=progress,
        )
        results += fused_results
        tables.append(benchmark.format_fused_table(fused_results))
    print("\n\n".join(tables))
    benchmark.write_json(results, args.output)
    print(f"\nresults written to {args.output}")
    return 0


def _suites(args: argparse.Namespace) -> set[str]:
    """``--suite``; by default both, but only the ops table when ``--ops`` names ops."""
    if args.suite != "auto":
        return {"ops", "dropout", "fused"} if args.suite == "all" else {args.suite}
    return {"ops"} if args.ops else {"ops", "dropout"}


_SUITE_HELP = (
    "ops: each op vs PyTorch and the copy floor; dropout: dropout vs F.dropout, torch.compile, "
    "x*2.0, a preallocated copy and dropkit's out=; fused: residual + dropout(act(x + bias)) vs "
    "the reference backend, PyTorch eager and an allocating x + residual; auto (default): ops "
    "and dropout, or ops if --ops is given; all: the three"
)
_FULL_HELP = "sizes up to 2^24; dropout suite: 1 and 2 threads, p 0.1 and 0.5"


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"rate must be a number in [0, 1), got {text!r}"
        ) from error
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"rate must be in [0, 1), got {value:g}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}") from error
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {value}")
    return value


def _compare(args: argparse.Namespace) -> int:
    from dropkit.experiments.cli_commands import compare_command

    return compare_command(args)


def _search(args: argparse.Namespace) -> int:
    from dropkit.experiments.search import search_command

    return search_command(args)


def _reproduce(args: argparse.Namespace) -> int:
    from dropkit.experiments.reproduce import reproduce_command

    return reproduce_command(args)


#: The default of ``dropkit compare`` and ``make demo``: mnist1d, MLP and CNN, 5 seeds.
DEMO_TECHNIQUES = ["none", "dropout", "gaussian", "spatial", "curriculum", "early"]


def _add_training_options(command: argparse.ArgumentParser, epochs: int) -> None:
    command.add_argument("--dataset", default="mnist1d",
                         help="mnist1d (default), digits, breast_cancer, wine, diabetes, "
                         "fashion-mnist, mnist5k, uci-<name>")  # fmt: skip
    command.add_argument("--data-dir", default=None, help="where the data set's files are")
    command.add_argument("--models", nargs="+", default=["mlp", "cnn"], help="mlp, cnn, gru")
    command.add_argument("--folds", type=_positive_int, default=1,
                         help="cross-validation folds (1: a 10%% holdout)")  # fmt: skip
    command.add_argument("--epochs", type=_positive_int, default=epochs)
    command.add_argument("--batch-size", type=_positive_int, default=100)
    command.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    command.add_argument("--weight-decay", type=float, default=0.0)
    command.add_argument("--width", type=_positive_int, default=None,
                         help="hidden width: MLP (100), GRU (64), 2-D CNN head (128)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="dropkit", description="dropout: complete, correct, fast.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)
    bench = commands.add_parser("bench", help="time dropkit against PyTorch and the copy floor")
    bench.add_argument("--suite", choices=["auto", "all", "ops", "dropout", "fused"],
                       default="auto",
                       help=_SUITE_HELP)  # fmt: skip
    bench.add_argument("--ops", nargs="+", default=None, help="ops to time (default: all)")
    bench.add_argument("--sizes", nargs="+", type=_positive_size, default=None,
                       help="element counts, e.g. 65536 or 2^20")  # fmt: skip
    bench.add_argument("--dtypes", nargs="+", choices=sorted(_DTYPES), default=["fp32", "bf16"])
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--threads", nargs="+", type=_positive_int, default=None,
                       help="torch threads (dropout suite: one cell per count)")  # fmt: skip
    bench.add_argument("--rates", nargs="+", type=_rate, default=None,
                       help="dropout suite rates (default 0.1; --full: 0.1 0.5)")  # fmt: skip
    bench.add_argument("--activations", nargs="+", default=["gelu"],
                       choices=["gelu", "gelu_tanh", "relu", "silu"],
                       help="fused suite: residual + dropout(act(x + bias)) for each")  # fmt: skip
    bench.add_argument("--min-time", type=float, default=0.1, help="seconds per timed cell")
    bench.add_argument("--full", action="store_true", help=_FULL_HELP)
    bench.add_argument("--output", type=Path, default=Path("bench-results/bench.json"))
    bench.set_defaults(handler=_bench)

    compare = commands.add_parser(
        "compare", help="train one model over dropout techniques x rates x seeds; HTML report"
    )
    _add_training_options(compare, epochs=100)
    compare.add_argument("--techniques", nargs="+", default=DEMO_TECHNIQUES,
                         help="registered techniques (dropkit.experiments.techniques)")  # fmt: skip
    compare.add_argument("--rates", nargs="+", type=_rate, default=[0.1], help="rates in [0, 1)")
    compare.add_argument("--seeds", type=_positive_int, default=5, help="seeds 0..N-1")
    compare.add_argument("--train-sizes", nargs="+", type=_positive_int, default=None,
                         help="subsample the training set to each size")  # fmt: skip
    compare.add_argument("--jobs", type=_positive_int, default=None,
                         help="worker processes (default: the usable cores)")  # fmt: skip
    compare.add_argument("--out", type=Path, default=Path("runs/compare"),
                         help="run directory: runs.sqlite (resumable), report, PNGs, "
                         "results.csv/json")  # fmt: skip
    compare.add_argument("--data", type=Path, default=None, metavar="FILE",
                         help="your own data instead of --dataset: a .csv (header, a label "
                         "column, numeric features), an .npz (x, y) or an ImageFolder "
                         "directory")  # fmt: skip
    compare.add_argument("--label", default="label",
                         help="--data: the label column (CSV) or array (.npz)")  # fmt: skip
    compare.add_argument("--task", choices=["auto", "classification", "regression"],
                         default="auto", help="--data: auto = classes for non-numeric labels or "
                         "integers with <= 20 values")  # fmt: skip
    compare.add_argument("--test-data", type=Path, default=None, metavar="FILE",
                         help="--data: the test set (same format); else a split")  # fmt: skip
    compare.add_argument("--test-fraction", type=float, default=0.2,
                         help="--data without --test-data: the test share")  # fmt: skip
    compare.add_argument("--image-size", type=_positive_int, default=32,
                         help="--data DIR (ImageFolder): images resized to S x S")  # fmt: skip
    compare.add_argument("--model", default=None, metavar="MODULE:FUNCTION",
                         help="your own model instead of --models: a factory (technique, p) -> "
                         "nn.Module")  # fmt: skip
    compare.add_argument("--tensorboard", type=Path, default=None, metavar="DIR",
                         help="also write TensorBoard event files, one run per folder")  # fmt: skip
    compare.set_defaults(handler=_compare)

    search = commands.add_parser(
        "search", help="Optuna search over techniques and per-layer rates (resumable)"
    )
    _add_training_options(search, epochs=30)
    search.set_defaults(models=["cnn"])
    search.add_argument("--techniques", nargs="+", default=["none", "dropout", "gaussian"])
    search.add_argument("--sampler", choices=["tpe", "grid"], default="tpe")
    search.add_argument("--trials", type=_positive_int, default=20,
                        help="total finished trials wanted in the study")  # fmt: skip
    search.add_argument("--max-rate", type=_rate, default=0.5)
    search.add_argument("--grid-rates", nargs="+", type=_rate, default=[0.0, 0.1, 0.2, 0.3, 0.5])
    search.add_argument("--seed", type=int, default=0)
    search.add_argument("--workers", type=_positive_int, default=1,
                        help="processes on this machine sharing the storage")  # fmt: skip
    search.add_argument("--storage", default=None,
                        help="Optuna storage URL (default: sqlite in --out), e.g. "
                        "postgresql://user@host/db")  # fmt: skip
    search.add_argument("--study", default=None, help="study name (default: from the options)")
    search.add_argument("--no-prune", action="store_true", help="disable MedianPruner")
    search.add_argument("--out", type=Path, default=Path("runs/search"),
                        help="run directory: study.sqlite, best.json, results.*")  # fmt: skip
    search.add_argument("--tensorboard", type=Path, default=None, metavar="DIR",
                        help="also write TensorBoard event files, one run per trial")  # fmt: skip
    search.set_defaults(handler=_search)

    reproduce = commands.add_parser("reproduce", help="reproduce a published result's shape")
    reproduce.add_argument("experiment", choices=["uci", "data-size", "mnist1d"])
    reproduce.add_argument("--data-dir", default=None)
    reproduce.add_argument("--seeds", type=_positive_int, default=3)
    reproduce.add_argument("--epochs", type=_positive_int, default=None)
    reproduce.add_argument("--jobs", type=_positive_int, default=None)
    reproduce.add_argument("--out", type=Path, default=None)
    reproduce.set_defaults(handler=_reproduce)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ValueError as error:
        print(f"dropkit: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
