"""Test configuration: Triton runs through its interpreter where no GPU is present."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    # Must be set before any @triton.jit decorator runs.
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Under pytest-xdist each worker gets its share of the cores: N workers each running torch's
# default (all cores) oversubscribe the machine, and small training loops then run several
# times slower. Tests that are about thread counts set them themselves.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _workers))


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
