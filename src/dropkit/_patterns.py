"""Selecting modules by name pattern or type, with helpful errors for patterns that match
nothing. Shared by schedules, surgery and audit."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable

from torch import nn

__all__ = ["ModuleSelector", "matches", "no_match_error"]

ModuleSelector = str | type[nn.Module] | tuple[type[nn.Module], ...]


def matches(selector: ModuleSelector, name: str, module: nn.Module) -> bool:
    """Whether ``module`` (at qualified ``name``) is selected.

    A string is an ``fnmatch`` pattern over the qualified name (``"encoder.*.dropout"``); a
    type or tuple of types selects by ``isinstance``.
    """
    if isinstance(selector, str):
        return fnmatch.fnmatchcase(name, selector)
    return isinstance(module, selector)


def no_match_error(selector: ModuleSelector, names: Iterable[str], what: str) -> ValueError:
    """The error for a selector that selects nothing, listing near matches (difflib)."""
    candidates = list(names)
    if isinstance(selector, str):
        near = difflib.get_close_matches(selector, candidates, n=5, cutoff=0.4)
        hint = f"; near matches: {near}" if near else f"; candidates: {candidates[:10]}"
        return ValueError(
            f"pattern {selector!r} matches no {what}{hint} (pass strict=False to allow this)"
        )
    label = getattr(selector, "__name__", repr(selector))
    return ValueError(
        f"type {label} matches no {what}; candidates: {candidates[:10]} "
        "(pass strict=False to allow this)"
    )
