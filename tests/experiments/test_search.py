"""``dropkit search``: two workers on one storage (SQLite, PostgreSQL), resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

SRC = str(Path(__file__).resolve().parents[2] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def _command(out: Path, trials: int, workers: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dropkit", "search", "--dataset", "digits", "--models", "mlp",
            "--epochs", "2", "--trials", str(trials), "--workers", str(workers),
            "--out", str(out), *extra]  # fmt: skip


def _trials(url: str, name: str) -> list:
    study = optuna.load_study(study_name=name, storage=url)
    return study.get_trials(deepcopy=False)


def _check_two_workers(tmp_path: Path, url: str | None) -> None:
    extra = [] if url is None else ["--storage", url]
    finished = subprocess.run(_command(tmp_path, 4, 2, *extra), env=ENV, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    url = url or f"sqlite:///{(tmp_path / 'study.sqlite').resolve()}"
    trials = _trials(url, "digits-mlp-tpe")
    done = [t for t in trials if t.state in FINISHED]
    assert len(done) == 4 == len(trials)  # none lost, none extra
    assert sorted(t.number for t in trials) == list(range(4))  # none duplicated
    best = json.loads((tmp_path / "best.json").read_text())
    assert set(best["rates"]) == {"drop1", "drop2"}  # a dropkit.surgery.set_rates mapping
    assert all(0.0 <= rate <= 0.5 for rate in best["rates"].values())
    assert best["technique"] in ("none", "dropout", "gaussian")


def test_two_workers_on_sqlite(tmp_path):
    _check_two_workers(tmp_path, None)


def test_two_workers_on_postgresql(tmp_path, postgres_url):
    _check_two_workers(tmp_path, postgres_url)


@pytest.mark.slow
def test_grid_sampler_covers_the_grid(tmp_path):
    command = _command(tmp_path, 100, 1, "--sampler", "grid", "--techniques", "none", "dropout",
                       "--grid-rates", "0.1", "0.3", "--no-prune")  # fmt: skip
    finished = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    trials = _trials(f"sqlite:///{(tmp_path / 'study.sqlite').resolve()}", "digits-mlp-grid")
    points = sorted((t.params["technique"], t.params["rate"]) for t in trials)
    assert points == [("dropout", 0.1), ("dropout", 0.3), ("none", 0.1), ("none", 0.3)]


@pytest.mark.slow
def test_search_resumes_after_sigkill(tmp_path):
    url = f"sqlite:///{(tmp_path / 'study.sqlite').resolve()}"
    command = _command(tmp_path, 8, 1, "--epochs", "15")  # slow enough to be killed mid-way
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 180
    done_before = 0
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
        try:
            done_before = sum(t.state in FINISHED for t in _trials(url, "digits-mlp-tpe"))
        except Exception:  # the study is not created yet
            continue
        if done_before >= 2:
            break
    os.killpg(process.pid, signal.SIGKILL)  # the command and its worker
    process.wait(timeout=30)
    assert 2 <= done_before < 8, "the kill must land mid-way"
    finished = subprocess.run(command, env=ENV, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    trials = _trials(url, "digits-mlp-tpe")
    done = [t for t in trials if t.state in FINISHED]
    assert len(done) == 8
    assert len({t.number for t in trials}) == len(trials)
    # At most the one trial in flight at the kill is left unfinished (RUNNING or FAIL).
    assert len(trials) - len(done) <= 1
