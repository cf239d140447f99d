"""The one way a ``dropkit`` command reports a bad input (no heavy imports here)."""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(Exception):
    """A bad command-line input: ``dropkit`` prints ``dropkit: error: <message>`` on one line
    and exits with status 2, with no traceback.

    Raise it from a command (or from code a command calls) for anything the user can fix by
    changing the command line: a missing file, a malformed data set, an unknown name. The
    message should name the argument and what is allowed, e.g.
    ``UsageError("--data: no column 'label' in train.csv (columns: a, b, c)")``.
    """
