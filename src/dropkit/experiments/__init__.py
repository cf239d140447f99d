"""Experiments behind ``dropkit compare``, ``search`` and ``reproduce``: data sets, models,
techniques, the training loop, resumable storage, reports and the UCI protocol (``uci``).

Optional dependencies (numpy, scipy, scikit-learn, matplotlib, rich, optuna, mnist1d, mlxtend)
load only when a submodule is imported: ``pip install dropkit[experiments]``. Nothing here is
imported by ``import dropkit``.
"""

__all__: list[str] = []
