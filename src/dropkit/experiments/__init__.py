"""Experiments behind ``dropkit compare``, ``search`` and ``reproduce``: data sets, models,
techniques, the training loop, resumable storage, reports and the UCI protocol (``uci``).

Optional dependencies (numpy, scipy, scikit-learn, matplotlib, rich, optuna, mnist1d, mlxtend)
load only when a submodule is imported: ``pip install 'dropkit[experiments]'``. Nothing here is
imported by ``import dropkit``.

:class:`UsageError` is the one exception a command raises for a bad input: ``dropkit`` prints
it as one line ``dropkit: error: ...`` and exits with status 2.
"""

from dropkit.experiments._errors import UsageError

__all__ = ["UsageError"]
