"""Fixtures of the experiment tests: a private cache, blocked sockets, a throwaway PostgreSQL."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("mnist1d")


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Generated data (mnist1d) goes to a temporary cache, shared by the session's tests and
    the subprocesses they start."""
    previous = os.environ.get("DROPKIT_CACHE_DIR")
    os.environ["DROPKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("DROPKIT_CACHE_DIR", None)
    else:
        os.environ["DROPKIT_CACHE_DIR"] = previous


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Small models run fastest on one thread (and intra-op threads crawl on a busy machine);
    the root conftest restores the count after each test."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a unix socket in a temporary directory.

    Uses Debian's server binaries (``apt-get install postgresql``; ``.ci/run`` installs them);
    as root the server runs as the ``postgres`` user, which PostgreSQL requires.
    """
    pytest.importorskip("psycopg2")
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL server binaries absent (apt-get install postgresql)")
    bindir = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="dropkit-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' user to run the server as")
        shutil.chown(root, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data = root / "data"

    def run(*command: object) -> None:
        subprocess.run([*prefix, *map(str, command)], check=True, capture_output=True, timeout=120)

    run(bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
    run(bindir / "pg_ctl", "-D", data, "-w", "-l", root / "server.log",
        "-o", f"-k {root} -c listen_addresses='' -F", "start")  # fmt: skip
    try:
        run(bindir / "createdb", "-h", root, "-U", "postgres", "dropkit")
        yield f"postgresql+psycopg2://postgres@/dropkit?host={root}"
    finally:
        run(bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
