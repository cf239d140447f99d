"""Cost of :class:`dropkit.MetaRateTuner`: one hypergradient step against one plain training
step of the same model and batch (median wall time, CPU, one thread), and the bytes autograd
holds for each backward (counted with ``torch.autograd.graph.saved_tensors_hooks``).

    PYTHONPATH=src python benchmarks/meta_rates_cost.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

import dropkit


def _median_s(step: Callable[[], object], repeats: int = 30) -> float:
    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _saved_bytes(graph: Callable[[], object]) -> int:
    sizes: list[int] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        sizes.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        graph()
    return sum(sizes)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = nn.Sequential(
        dropkit.nn.ConcreteDropout(nn.Linear(64, 256)), nn.ReLU(),
        dropkit.nn.ConcreteDropout(nn.Linear(256, 256)), nn.ReLU(),
        dropkit.nn.ConcreteDropout(nn.Linear(256, 10)),
    )  # fmt: skip
    tuner = dropkit.MetaRateTuner(net, F.cross_entropy, inner_lr=0.05)
    optimizer = torch.optim.SGD(tuner.weight_parameters(), lr=0.05)
    train = (torch.randn(128, 64), torch.randint(0, 10, (128,)))
    val = (torch.randn(128, 64), torch.randint(0, 10, (128,)))

    def plain() -> None:
        loss = F.cross_entropy(net(train[0]), train[1])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    plain_s = _median_s(plain)
    meta_s = _median_s(lambda: tuner.step(train, val))
    plain_bytes = _saved_bytes(lambda: F.cross_entropy(net.train()(train[0]), train[1]))
    meta_bytes = _saved_bytes(lambda: tuner.hypergradient(train, val))
    print(f"plain training step {plain_s * 1e3:.2f} ms; MetaRateTuner.step {meta_s * 1e3:.2f} ms "
          f"({meta_s / plain_s:.2f}x)")  # fmt: skip
    print(f"held for backward: plain {plain_bytes / 1e6:.2f} MB; hypergradient "
          f"{meta_bytes / 1e6:.2f} MB ({meta_bytes / plain_bytes:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
