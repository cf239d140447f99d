"""Every ```python block of README.md and docs/**/*.md is a complete program, and runs.

Each block runs in a fresh namespace, in a temporary working directory, within a time budget.
A block that cannot run here says why on its first line, e.g.
``# docs: skip-run needs the UCI data sets (--data-dir)``; it is skipped with that reason.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 30.0  # per block, on a busy 2-core machine with a cold numba cache
_FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_SKIP = re.compile(r"^\s*#\s*docs:\s*skip-run\b\s*(.*)$", re.MULTILINE)


def _blocks() -> list[tuple[str, int, str]]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    found = []
    for page in pages:
        text = page.read_text()
        for match in _FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 2
            found.append((str(page.relative_to(ROOT)), line, match.group(1)))
    return found


BLOCKS = _blocks()


def test_the_docs_have_examples() -> None:
    assert len(BLOCKS) >= 30


@pytest.mark.parametrize(
    ("page", "line", "code"), BLOCKS, ids=[f"{page}:{line}" for page, line, _ in BLOCKS]
)
def test_example_runs(
    page: str, line: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    skip = _SKIP.search(code)
    if skip:
        pytest.skip(f"{page}:{line}: {skip.group(1).strip() or 'marked skip-run'}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DROPKIT_CACHE_DIR", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    start = time.perf_counter()
    try:
        exec(compile(code, f"{ROOT / page}:{line}", "exec"), {"__name__": "__main__"})
    finally:
        torch.set_num_threads(threads)
    elapsed = time.perf_counter() - start
    assert elapsed < BUDGET_S, f"{page}:{line} took {elapsed:.1f} s (budget {BUDGET_S} s)"
    assert os.getcwd() == str(tmp_path)
