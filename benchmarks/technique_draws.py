"""Median ms of techniques that draw masks of their own (eager, CPU, one thread), and the bytes
DropKey holds for backward.

    PYTHONPATH=src python benchmarks/technique_draws.py
"""

from __future__ import annotations

import statistics
import timeit

import torch

import dropkit.functional as F


def main() -> None:
    torch.set_num_threads(1)
    x = torch.randn(8, 16, 32, 32)
    scores = torch.randn(4, 8, 64, 64, requires_grad=True)
    weight = torch.randn(5000, 64)
    tokens = torch.randint(0, 5000, (32, 64))
    cases = {
        "drop_block 8x16x32x32": lambda: F.drop_block(x, 0.1, block_size=5, seed=0),
        "drop_head 8x16x32x32": lambda: F.drop_head(x, 0.1, seed=0),
        "embedding_dropout V=5000": lambda: F.embedding_dropout(tokens, weight, 0.1, seed=0),
        "drop_key fwd+bwd 4x8x64x64": lambda: F.drop_key(scores, 0.1, seed=0).sum().backward(),
    }
    for name, fn in cases.items():
        fn()
        times = timeit.repeat(fn, number=20, repeat=7)
        print(f"{name}: {statistics.median(times) / 20 * 1e3:.3f} ms")
    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F.drop_key(scores, 0.1, seed=0)
    print("drop_key saved for backward:", sum(t.numel() * t.element_size() for t in saved), "B")


if __name__ == "__main__":
    main()
