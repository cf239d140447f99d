"""The docs site builds with ``mkdocs build --strict``: broken links, missing anchors and API
references that do not resolve fail the build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_site_builds_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    pytest.importorskip("material")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "api" / "nn" / "index.html").is_file()
    dropout_page = (tmp_path / "techniques" / "dropout" / "index.html").read_text()
    assert 'href="../../api/nn/#dropkit.nn.Dropout"' in dropout_page  # the reference resolved
    api = (tmp_path / "api" / "nn" / "index.html").read_text()
    assert 'id="dropkit.nn.Dropout"' in api
