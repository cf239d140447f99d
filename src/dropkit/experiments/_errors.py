"""The two errors the ``dropkit`` commands print as one line instead of a traceback (no heavy
imports here).

:class:`UsageError` (exit 2): bad input from the user (an option, a file, a ``--model`` factory,
a corrupt ``runs.sqlite``, a storage URL that does not parse); raised before anything is written
to a run's store. :class:`OutputError` (exit 1): the arguments were fine but an output could not
be written (no space left on device, read-only file system); what was written before stays
whole, and rerunning the same command resumes.
"""

from __future__ import annotations

__all__ = ["OutputError", "UsageError"]


class UsageError(ValueError):
    """Bad input to a ``dropkit`` command or :func:`dropkit.experiments.compare`: the message
    names the argument and what is allowed, e.g.
    ``UsageError("--data: no column 'label' in train.csv (columns: a, b, c)")``; the CLI prints
    it as one line ``dropkit: error: <message>`` and exits with code 2, with no traceback."""


class OutputError(OSError):
    """An output could not be written: ``dropkit: error: <message>``, exit status 1."""
