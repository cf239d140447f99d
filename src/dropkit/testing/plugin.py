"""A pytest plugin that seeds dropkit.

Enable it with ``pytest -p dropkit.testing.plugin``, or in a root ``conftest.py``::

    pytest_plugins = ["dropkit.testing.plugin"]

It adds the ``--dropkit-seed`` option (default 0) and the ``dropkit_seed`` fixture, which calls
``torch.manual_seed`` with that seed before the test (so dropkit modules built inside it draw
reproducible seeds, as do functional calls without ``seed=``) and returns it. A test marked
``@pytest.mark.dropkit_seed(123)`` gets that seed instead. The fixture is not autouse: only tests
that ask for it are seeded.
"""

from __future__ import annotations

import pytest
import torch

__all__ = ["dropkit_seed"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--dropkit-seed",
        type=int,
        default=0,
        help="seed for the dropkit_seed fixture (torch.manual_seed; default 0)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "dropkit_seed(seed): the seed the dropkit_seed fixture uses for this test"
    )


@pytest.fixture
def dropkit_seed(request: pytest.FixtureRequest) -> int:
    """Seed PyTorch's default generator (hence dropkit's seeds) and return the seed."""
    marker = request.node.get_closest_marker("dropkit_seed")
    seed = (
        int(marker.args[0])
        if marker is not None
        else int(request.config.getoption("--dropkit-seed"))
    )
    torch.manual_seed(seed)
    return seed
