"""The two errors the ``dropkit`` command prints as one line instead of a traceback.

:class:`UsageError` (exit 2): a bad argument or a bad input file (a corrupt ``runs.sqlite``, a
storage URL that does not parse). :class:`OutputError` (exit 1): the arguments were fine but an
output could not be written (no space left on device, read-only file system); what was written
before stays whole, and rerunning the same command resumes.
"""

from __future__ import annotations

__all__ = ["OutputError", "UsageError"]


class UsageError(ValueError):
    """A bad argument or input: ``dropkit: error: <message>``, exit status 2."""


class OutputError(OSError):
    """An output could not be written: ``dropkit: error: <message>``, exit status 1."""
