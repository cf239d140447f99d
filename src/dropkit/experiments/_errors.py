"""The one usage-error type of the experiment commands.

A :class:`UsageError` is bad input from the user (a file, an option, a ``--model`` factory):
``dropkit``'s ``main()`` prints it as one line ``dropkit: error: ...`` and exits with code 2.
It is raised before anything is written to a run's store.
"""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(ValueError):
    """Bad input to ``dropkit compare`` / ``search`` or :func:`dropkit.experiments.compare`:
    the message names the problem and what is allowed (the CLI exits with code 2)."""
