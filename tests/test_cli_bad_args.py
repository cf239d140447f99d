"""Bad ``dropkit`` invocations: each is one line ``dropkit: error: ...`` naming the argument
and what is allowed, exit 2 (a bad argument or input file) or 1 (an output that cannot be
written), no traceback, and nothing stored. The cases of issue 15's CLI list, and neighbours.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from dropkit.cli import main

TRAIN = ["--dataset", "digits", "--models", "mlp", "--epochs", "1"]
COMPARE = ["compare", *TRAIN, "--techniques", "none", "--seeds", "1", "--jobs", "1"]
SEARCH = ["search", *TRAIN, "--trials", "1", "--workers", "1"]
BENCH = ["bench", "--suite", "ops", "--ops", "dropout", "--dtypes", "fp32", "--min-time", "0.001"]


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 2) -> str:
    try:
        got = main(argv)
    except SystemExit as exit_:  # argparse's errors
        got = exit_.code
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("dropkit: error: "), lines
    assert got == code, (got, lines)
    return lines[0]


# -- arguments refused by the parser, before anything is imported or written -------------------


SIZE = r"size must be in \[1, 2\^62\]"
POSITIVE = r"expected a finite number > 0"
SEED = r"expected an int in \[0, 2\^63 - 1\]"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--sizes", "2^63"], rf"argument --sizes: {SIZE}, got 2\^63"),
        (["bench", "--sizes", "0"], rf"argument --sizes: {SIZE}, got 0"),
        (["bench", "--sizes", "2^x"], r"argument --sizes: size must be an int or 2\^K"),
        (["bench", "--min-time", "-1"], rf"argument --min-time: {POSITIVE}, got '-1'"),
        (["bench", "--min-time", "0"], rf"argument --min-time: {POSITIVE}"),
        (["bench", "--min-time", "nan"], rf"argument --min-time: {POSITIVE}"),
        (["search", "--seed", "-1"], rf"argument --seed: {SEED}, got -1"),
        (["search", "--seed", str(2**63)], rf"argument --seed: {SEED}"),
        (["search", "--seed", "1.5"], rf"argument --seed: {SEED}"),
        (["compare", "--train-sizes", "0"], r"argument --train-sizes: expected a positive int"),
        (["compare", "--lr", "-0.1"], rf"argument --lr: {POSITIVE}"),
        (["compare", "--lr", "inf"], rf"argument --lr: {POSITIVE}"),
        (
            ["search", "--weight-decay", "-1"],
            r"argument --weight-decay: expected a finite number >= 0",
        ),
        (
            ["compare", "--test-fraction", "1"],
            r"argument --test-fraction: expected a number in \(0, 1\)",
        ),
    ],
)
def test_parser_refuses(capsys, argv, message):
    assert re.search(message, _one_line_error(capsys, argv))


# -- bench: the device and the sizes are checked before any tensor is made ----------------------


def test_bench_sizes_that_cannot_fit_in_memory(capsys, tmp_path):
    line = _one_line_error(capsys, [*BENCH, "--sizes", "2^40", "--output", str(tmp_path / "b")])
    assert re.search(r"--sizes: 1099511627776 elements need about .* GiB on cpu, more than the "
                     r".* GiB available; use sizes up to \d+ \(2\^\d+\)", line)  # fmt: skip
    assert not (tmp_path / "b").exists()


def test_bench_bogus_device(capsys, tmp_path):
    line = _one_line_error(capsys, [*BENCH, "--device", "bogus", "--output", str(tmp_path / "b")])
    assert line == (
        "dropkit: error: --device 'bogus' is not a torch device; expected e.g. cpu, cuda or cuda:0"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is usable here")
def test_bench_cuda_without_a_gpu(capsys, tmp_path):
    line = _one_line_error(capsys, [*BENCH, "--device", "cuda", "--output", str(tmp_path / "b")])
    assert line == (
        "dropkit: error: --device cuda: no CUDA GPU is usable here "
        "(torch.cuda.is_available() is False); use --device cpu"
    )


# -- the experiment commands: checked before anything is stored ---------------------------------


def test_train_size_larger_than_the_training_set(capsys, tmp_path):
    pytest.importorskip("sklearn")
    out = tmp_path / "out"
    line = _one_line_error(capsys, [*COMPARE, "--train-sizes", "1000000000", "--out", str(out)])
    assert re.search(r"--train-sizes: digits has \d+ training examples, so each size must be in "
                     r"\[1, \d+\], got 1000000000", line)  # fmt: skip
    assert not out.exists()


def test_empty_study_name(capsys, tmp_path):
    pytest.importorskip("optuna")
    out = tmp_path / "out"
    line = _one_line_error(capsys, [*SEARCH, "--study", "", "--out", str(out)])
    assert line == "dropkit: error: --study must be a non-empty name, got ''"
    assert not (out / "study.sqlite").exists()


@pytest.fixture(scope="module")
def mnist1d_cache(tmp_path_factory) -> Path:
    """A real mnist1d data cache (generated once), to damage per test."""
    pytest.importorskip("mnist1d")
    pytest.importorskip("sklearn")
    from dropkit.experiments.data import load_dataset

    directory = tmp_path_factory.mktemp("mnist1d")
    load_dataset("mnist1d", directory)
    (cache,) = directory.glob("mnist1d-*.npz")
    return cache


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_data_cache_names_the_file(capsys, tmp_path, mnist1d_cache, damage):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    cache = data_dir / mnist1d_cache.name
    whole = mnist1d_cache.read_bytes()
    cache.write_bytes(b"not an archive" * 40 if damage == "garbage" else whole[: len(whole) // 2])
    argv = ["compare", "--dataset", "mnist1d", "--data-dir", str(data_dir), "--models", "mlp",
            "--epochs", "1", "--techniques", "none", "--seeds", "1",
            "--out", str(tmp_path / "o")]  # fmt: skip
    line = _one_line_error(capsys, argv)
    assert f"the data cache {cache} is " in line and "delete it and rerun to regenerate it" in line
    assert "pickle" not in line


# -- the run directory and the stores -----------------------------------------------------------


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody can write into: a read-only tmpfs as root, mode 0555 otherwise."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    if os.geteuid() != 0:
        directory.chmod(0o555)
        yield directory
        directory.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs",
                              str(directory)], capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"as root, a read-only directory needs a tmpfs mount: {mounted.stderr}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True)


@pytest.mark.parametrize("command", [COMPARE, SEARCH], ids=["compare", "search"])
def test_out_in_a_read_only_directory(capsys, read_only_dir, command):
    if command is SEARCH:
        pytest.importorskip("optuna")
    out = read_only_dir / "run"
    line = _one_line_error(capsys, [*command, "--out", str(out)])
    assert re.search(rf"--out {re.escape(str(out))} cannot be created: "
                     r"(read-only file system|permission denied)", line)  # fmt: skip


@pytest.mark.parametrize("command", [COMPARE, SEARCH], ids=["compare", "search"])
def test_out_is_an_existing_file(capsys, tmp_path, command):
    if command is SEARCH:
        pytest.importorskip("optuna")
    out = tmp_path / "a-file"
    out.write_text("mine")
    line = _one_line_error(capsys, [*command, "--out", str(out)])
    assert line == f"dropkit: error: --out {out} is an existing file, not a directory"
    assert out.read_text() == "mine"


def _damaged(directory: Path, name: str, how: str) -> Path:
    directory.mkdir()
    path = directory / name
    if how == "corrupt":
        path.write_bytes(b"this is not a database " * 200)
    else:  # a SQLite file of some other program
        with contextlib.closing(sqlite3.connect(path)) as connection:
            connection.execute("CREATE TABLE runs (a)")
            connection.execute("CREATE TABLE notes (x)")
            connection.commit()
    return path


@pytest.mark.parametrize("how", ["corrupt", "wrong-schema"])
def test_damaged_run_store(capsys, tmp_path, how):
    pytest.importorskip("sklearn")
    path = _damaged(tmp_path / "out", "runs.sqlite", how)
    before = path.read_bytes()
    line = _one_line_error(capsys, [*COMPARE, "--out", str(tmp_path / "out")])
    assert f"{path} is not a dropkit run store" in line
    assert "move it away or choose another --out" in line
    assert path.read_bytes() == before  # not "repaired" over the user's file


@pytest.mark.parametrize("how", ["corrupt", "wrong-schema"])
def test_damaged_study_storage(capsys, tmp_path, how):
    pytest.importorskip("optuna")
    path = _damaged(tmp_path / "out", "study.sqlite", how)
    before = path.read_bytes()
    line = _one_line_error(capsys, [*SEARCH, "--out", str(tmp_path / "out")])
    assert f"--storage sqlite:///{path}: cannot open the study storage (" in line
    assert "move it away or choose another --out / --storage" in line
    assert path.read_bytes() == before  # Optuna's tables not written into another database


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_study_storage_of_an_other_optuna_version(capsys, tmp_path):
    """An Optuna storage whose tables are not what this Optuna expects: one line."""
    pytest.importorskip("optuna")
    directory = tmp_path / "out"
    directory.mkdir()
    with contextlib.closing(sqlite3.connect(directory / "study.sqlite")) as connection:
        connection.execute("CREATE TABLE studies (x)")
        connection.execute("CREATE TABLE version_info (y)")
        connection.commit()
    line = _one_line_error(capsys, [*SEARCH, "--out", str(directory)])
    assert "cannot open the study storage (" in line


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("notaurl", r"--storage notaurl: not a database URL \(.*\); expected e\.g\. sqlite:///"),
        ("sqlite:////nonexistent-dir/x/study.sqlite", r"cannot open the study storage \("),
        ("postgresql://u:secret@127.0.0.1:1/db", r"--storage postgresql://u:\*\*\*@127\.0\.0\.1"),
    ],
)
def test_bad_storage_url(capsys, tmp_path, url, message):
    pytest.importorskip("optuna")
    line = _one_line_error(capsys, [*SEARCH, "--storage", url, "--out", str(tmp_path / "o")])
    assert re.search(message, line), line
    assert "secret" not in line


def test_storage_driver_missing(capsys, tmp_path):
    pytest.importorskip("optuna")
    if _importable("MySQLdb"):
        pytest.skip("the MySQL driver is installed here")
    url = "mysql://user@localhost/db"
    line = _one_line_error(capsys, [*SEARCH, "--storage", url, "--out", str(tmp_path / "o")])
    assert line.startswith(f"dropkit: error: --storage {url}: its database driver is not "
                           "installed")  # fmt: skip
    assert line.endswith("pip install mysqlclient (or PyMySQL, with mysql+pymysql://)")


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
