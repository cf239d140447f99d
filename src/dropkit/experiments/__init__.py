"""Experiments behind ``dropkit compare``, ``search`` and ``reproduce``: data sets, models,
techniques, the training loop, resumable storage, reports and the UCI protocol (``uci``).

Optional dependencies (numpy, scipy, scikit-learn, matplotlib, rich, optuna, mnist1d, mlxtend)
load only when a submodule is imported: ``pip install 'dropkit[experiments]'``. Nothing here is
imported by ``import dropkit``.

``dropkit.experiments.compare(model_fn, train_data, test_data, techniques=..., rates=...)``
runs ``dropkit compare`` on your own model and data (the ``compare`` module is callable: see
:func:`dropkit.experiments.compare.compare`). Bad input raises
:class:`~dropkit.experiments._errors.UsageError` (``dropkit.experiments.UsageError``).
"""

from __future__ import annotations

import importlib
from typing import Any

from dropkit.experiments._errors import UsageError

__all__: list[str] = ["UsageError", "compare"]


def __getattr__(name: str) -> Any:
    # Lazy: `dropkit.experiments.compare` imports numpy, torch and scikit-learn on first use.
    if name == "compare":
        return importlib.import_module("dropkit.experiments.compare")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
