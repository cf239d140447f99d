"""``python -m dropkit``: the ``dropkit`` command."""

from dropkit.cli import main

raise SystemExit(main())
