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
    sizes = args.sizes or ([1 << 16, 1 << 20, 1 << 24] if args.full else [1 << 16, 1 << 20])
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    results = benchmark.run_benchmarks(
        ops=args.ops,
        sizes=sizes,
        dtypes=dtypes,
        device=args.device,
        min_time_s=args.min_time,
        progress=lambda text: print(f"  timing {text}", file=sys.stderr, flush=True),
    )
    print(benchmark.format_table(results))
    benchmark.write_json(results, args.output)
    print(f"\nresults written to {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="dropkit", description="dropout: complete, correct, fast.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)
    bench = commands.add_parser("bench", help="time dropkit against PyTorch and the copy floor")
    bench.add_argument("--ops", nargs="+", default=None, help="ops to time (default: all)")
    bench.add_argument("--sizes", nargs="+", type=_positive_size, default=None,
                       help="element counts, e.g. 65536 or 2^20")  # fmt: skip
    bench.add_argument("--dtypes", nargs="+", choices=sorted(_DTYPES), default=["fp32", "bf16"])
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--threads", type=int, default=None)
    bench.add_argument("--min-time", type=float, default=0.25, help="seconds per timed cell")
    bench.add_argument("--full", action="store_true", help="include 2^24 elements")
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
