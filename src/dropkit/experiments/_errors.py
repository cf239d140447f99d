"""The one usage-error type of the ``dropkit`` commands (no heavy imports here).

A :class:`UsageError` is bad input from the user (a file, an option, a ``--model`` factory):
``dropkit``'s ``main()`` prints it as one line ``dropkit: error: ...`` and exits with code 2.
It is raised before anything is written to a run's store.
"""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(ValueError):
    """Bad input to a ``dropkit`` command or :func:`dropkit.experiments.compare`: the message
    names the argument and what is allowed, e.g.
    ``UsageError("--data: no column 'label' in train.csv (columns: a, b, c)")``; the CLI prints
    it as one line ``dropkit: error: <message>`` and exits with code 2, with no traceback."""
