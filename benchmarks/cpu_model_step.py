"""A real training step on the CPU with torch.nn.Dropout vs dropkit.nn.Dropout.

Two models, batch 256: an MLP (784-1024-1024-10, dropout 0.5 after each hidden layer) and a
small CNN (32x32x3 input, two conv layers with dropout 0.25, a dropout-0.5 head). One step =
forward, cross-entropy, backward, SGD update. The dropout flavours are timed round-robin in
one process, so noise from other processes hits them alike; medians and the inter-quartile
range are printed, with the ratio to torch.nn.Dropout.

    PYTHONPATH=src python benchmarks/cpu_model_step.py --threads 1 2 --repeats 30
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import dropkit
from dropkit import kernels

BATCH = 256


def mlp(dropout: Callable[[float], nn.Module]) -> nn.Module:
    return nn.Sequential(
        nn.Linear(784, 1024), nn.ReLU(), dropout(0.5),
        nn.Linear(1024, 1024), nn.ReLU(), dropout(0.5),
        nn.Linear(1024, 10),
    )  # fmt: skip


def cnn(dropout: Callable[[float], nn.Module]) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), dropout(0.25),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), dropout(0.25),
        nn.Flatten(), nn.Linear(64 * 16 * 16, 256), nn.ReLU(), dropout(0.5),
        nn.Linear(256, 10),
    )  # fmt: skip


FLAVOURS: dict[str, tuple[Callable[[float], nn.Module], str]] = {
    "torch.nn.Dropout": (lambda p: nn.Dropout(p), "auto"),
    "dropkit (cpu)": (lambda p: dropkit.nn.Dropout(p), "cpu"),
    "dropkit (reference)": (lambda p: dropkit.nn.Dropout(p), "reference"),
}


def step_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, backend: str) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def step() -> None:
        with kernels.use_backend(backend):
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    inputs = {"mlp": torch.randn(BATCH, 784), "cnn": torch.randn(BATCH, 3, 32, 32)}
    labels = torch.randint(0, 10, (BATCH,))
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, build in (("mlp", mlp), ("cnn", cnn)):
            steps = {}
            for flavour, (dropout, backend) in FLAVOURS.items():
                torch.manual_seed(0)
                steps[flavour] = step_fn(build(dropout), inputs[name], labels, backend)
                steps[flavour]()  # warm-up (and the kernels' first-call compile)
            times: dict[str, list[float]] = {flavour: [] for flavour in steps}
            for _ in range(args.repeats):
                for flavour, step in steps.items():
                    start = time.perf_counter()
                    step()
                    times[flavour].append((time.perf_counter() - start) * 1e3)
            base = statistics.median(times["torch.nn.Dropout"])
            for flavour, samples in times.items():
                q = statistics.quantiles(samples, n=4)
                median = statistics.median(samples)
                print(
                    f"{name:<4} threads={threads} {flavour:<20} {median:8.2f} ms "
                    f"[IQR {q[0]:.2f}-{q[2]:.2f}]  {median / base:5.2f}x torch"
                )


if __name__ == "__main__":
    main()
