"""Experiments behind ``dropkit compare``, ``search`` and ``reproduce``: data sets, models,
techniques, the training loop, resumable storage and reports.

Optional dependencies (numpy, scipy, scikit-learn, matplotlib, rich, optuna, mnist1d, mlxtend)
load only when a submodule is imported: ``pip install dropkit[experiments]``.
"""
