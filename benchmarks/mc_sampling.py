"""MC-dropout sampling throughput: ``dropkit.uncertainty.sample`` vs plain forward passes.

The baseline is what one writes by hand: repeat the batch ``k`` times, run the model in train
mode (no per-sample steps, no sampling context), loop over chunks, concatenate. Both sides use
the same chunk size ``k`` (the one the engine picks for ``--budget``), so they hold the same
memory. Prints a table and writes JSON (``--json``).

    PYTHONPATH=src python benchmarks/mc_sampling.py --inputs 10000 --samples 100
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

import dropkit
from dropkit.uncertainty import sample
from dropkit.uncertainty._sampling import _Probe


def mlp(n_in: int, hidden: int, n_out: int, p: float) -> nn.Sequential:
    """The benchmark's 3-layer MLP: two hidden ReLU layers, dropout after each."""
    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.ReLU(), dropkit.nn.Dropout(p),
        nn.Linear(hidden, hidden), nn.ReLU(), dropkit.nn.Dropout(p),
        nn.Linear(hidden, n_out),
    )  # fmt: skip


def by_hand(model: nn.Module, x: torch.Tensor, samples: int, k: int) -> torch.Tensor:
    model.train()
    outputs = []
    with torch.no_grad():
        for first in range(0, samples, k):
            count = min(k, samples - first)
            out = model(x.repeat(count, *([1] * (x.dim() - 1))))
            outputs.append(out.reshape(count, x.shape[0], *out.shape[1:]))
    return torch.cat(outputs)


def timed(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--p", type=float, default=0.1)
    parser.add_argument("--budget", type=int, default=1 << 30, help="bytes per chunk")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = mlp(args.features, args.hidden, args.classes, args.p).to(device)
    x = torch.randn(args.inputs, args.features, device=device)
    with dropkit.mc_mode(model), torch.no_grad():
        _, per_sample = _Probe(model, x).run()
    k = max(1, args.budget // per_sample)
    engine = timed(
        lambda: sample(model, x, args.samples, seed=0, batch_budget=args.budget), args.repeats
    )
    hand = timed(lambda: by_hand(model, x, args.samples, k), args.repeats)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        sample(model, x, args.samples, seed=0, batch_budget=args.budget)
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = None
    result = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "inputs": args.inputs,
        "samples": args.samples,
        "mlp": [args.features, args.hidden, args.hidden, args.classes],
        "budget_bytes": args.budget,
        "bytes_per_sample_estimate": per_sample,
        "samples_per_chunk": k,
        "engine_s": engine,
        "by_hand_s": hand,
        "throughput_ratio": hand / engine,
        "engine_samples_per_s": args.samples / engine,
        "peak_bytes_cuda": peak,
    }
    print(f"{'provider':<22}{'median s':>10}{'samples/s':>12}")
    print(f"{'dropkit sample()':<22}{engine:>10.3f}{args.samples / engine:>12.1f}")
    print(f"{'by hand (repeat)':<22}{hand:>10.3f}{args.samples / hand:>12.1f}")
    print(
        f"throughput ratio (engine / by hand) = {hand / engine:.3f}; chunk = {k} samples, "
        f"~{per_sample / 2**20:.1f} MiB per sample (budget {args.budget / 2**20:.0f} MiB)"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
