"""numba caches of the CPU kernels are dropped when any source file of the package changes
(numba itself only checks each function's own file)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("numba")

from dropkit.kernels.cpu import _cache_guard


def _package(tmp_path: Path) -> tuple[Path, Path]:
    package = tmp_path / "cpu"
    package.mkdir()
    (package / "_kernels.py").write_text("PHILOX = 1\n")
    (package / "_openmp.py").write_text("from ._kernels import PHILOX\n")
    cache = package / "__pycache__"
    cache.mkdir()
    for name in (
        "_openmp._body_float32-96.py311.nbi",
        "_openmp._body_float32-96.py311.1.nbc",
        "_kernels.bernoulli-164.py311.nbi",
        "other_module.f-1.py311.nbi",  # not ours: kept
        "_openmp.cpython-311.pyc",  # Python's bytecode: kept
    ):
        (cache / name).write_bytes(b"x")
    return package, cache


def test_changed_sources_remove_our_cache_files_once(tmp_path: Path) -> None:
    package, cache = _package(tmp_path)
    removed = _cache_guard.invalidate_if_sources_changed(package, [cache])
    assert sorted(p.name for p in removed) == [
        "_kernels.bernoulli-164.py311.nbi",
        "_openmp._body_float32-96.py311.1.nbc",
        "_openmp._body_float32-96.py311.nbi",
    ]
    assert sorted(p.name for p in cache.iterdir()) == [
        "_openmp.cpython-311.pyc",
        _cache_guard.STAMP_NAME,
        "other_module.f-1.py311.nbi",
    ]
    # Unchanged sources: new caches survive.
    (cache / "_openmp._body_float32-96.py311.nbi").write_bytes(b"y")
    assert _cache_guard.invalidate_if_sources_changed(package, [cache]) == []
    # An edit of the *callee's* file invalidates the caller's cache too.
    (package / "_kernels.py").write_text("PHILOX = 2\n")
    removed = _cache_guard.invalidate_if_sources_changed(package, [cache])
    assert [p.name for p in removed] == ["_openmp._body_float32-96.py311.nbi"]


def test_missing_or_unwritable_cache_dirs_are_skipped(tmp_path: Path) -> None:
    package, cache = _package(tmp_path)
    missing = tmp_path / "nowhere"
    assert _cache_guard.invalidate_if_sources_changed(package, [missing]) == []
    cache.chmod(0o500)
    try:
        # Unwritable (unless running as root, which ignores the mode): never raises.
        _cache_guard.invalidate_if_sources_changed(package, [cache])
    finally:
        cache.chmod(0o700)


def test_cache_dirs_follow_numbas_locators(monkeypatch: pytest.MonkeyPatch) -> None:
    import numba

    monkeypatch.setattr(numba.config, "CACHE_DIR", "/tmp/numba-cache-test")
    dirs = _cache_guard.cache_dirs()
    assert dirs[0] == _cache_guard.PACKAGE_DIR / "__pycache__"
    assert dirs[1].parent == Path("/tmp/numba-cache-test")
    assert dirs[1].name.startswith("cpu_")
