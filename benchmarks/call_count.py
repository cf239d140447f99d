"""Count dropkit's Python calls (and the files they are in) in one ``nn.Dropout`` forward, and in
one forward + backward, on a chosen backend (``sys.setprofile``).

    PYTHONPATH=src python benchmarks/call_count.py [reference|cpu|auto] [-v]
"""

from __future__ import annotations

import collections
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import torch

import dropkit
from dropkit import kernels


def count(fn: Callable[[], object]) -> collections.Counter[tuple[str, str]]:
    """``(file, function) -> calls`` of dropkit's Python functions while ``fn()`` runs."""
    calls: collections.Counter[tuple[str, str]] = collections.Counter()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        name = frame.f_code.co_filename
        if event == "call" and "/dropkit/" in name:
            calls[(name.split("/dropkit/")[-1], frame.f_code.co_name)] += 1

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls


def main() -> None:
    backend = next((a for a in sys.argv[1:] if not a.startswith("-")), "reference")
    module = dropkit.nn.Dropout(0.1)
    x = torch.randn(1024)
    leaf = torch.randn(1024, requires_grad=True)
    with kernels.use_backend(backend):
        module(x)
        module(leaf).sum().backward()  # warm up: lazy imports, caches
        forward = count(lambda: module(x))
        both = count(lambda: module(leaf).sum().backward())
    for label, calls in (("forward", forward), ("fwd+bwd", both)):
        files = {name for name, _ in calls}
        print(f"{backend} {label}: {sum(calls.values())} dropkit calls in {len(files)} files")
        if "-v" in sys.argv:
            for (name, function), n in sorted(calls.items()):
                print(f"  {n:3d} {name}:{function}")


if __name__ == "__main__":
    main()
