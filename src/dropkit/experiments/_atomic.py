"""Outputs written whole or not at all, and errors that say which file and why.

Every file the experiment commands write goes through :func:`atomic_open`: the bytes go to a
temporary file in the destination's directory (same file system, so the rename is atomic),
which is flushed, fsynced and renamed over the destination only once complete. A full disk, a
kill or an exception leaves the previous file (or none), never a truncated one, and no
temporary file behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from dropkit.experiments._errors import OutputError, UsageError

__all__ = [
    "atomic_directory",
    "atomic_open",
    "is_disk_full",
    "output_error",
    "prepare_out_dir",
    "save_figure",
    "write_bytes",
    "write_text",
]

_CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def output_error(error: OSError, path: str | Path) -> OutputError:
    """``error`` as one line: ``<cause> writing <path>`` (``no space left on device writing
    runs/report.html``)."""
    cause = _CAUSES.get(error.errno or 0) or (error.strerror or str(error)).lower()
    converted = OutputError(f"{cause} writing {path}")
    converted.errno = error.errno
    return converted


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` (an OSError, or a database error's text) means the disk is full."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "disk is full" in str(error) or "no space left" in str(error).lower()


@contextlib.contextmanager
def atomic_open(
    path: str | Path, mode: str = "wb", encoding: str | None = None
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it replaces ``path``.

    Raises:
        OutputError: the file could not be written (the message names the cause and ``path``).
    """
    if "w" not in mode:
        raise ValueError(f"mode must be a write mode ('w', 'wb'), got {mode!r}")
    path = Path(path)
    try:
        descriptor, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
    except OSError as error:
        raise output_error(error, path) from error
    try:
        with os.fdopen(descriptor, mode, encoding=encoding) as handle:
            os.fchmod(handle.fileno(), 0o666 & ~_umask())  # not mkstemp's 0600
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        _fsync_directory(path.parent)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(error, OSError) and not isinstance(error, OutputError):
            raise output_error(error, path) from error
        raise


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a fresh hidden folder beside ``path`` to fill; on a clean exit it is renamed to
    ``path`` (which must not exist). A kill or an error leaves no ``path`` (a leftover partial
    folder of an earlier kill is removed first).

    Raises:
        OutputError: the folder could not be written.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
    except OSError as error:
        raise output_error(error, path) from error
    try:
        yield partial
        os.replace(partial, path)
        _fsync_directory(path.parent)
    except BaseException as error:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(error, OSError) and not isinstance(error, OutputError):
            raise output_error(error, path) from error
        raise


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would, for a moment, for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk too.
    with contextlib.suppress(OSError):
        handle = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def save_figure(figure: Any, path: str | Path, **savefig_kwargs: Any) -> Path:
    """``figure.savefig`` into ``path`` atomically (the format from the suffix)."""
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format=path.suffix.lstrip(".") or "png", **savefig_kwargs)
    return path


def prepare_out_dir(path: str | Path, option: str = "--out") -> Path:
    """Create the run directory ``path`` (and parents) and check that it can be written.

    Raises:
        UsageError: ``path`` is an existing file, or cannot be created or written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is an existing file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        cause = _CAUSES.get(error.errno or 0) or (error.strerror or str(error)).lower()
        raise UsageError(f"{option} {path} cannot be created: {cause}") from error
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path} is not writable: permission denied")
    return path
