"""Experiments behind the ``dropkit`` command: benchmark reproductions and effect studies.

Submodules import their optional dependencies themselves; nothing here is imported by
``import dropkit``.
"""

__all__: list[str] = []
