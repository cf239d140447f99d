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
    print("\n\n".join(tables))
    benchmark.write_json(results, args.output)
    print(f"\nresults written to {args.output}")
    return 0


def _suites(args: argparse.Namespace) -> set[str]:
    """``--suite``; by default both, but only the ops table when ``--ops`` names ops."""
    if args.suite != "auto":
        return {"ops", "dropout"} if args.suite == "all" else {args.suite}
    return {"ops"} if args.ops else {"ops", "dropout"}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"rate must be in [0, 1), got {value}")
    return value


_SUITE_HELP = (
    "ops: each op vs PyTorch and the copy floor; dropout: dropout vs F.dropout, torch.compile, "
    "x*2.0, a preallocated copy and dropkit's out=; auto (default): both, or ops if --ops is given"
)
_FULL_HELP = "sizes up to 2^24; dropout suite: 1 and 2 threads, p 0.1 and 0.5"


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="dropkit", description="dropout: complete, correct, fast.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)
    bench = commands.add_parser("bench", help="time dropkit against PyTorch and the copy floor")
    bench.add_argument("--suite", choices=["auto", "all", "ops", "dropout"], default="auto",
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
    bench.add_argument("--min-time", type=float, default=0.1, help="seconds per timed cell")
    bench.add_argument("--full", action="store_true", help=_FULL_HELP)
    bench.add_argument("--output", type=Path, default=Path("bench-results/bench.json"))
    bench.set_defaults(handler=_bench)
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
