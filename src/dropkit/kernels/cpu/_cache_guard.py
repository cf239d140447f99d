"""Drop numba's cached kernels of this package when any of its sources changed.

numba keys a cached function on the content of its *own* file. The kernels here call (and
inline) functions of other files of the package: a cfunc body in :mod:`._launch` runs the
Philox loop of :mod:`._philox`, for example. After an edit of the callee's file the caller's
cache still loads and runs the stale copy (seen in development: a segfault). So, once per
process before the first kernel is compiled or loaded, :func:`invalidate_if_sources_changed`
hashes every source file of the package and, where the hash differs from the one stamped beside
numba's cache files, removes those cache files (numba then compiles afresh and caches again).

An installed release never changes its files, so this only ever acts after an upgrade or in a
development tree; a cache directory it cannot write is left alone.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["cache_dirs", "invalidate_if_sources_changed", "sources_digest"]

#: The stamp written beside the cache files: the digest of the sources they were built from.
STAMP_NAME = "dropkit-kernel-sources.sha256"
PACKAGE_DIR = Path(__file__).resolve().parent


def sources_digest(package_dir: Path = PACKAGE_DIR) -> str:
    """SHA-256 over the names and contents of the package's ``*.py`` files."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_dirs(package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """Where numba may keep this package's caches: ``__pycache__`` beside the sources,
    ``NUMBA_CACHE_DIR`` and the user-wide cache, with numba's per-directory sub-path."""
    import numba

    source_dir = os.path.abspath(package_dir)
    # numba's _CacheLocator.get_suitable_cache_subpath: parent name + SHA-1 of the directory.
    subpath = "_".join(
        [os.path.split(source_dir)[-1], hashlib.sha1(source_dir.encode()).hexdigest()]
    )
    dirs = [Path(source_dir) / "__pycache__"]
    if numba.config.CACHE_DIR:  # type: ignore[attr-defined]
        dirs.append(Path(numba.config.CACHE_DIR) / subpath)  # type: ignore[attr-defined]
    try:
        from numba.misc.appdirs import AppDirs

        dirs.append(Path(AppDirs(appname="numba", appauthor=False).user_cache_dir) / subpath)
    except ImportError:  # pragma: no cover - numba's layout changed: in-tree caches still done
        pass
    return dirs


def invalidate_if_sources_changed(
    package_dir: Path = PACKAGE_DIR, dirs: list[Path] | None = None
) -> list[Path]:
    """Remove numba cache files (``*.nbi``, ``*.nbc``) of the package's modules from each cache
    directory whose stamp differs from the sources' digest, then stamp it. Returns the removed
    files."""
    digest = sources_digest(package_dir)
    modules = {path.stem for path in package_dir.glob("*.py")}
    removed: list[Path] = []
    for directory in cache_dirs(package_dir) if dirs is None else dirs:
        stamp = directory / STAMP_NAME
        try:
            if not directory.is_dir() or (stamp.is_file() and stamp.read_text() == digest):
                continue
            for path in directory.iterdir():
                if path.suffix in (".nbi", ".nbc") and path.name.split(".")[0] in modules:
                    path.unlink()
                    removed.append(path)
            stamp.write_text(digest)
        except OSError:  # read-only or concurrently cleaned: numba's own checks still apply
            continue
    return removed
