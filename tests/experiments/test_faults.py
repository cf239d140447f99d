"""Fault tests of ``dropkit compare`` and ``search``: SIGKILL (the command alone, or its whole
process group) then a rerun, and a full disk (a small tmpfs, as root).

After a kill and a rerun: every planned run / grid point is finished exactly once, its numbers
equal those of an uninterrupted run, and no process of the killed command is left (checked by
PID and start time in ``/proc``). On a full disk: one line ``dropkit: error: no space left on
device writing ...``, exit 1, no file left that looks complete but is not, and the rerun on a
larger disk resumes. The end-to-end kills start several Python processes that import torch, so
they are marked ``slow``; the unit tests of the same mechanisms (worker death, reconciliation,
atomic writes) run in a few seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")
LINUX = sys.platform.startswith("linux")
pytestmark = pytest.mark.skipif(not LINUX, reason="the checks read /proc and use Linux signals")


def _env() -> dict[str, str]:
    # Built per call: the conftest's private data cache is set in os.environ per session.
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


# -- processes, by PID and start time (a reused PID is another process) ------------------------


def _stat(pid: int) -> tuple[str, int, str] | None:
    """``(state, parent pid, start time)`` of ``pid`` from /proc, or ``None`` if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), fields[19]


def _descendants(root: int) -> set[tuple[int, str]]:
    """Every living descendant of ``root`` as ``(pid, start time)``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := _stat(int(entry.name))) is not None:
            children.setdefault(found[1], []).append(int(entry.name))
    seen: set[tuple[int, str]] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found = _stat(child)
            if found is not None and found[0] not in "ZX":
                seen.add((child, found[2]))
                stack.append(child)
    return seen


def _alive(processes: set[tuple[int, str]]) -> set[tuple[int, str]]:
    living = set()
    for pid, start in processes:
        found = _stat(pid)
        if found is not None and found[2] == start and found[0] not in "ZX":
            living.add((pid, start))
    return living


def _wait_gone(processes: set[tuple[int, str]], timeout: float) -> set[tuple[int, str]]:
    deadline = time.monotonic() + timeout
    while (left := _alive(processes)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _kill(process: subprocess.Popen[bytes], how: str) -> None:
    if how == "group":
        os.killpg(process.pid, signal.SIGKILL)  # the command, its workers, the resource tracker
    else:
        process.send_signal(signal.SIGKILL)  # the command alone: its workers must follow
    process.wait(timeout=30)


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(argv, env=_env(), stdout=subprocess.DEVNULL, stderr=handle,
                                start_new_session=True)  # fmt: skip


def _run(argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=timeout)


# -- unit tests of the mechanisms (fast) ----------------------------------------------------------


def test_worker_dies_with_a_sigkilled_parent(tmp_path):
    """A grandchild that called die_with_parent ends within a second of its parent's SIGKILL."""
    ready = tmp_path / "ready"
    parent = textwrap.dedent(f"""
        import multiprocessing, time
        from dropkit.experiments._lifetime import die_with_parent
        import os

        def child(parent_pid):
            die_with_parent(parent_pid)
            open({str(ready)!r}, "w").write(str(os.getpid()))
            time.sleep(600)

        if __name__ == "__main__":
            multiprocessing.get_context("spawn").Process(target=child, args=(os.getpid(),)).start()
            time.sleep(600)
    """)
    script = tmp_path / "parent.py"  # spawn re-imports __main__ by its file
    script.write_text(parent)
    process = subprocess.Popen([sys.executable, str(script)], env=_env(), start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert ready.exists(), "the child did not start"
        family = _descendants(process.pid)
        assert len(family) >= 1
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert _wait_gone(family, 5.0) == set()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def grid_study(tmp_path):
    optuna = pytest.importorskip("optuna")
    from dropkit.experiments.search import open_study

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = f"sqlite:///{tmp_path / 'study.sqlite'}"
    return open_study(url, "faults", "grid", {"no_prune": True})


def _running_trial(study, point, worker):
    """A RUNNING trial at ``point``, made the way a worker makes it (PartialFixedSampler)."""
    import optuna

    fixed = {"technique": point[0], "rate": point[1]}
    study.sampler = optuna.samplers.PartialFixedSampler(fixed, optuna.samplers.RandomSampler())
    trial = study.ask(
        {
            "technique": optuna.distributions.CategoricalDistribution(["none", "dropout"]),
            "rate": optuna.distributions.FloatDistribution(0.0, 1.0),
        }
    )
    assert trial.params == fixed
    if worker is not None:
        trial.set_user_attr("worker", worker)
    return trial


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_reconcile_fails_a_dead_local_worker_at_once(grid_study):
    """A RUNNING trial of a worker on this machine that is gone is failed without waiting for
    the heartbeat grace period, and its point is planned again; a live worker holds its."""
    from dropkit.experiments import search

    points = [("none", 0.1), ("dropout", 0.1), ("dropout", 0.3)]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    identity = {**search._worker_identity(), "pid": int(dead.stdout), "start": "1"}
    _running_trial(grid_study, points[0], identity)  # a killed worker
    _running_trial(grid_study, points[1], search._worker_identity())  # this live process
    completed = _running_trial(grid_study, points[2], None)
    grid_study.tell(completed, 0.5)
    plan = search.reconcile(grid_study, points, len(points))
    assert plan.stale_failed == 1
    assert plan.todo_points == [points[0]]
    assert (plan.done, plan.running) == (1, 1)
    states = [t.state.name for t in grid_study.get_trials(deepcopy=False)]
    assert states == ["FAIL", "RUNNING", "COMPLETE"]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_reconcile_fails_a_trial_that_never_sent_a_heartbeat(grid_study, monkeypatch):
    """A worker killed between creating its trial and starting the heartbeat leaves a RUNNING
    trial with no heartbeat and no worker record: failed once older than the grace period."""
    from dropkit.experiments import search

    points = [("none", 0.1)]
    _running_trial(grid_study, points[0], None)
    plan = search.reconcile(grid_study, points, 1)
    assert (plan.running, plan.stale_failed, plan.todo_points) == (1, 0, [])  # young: held
    monkeypatch.setattr(search, "GRACE_S", -1)
    plan = search.reconcile(grid_study, points, 1)
    assert (plan.running, plan.stale_failed, plan.todo_points) == (0, 1, points)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs at ``tmp_path/disk`` (root only); remount it larger with _grow."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _resize(disk: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(disk)], check=True)


def test_atomic_write_on_a_full_disk_keeps_the_old_file(small_disk):
    from dropkit.experiments._atomic import atomic_directory, write_bytes
    from dropkit.experiments._errors import OutputError

    target = small_disk / "report.html"
    write_bytes(target, b"old and whole")
    with pytest.raises(OutputError, match=r"^no space left on device writing .*report\.html$"):
        write_bytes(target, os.urandom(256 * 1024))
    assert target.read_bytes() == b"old and whole"
    assert sorted(p.name for p in small_disk.iterdir()) == ["report.html"]  # no temporary
    with (
        pytest.raises(OutputError, match="no space left on device"),
        atomic_directory(small_disk / "tb") as partial,
    ):
        (partial / "events").write_bytes(os.urandom(256 * 1024))
    assert sorted(p.name for p in small_disk.iterdir()) == ["report.html"]


def test_atomic_write_keeps_the_umask_mode(tmp_path):
    from dropkit.experiments._atomic import write_text

    previous = os.umask(0o027)
    try:
        path = write_text(tmp_path / "results.csv", "a,b\n")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o640


# -- the commands, end to end (slow: each starts Python processes that import torch) -------------


def _compare_argv(out: Path) -> list[str]:
    return [sys.executable, "-m", "dropkit", "compare", "--dataset", "digits", "--models", "mlp",
            "--techniques", "none", "dropout", "--rates", "0.3", "--seeds", "3", "--epochs", "2",
            "--jobs", "2", "--out", str(out)]  # fmt: skip


_RUN_COLUMNS = "key, technique, seed, test_score, val_score, test_nll, test_ece, gap"


def _runs(database: Path) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
        return connection.execute(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY key").fetchall()


def _results(out: Path) -> list[dict]:
    rows = json.loads((out / "results.json").read_text())
    for row in rows:  # timings differ from run to run; everything else must not
        row.pop("wall_s")
        row.pop("cpu_s")
    return sorted(rows, key=lambda r: r["key"])


@pytest.fixture(scope="module")
def compare_baseline(tmp_path_factory) -> tuple[list[tuple], list[dict]]:
    out = tmp_path_factory.mktemp("baseline") / "compare"
    finished = _run(_compare_argv(out))
    assert finished.returncode == 0, finished.stderr[-3000:]
    return _runs(out / "runs.sqlite"), _results(out)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["parent", "group"])
def test_compare_jobs_2_sigkill_then_rerun(tmp_path, compare_baseline, how):
    out = tmp_path / "compare"
    database = out / "runs.sqlite"
    log = tmp_path / "killed.log"
    process = _start(_compare_argv(out), log)
    family: set[tuple[int, str]] = set()
    stored: list[tuple] = []
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None:
            family |= _descendants(process.pid)
            with contextlib.suppress(sqlite3.Error):
                stored = _runs(database) if database.exists() else []
            if stored:
                break
            time.sleep(0.05)
        family |= _descendants(process.pid)
        family.add((process.pid, (_stat(process.pid) or ("", 0, ""))[2]))
        _kill(process, how)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    stored = _runs(database)
    assert 1 <= len(stored) < 6, ("the kill must land mid-way", log.read_text()[-3000:])
    assert len(family) >= 3, "the command, its two workers (and its resource tracker)"
    assert _wait_gone(family, 10.0) == set(), "processes of the killed command live on"

    rerun = _run(_compare_argv(out))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{len(stored)} finished runs reused" in rerun.stdout
    baseline_runs, baseline_results = compare_baseline
    after = _runs(database)
    assert len(after) == 6 == len({row[0] for row in after})  # each planned run exactly once
    assert set(stored) <= set(after)  # nothing finished before the kill was lost or redone
    assert after == baseline_runs  # the same numbers as an uninterrupted run
    assert _results(out) == baseline_results
    assert not list(out.glob(".*.tmp")) and not list(out.glob("**/.*.partial"))


_GRID = [("dropout", 0.1), ("dropout", 0.3), ("none", 0.1), ("none", 0.3)]


def _search_argv(out: Path) -> list[str]:
    return [sys.executable, "-m", "dropkit", "search", "--dataset", "digits", "--models", "mlp",
            "--sampler", "grid", "--techniques", "none", "dropout", "--grid-rates", "0.1", "0.3",
            "--no-prune", "--epochs", "2", "--trials", "100", "--workers", "2",
            "--out", str(out)]  # fmt: skip


def _grid_trials(out: Path) -> list:
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = f"sqlite:///{(out / 'study.sqlite').resolve()}"
    return optuna.load_study(study_name="digits-mlp-grid", storage=url).get_trials(deepcopy=False)


def _completed_now(database: Path) -> int:
    """COMPLETE trials, read-only (Optuna's own loader would write its tables, racing the
    command that creates them)."""
    if not database.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            return db.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def _complete(trials: list) -> dict[tuple[str, float], list[float]]:
    values: dict[tuple[str, float], list[float]] = {}
    for trial in trials:
        if trial.state.name == "COMPLETE":
            values.setdefault((trial.params["technique"], trial.params["rate"]), []).append(
                trial.value
            )
    return values


@pytest.fixture(scope="module")
def search_baseline(tmp_path_factory) -> dict[tuple[str, float], float]:
    pytest.importorskip("optuna")
    out = tmp_path_factory.mktemp("baseline") / "search"
    finished = _run(_search_argv(out))
    assert finished.returncode == 0, finished.stderr[-3000:]
    values = _complete(_grid_trials(out))
    assert sorted(values) == _GRID and all(len(v) == 1 for v in values.values())
    return {point: v[0] for point, v in values.items()}


@pytest.mark.slow
@pytest.mark.parametrize("how", ["parent", "group"])
def test_search_workers_2_sigkill_then_rerun(tmp_path, search_baseline, how):
    out = tmp_path / "search"
    log = tmp_path / "killed.log"
    process = _start(_search_argv(out), log)
    family: set[tuple[int, str]] = set()
    done = 0
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None:
            family |= _descendants(process.pid)
            done = _completed_now(out / "study.sqlite")
            if done:
                break
            time.sleep(0.1)
        family |= _descendants(process.pid)
        family.add((process.pid, (_stat(process.pid) or ("", 0, ""))[2]))
        _kill(process, how)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert 1 <= done < len(_GRID), ("the kill must land mid-way", log.read_text()[-3000:])
    assert len(family) >= 3, "the command and its two workers"
    # The command alone: rerun at once, while its workers may still be dying (the race that
    # once ran a point twice); the whole group: rerun once everything is gone.
    if how == "group":
        assert _wait_gone(family, 10.0) == set()
    rerun = _run(_search_argv(out))
    assert _wait_gone(family, 10.0) == set(), "processes of the killed command live on"
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed study 'digits-mlp-grid':" in rerun.stdout
    values = _complete(_grid_trials(out))
    assert sorted(values) == _GRID  # every planned point ...
    assert all(len(v) == 1 for v in values.values()), values  # ... COMPLETE exactly once
    assert {point: v[0] for point, v in values.items()} == search_baseline
    states = {t.state.name for t in _grid_trials(out)}
    assert states <= {"COMPLETE", "FAIL"}  # nothing left RUNNING


def _whole(path: Path) -> bool:
    """Whether a file the command wrote is complete by its own format."""
    data = path.read_bytes()
    if path.suffix == ".png":
        return data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")
    if path.suffix == ".html":
        return data.rstrip().endswith(b"</html>")
    if path.suffix == ".json":
        json.loads(data)
        return True
    if path.suffix == ".csv":
        return data.endswith(b"\n") and len(data.splitlines()) >= 2
    return True


@pytest.mark.slow
def test_compare_on_a_full_disk_then_rerun(small_disk):
    _resize(small_disk, "160k")  # the run store fits, the charts and report do not
    out = small_disk / "compare"
    argv = [sys.executable, "-m", "dropkit", "compare", "--dataset", "digits", "--models", "mlp",
            "--techniques", "none", "dropout", "--rates", "0.3", "--seeds", "2", "--epochs", "1",
            "--jobs", "1", "--out", str(out)]  # fmt: skip
    full = _run(argv)
    assert full.returncode == 1, (full.stdout[-2000:], full.stderr[-3000:])
    lines = full.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "dropkit: error: no space left on device writing "
    ), lines
    assert str(out) in lines[0]
    assert not [p for p in out.rglob(".*") if p.name not in (".", "..")], "temporary files left"
    written = [p for p in out.rglob("*") if p.is_file() and not p.name.startswith("runs.sqlite")]
    assert all(_whole(p) for p in written), [p.name for p in written if not _whole(p)]
    stored = _runs(out / "runs.sqlite")
    assert len(stored) >= 1

    _resize(small_disk, "16m")
    rerun = _run(argv)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{len(stored)} finished runs reused" in rerun.stdout
    after = _runs(out / "runs.sqlite")
    assert len(after) == 4 == len({row[0] for row in after}) and set(stored) <= set(after)
    for name in ("report.html", "results.csv", "results.json", "curves-mlp.png"):
        assert _whole(out / name), name


def test_full_disk_message_names_the_file(small_disk, capsys):
    """In process: the report's writer on a full disk raises one OutputError line (exit 1)."""
    from dropkit.cli import main

    pytest.importorskip("matplotlib")
    out = small_disk / "search"
    (small_disk / "filler").write_bytes(b"\0" * (60 * 1024))  # leave the run dir ~4 KiB
    code = main(["search", "--dataset", "digits", "--models", "mlp", "--study",
                 f"s{uuid.uuid4().hex[:6]}", "--out", str(out), "--trials", "1",
                 "--epochs", "1", "--workers", "1"])  # fmt: skip
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1, lines
    assert len(lines) == 1 and lines[0].startswith("dropkit: error: no space left on device")
