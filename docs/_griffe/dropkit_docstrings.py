"""Griffe extension for the docs site: dropkit's docstrings title their runnable example
``Example:`` (STYLE.md, as PyTorch does); Google-style parsing knows only ``Examples:``, so
the doctest would render as prose. This reads one as the other."""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
