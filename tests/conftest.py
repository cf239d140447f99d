"""Test configuration: Triton runs through its interpreter where no GPU is present."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    # Must be set before any @triton.jit decorator runs.
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _restore_torch_state():
    """Keep tests independent of each other's thread count and default dtype."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
