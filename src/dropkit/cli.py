"""The ``dropkit`` command.

Conventions shared by every subcommand: ``dropkit --version``; every ``--help`` shows the
defaults; a bad input is one line ``dropkit: error: ...`` on stderr with exit status 2 (raise
:class:`dropkit.experiments.UsageError` from a command; ``ValueError`` is treated the same); a
missing optional dependency names the ``pip install 'dropkit[EXTRA]'`` to run (exit 2); Ctrl-C
stops with exit status 130 and, for ``compare`` and ``search``, says how many runs are saved and
that rerunning the same command resumes.
"""

from __future__ import annotations

import argparse
import math
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dropkit.experiments._errors import OutputError, UsageError

__all__ = ["UsageError", "build_parser", "main"]

_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16"}  # fmt: skip

#: Top-level module of an optional dependency -> the extra of ``pyproject.toml`` that brings it.
EXTRAS = {
    "numpy": "experiments", "scipy": "experiments", "sklearn": "experiments",
    "matplotlib": "experiments", "rich": "experiments", "optuna": "experiments",
    "mnist1d": "experiments", "mlxtend": "experiments", "psycopg2": "experiments",
    "triton": "triton", "numba": "cpu",
}  # fmt: skip

#: Exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


class _ArgumentParser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"dropkit: error: {message}\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default as ``(default: X)``, lists space-separated; an option
    whose help already says what its default is (or that has none) is left as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or "default" in text
        ):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, list) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})".lstrip()


def _version() -> str:
    from dropkit import __version__

    return f"dropkit {__version__}"


def _positive_size(text: str) -> int:
    try:
        if text.startswith("2^"):
            exponent = int(text[2:])
            if not 0 <= exponent <= 62:
                raise argparse.ArgumentTypeError(f"size must be in [1, 2^62], got {text}")
            value = 1 << exponent
        else:
            value = int(text, 0)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"size must be an int or 2^K, got {text!r}") from error
    if not 1 <= value <= 1 << 62:
        raise argparse.ArgumentTypeError(f"size must be in [1, 2^62], got {value}")
    return value


def _number(text: str, allowed: str, valid: Callable[[float], bool]) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not valid(value):
        raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    return _number(text, "a finite number > 0", lambda v: v > 0)


def _non_negative_float(text: str) -> float:
    return _number(text, "a finite number >= 0", lambda v: v >= 0)


def _fraction(text: str) -> float:
    return _number(text, "a number in (0, 1)", lambda v: 0 < v < 1)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected an int in [0, 2^63 - 1], got {text!r}"
        ) from error
    if not 0 <= value < 1 << 63:
        raise argparse.ArgumentTypeError(f"expected an int in [0, 2^63 - 1], got {value}")
    return value


def _bench_device(text: str) -> Any:
    """``--device`` as a ``torch.device`` that can hold a tensor here, or a UsageError."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(
            f"--device {text!r} is not a torch device; expected e.g. cpu, cuda or cuda:0"
        ) from None
    try:
        torch.empty(1, device=device)
    except Exception as error:  # no driver, not compiled in, no such index
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if device.type == "cuda" and not torch.cuda.is_available():
            reason = "no CUDA GPU is usable here (torch.cuda.is_available() is False)"
        raise UsageError(f"--device {text}: {reason}; use --device cpu") from None
    return device


def _available_bytes(device: Any) -> int | None:
    """Memory free for tensors on ``device`` (``None``: unknown)."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _check_sizes(sizes: Sequence[int], dtypes: Sequence[Any], device: Any) -> None:
    """Refuse ``--sizes`` whose tensors cannot fit: a cell holds a float32 draw, the input,
    its gradient and about three outputs (``4 + 6 * itemsize`` bytes per element)."""
    available = _available_bytes(device)
    if available is None or not sizes:
        return
    itemsize = max(d.itemsize for d in dtypes)
    per_element = 4 + 6 * itemsize
    largest = max(sizes)
    if largest * per_element > available:
        fits = max(1, available // per_element)
        raise UsageError(
            f"--sizes: {largest} elements need about {largest * per_element / 2**30:.1f} GiB "
            f"on {device}, more than the {available / 2**30:.1f} GiB available; use sizes up "
            f"to {fits} (2^{fits.bit_length() - 1})"
        )


def _bench(args: argparse.Namespace) -> int:
    import torch

    from dropkit import benchmark

    dtypes = [getattr(torch, _DTYPES[d]) for d in args.dtypes]
    device = _bench_device(args.device)
    _check_sizes(args.sizes or [1 << 24 if args.full else 1 << 20], dtypes, device)
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
_DATA_DIR_HELP = "where the data set's files are (default: a cache directory)"
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


class _NameList(argparse.Action):
    """``--techniques a b`` and ``--techniques a,b`` alike: names split at commas."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        names = [name for value in values for name in str(value).split(",") if name]
        setattr(namespace, self.dest, names)


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
                         help="mnist1d, digits, breast_cancer, wine, diabetes, "
                         "fashion-mnist, mnist5k, uci-<name>")  # fmt: skip
    command.add_argument("--data-dir", default=None,
                         help=_DATA_DIR_HELP)  # fmt: skip
    command.add_argument("--models", nargs="+", default=["mlp", "cnn"], help="mlp, cnn, gru")
    command.add_argument("--folds", type=_positive_int, default=1,
                         help="cross-validation folds (1: a 10%% holdout)")  # fmt: skip
    command.add_argument("--epochs", type=_positive_int, default=epochs, help="training epochs")
    command.add_argument("--batch-size", type=_positive_int, default=100, help="minibatch size")
    command.add_argument("--lr", type=_positive_float, default=1e-2, help="Adam learning rate")
    command.add_argument("--weight-decay", type=_non_negative_float, default=0.0,
                         help="Adam weight decay")  # fmt: skip
    command.add_argument("--width", type=_positive_int, default=None,
                         help="hidden width "
                         "(default: MLP 100, GRU 64, 2-D CNN head 128)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="dropkit",
        description="dropout: complete, correct, fast.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)

    def add_command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=text, description=text, formatter_class=_HelpFormatter
        )

    bench = add_command("bench", "time dropkit against PyTorch and the copy floor")
    bench.add_argument("--suite", choices=["auto", "all", "ops", "dropout", "fused"],
                       default="auto", help=_SUITE_HELP)  # fmt: skip
    bench.add_argument("--ops", nargs="+", default=None, help="ops to time (default: all)")
    bench.add_argument("--sizes", nargs="+", type=_positive_size, default=None,
                       help="element counts, e.g. 65536 or 2^20 "
                       "(default: 2^16 2^20; --full adds 2^24)")  # fmt: skip
    bench.add_argument("--dtypes", nargs="+", choices=sorted(_DTYPES), default=["fp32", "bf16"],
                       metavar="DTYPE",
                       help="fp32, bf16, fp16 (or float32, bfloat16, float16)")  # fmt: skip
    bench.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    bench.add_argument("--threads", nargs="+", type=_positive_int, default=None,
                       help="torch threads (dropout suite: one cell per count; "
                       "default: torch's current count)")  # fmt: skip
    bench.add_argument("--rates", nargs="+", type=_rate, default=None,
                       help="dropout suite rates (default 0.1; --full: 0.1 0.5)")  # fmt: skip
    bench.add_argument("--activations", nargs="+", default=["gelu"],
                       choices=["gelu", "gelu_tanh", "relu", "silu"],
                       help="fused suite: residual + dropout(act(x + bias)) for each")  # fmt: skip
    bench.add_argument("--min-time", type=_positive_float, default=0.1,
                       help="seconds per timed cell")  # fmt: skip
    bench.add_argument("--full", action="store_true", help=_FULL_HELP)
    bench.add_argument("--output", type=Path, default=Path("bench-results/bench.json"),
                       help="JSON file of the results")  # fmt: skip
    bench.set_defaults(handler=_bench)

    compare = add_command(
        "compare", "train one model over dropout techniques x rates x seeds; HTML report"
    )
    _add_training_options(compare, epochs=60)
    compare.add_argument("--techniques", nargs="+", default=DEMO_TECHNIQUES, action=_NameList,
                         help="registered techniques (dropkit.experiments.techniques)")  # fmt: skip
    compare.add_argument("--rates", nargs="+", type=_rate, default=[0.1], help="rates in [0, 1)")
    compare.add_argument("--seeds", type=_positive_int, default=5, help="seeds 0..N-1")
    compare.add_argument("--train-sizes", nargs="+", type=_positive_int, default=None,
                         help="subsample the training set to each size "
                         "(default: all of it)")  # fmt: skip
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
    compare.add_argument("--test-fraction", type=_fraction, default=0.2,
                         help="--data without --test-data: the test share")  # fmt: skip
    compare.add_argument("--image-size", type=_positive_int, default=32,
                         help="--data DIR (ImageFolder): images resized to S x S")  # fmt: skip
    compare.add_argument("--model", default=None, metavar="MODULE:FUNCTION",
                         help="your own model instead of --models: a factory (technique, p) -> "
                         "nn.Module")  # fmt: skip
    compare.add_argument("--tensorboard", type=Path, default=None, metavar="DIR",
                         help="also write TensorBoard event files, one run per folder")  # fmt: skip
    compare.set_defaults(handler=_compare)

    search = add_command("search", "Optuna search over techniques and per-layer rates (resumable)")
    _add_training_options(search, epochs=30)
    search.set_defaults(models=["cnn"])
    search.add_argument("--techniques", nargs="+", default=["none", "dropout", "gaussian"],
                        action=_NameList,
                        help="registered techniques to choose from")  # fmt: skip
    search.add_argument("--sampler", choices=["tpe", "grid"], default="tpe",
                        help="TPE, or the grid --techniques x --grid-rates")  # fmt: skip
    search.add_argument("--trials", type=_positive_int, default=20,
                        help="total finished trials wanted in the study")  # fmt: skip
    search.add_argument("--max-rate", type=_rate, default=0.5, help="TPE: largest rate tried")
    search.add_argument("--grid-rates", nargs="+", type=_rate, default=[0.0, 0.1, 0.2, 0.3, 0.5],
                        help="grid: the rates tried")  # fmt: skip
    search.add_argument("--seed", type=_seed, default=0, help="sampler and training seed")
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

    reproduce = add_command("reproduce", "reproduce a published result's shape")
    reproduce.add_argument("experiment", choices=["uci", "data-size", "mnist1d"],
                           help="which published result")  # fmt: skip
    reproduce.add_argument("--data-dir", default=None,
                           help=_DATA_DIR_HELP)  # fmt: skip
    reproduce.add_argument("--seeds", type=_positive_int, default=3, help="seeds 0..N-1")
    reproduce.add_argument("--epochs", type=_positive_int, default=None,
                           help="training epochs (default: the experiment's own)")  # fmt: skip
    reproduce.add_argument("--jobs", type=_positive_int, default=None,
                           help="worker processes (default: the usable cores)")  # fmt: skip
    reproduce.add_argument("--out", type=Path, default=None,
                           help="run directory (default: runs/reproduce-<experiment>)")  # fmt: skip
    reproduce.set_defaults(handler=_reproduce)
    return parser


def _saved_compare_runs(args: argparse.Namespace) -> str:
    """``compare``'s runs in ``--out``/runs.sqlite (each is committed the moment it ends)."""
    path = Path(args.out) / "runs.sqlite"
    if not path.exists():
        return "no runs saved"
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as connection:
            (count,) = connection.execute("SELECT COUNT(*) FROM runs").fetchone()
    except sqlite3.Error:
        return f"runs saved so far are in {path}"
    return f"{count} run{'s' * (count != 1)} saved in {path}"


def _saved_search_trials(args: argparse.Namespace) -> str:
    """``search``'s finished trials in its Optuna study."""
    url = args.storage or f"sqlite:///{(Path(args.out) / 'study.sqlite').resolve()}"
    name = args.study or f"{args.dataset}-{args.models[0]}-{args.sampler}"
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        study = optuna.load_study(study_name=name, storage=url)
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        count = len(study.get_trials(deepcopy=False, states=states))
    except Exception:  # nothing stored yet, or the storage is unreadable: say where it is
        return f"finished trials so far are in study {name!r} at {url}"
    return f"{count} finished trial{'s' * (count != 1)} saved in study {name!r} at {url}"


#: Per command: what Ctrl-C leaves behind, said before exiting 130 (``None``: nothing saved).
_ON_INTERRUPT: dict[str, Callable[[argparse.Namespace], str] | None] = {
    "compare": _saved_compare_runs,
    "search": _saved_search_trials,
}


def _missing_extra(error: ModuleNotFoundError, command: str) -> str:
    module = (error.name or "").split(".")[0]
    extra = EXTRAS.get(module)
    if extra is None:
        return f"{command} needs the Python package {module!r}, which is not installed"
    return f"{command} needs {module!r}: pip install 'dropkit[{extra}]'"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dropkit`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], Any] = args.handler
    try:
        return int(handler(args))
    except (UsageError, ValueError) as error:
        print(f"dropkit: error: {error}", file=sys.stderr)
        return 2
    except OutputError as error:  # disk full, read-only: what was written stays whole
        print(f"dropkit: error: {error}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as error:
        if error.name is None or error.name.split(".")[0] == "dropkit":
            raise
        print(f"dropkit: error: {_missing_extra(error, args.command)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        saved = _ON_INTERRUPT.get(args.command)
        message = (
            f"dropkit: interrupted; {saved(args)}; rerun the same command to resume"
            if saved
            else "dropkit: interrupted"
        )
        print(f"\n{message}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
