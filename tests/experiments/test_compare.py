"""``dropkit compare`` end to end: SQLite rows, HTML and PNGs, resume, SIGKILL, bad arguments."""

from __future__ import annotations

import html.parser
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dropkit.cli import main
from dropkit.experiments.store import RunStore
from dropkit.experiments.training import RunConfig, classification_metrics, train_run

SRC = str(Path(__file__).resolve().parents[2] / "src")


class _Table(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_summary = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and ("class", "summary") in attrs:
            self._in_summary = True
        elif self._in_summary and tag == "tr":
            self.rows.append([])
        elif self._in_summary and tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_summary = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT key, technique, seed, test_score, test_ece FROM runs ORDER BY key"
        ).fetchall()


def test_tiny_compare_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["compare", "--dataset", "digits", "--models", "mlp", "--techniques", "none",
            "dropout", "--rates", "0.3", "--seeds", "2", "--epochs", "1", "--jobs", "1",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    rows = _rows(out / "runs.sqlite")
    assert len(rows) == 4 and {(r[1], r[2]) for r in rows} == {
        ("none", 0),
        ("none", 1),
        ("dropout", 0),
        ("dropout", 1),
    }
    assert all(0.0 <= r[3] <= 1.0 and 0.0 <= r[4] <= 1.0 for r in rows)
    for name in ("curves-mlp.png", "final-mlp.png", "reliability-mlp.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    document = (out / "report.html").read_text()
    assert document.count("data:image/png;base64,") == 3
    table = _Table()
    table.feed(document)
    shown = {(cells[1], cells[4]): cells for cells in table.rows if cells}
    for technique in ("none", "dropout"):
        scores = [r[3] for r in rows if r[1] == technique]
        mean, std = np.mean(scores), np.std(scores, ddof=1)
        cell = shown[(technique, "2")][5]
        shown_mean, shown_std = (float(v) for v in cell.split(" ± "))
        assert shown_mean == pytest.approx(100 * mean, abs=0.005)
        assert shown_std == pytest.approx(100 * std, abs=0.005)
    printed = capsys.readouterr().out
    assert "report:" in printed and "runs/min" in printed

    # Rerunning the same command runs nothing and keeps the rows.
    assert main(argv) == 0
    assert _rows(out / "runs.sqlite") == rows
    assert "4 finished runs reused" in capsys.readouterr().out


def test_run_metrics_are_consistent():
    config = RunConfig("digits", "mlp", "curriculum", (0.2, 0.2), seed=3, epochs=2)
    result = train_run(config)
    assert len(result["curves"]["val_score"]) == 2
    assert result["val_score"] == result["curves"]["val_score"][-1]
    table = result["reliability"]
    assert sum(table["count"]) == 360
    assert sum(table["correct"]) / 360 == pytest.approx(result["test_score"])
    assert result["test_ece"] == pytest.approx(
        sum(abs(a - c) for a, c in zip(table["correct"], table["confidence"], strict=True)) / 360
    )
    assert train_run(config)["test_score"] == result["test_score"]  # seeded: reproducible


def test_classification_metrics_known_values():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1])
    metrics = classification_metrics(probs, labels)
    assert metrics["test_nll"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4])))
    assert metrics["test_brier"] == pytest.approx((0.02 + 0.08 + 0.72) / 3)
    # Bins (i/10, (i+1)/10]: 0.9 -> bin 8 (correct), 0.8 -> bin 7 (correct), 0.6 -> bin 5 (wrong).
    assert metrics["test_ece"] == pytest.approx((0.1 + 0.2 + 0.6) / 3)
    table = metrics["reliability"]
    assert sum(table["count"]) == 3 and table["count"][8] == table["count"][7] == 1
    assert table["correct"][5] == 0 and table["confidence"][5] == pytest.approx(0.6)


def test_sigkill_loses_only_the_running_run(tmp_path):
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "dropkit", "compare", "--dataset", "digits", "--models", "mlp",
            "--techniques", "none", "dropout", "gaussian", "--rates", "0.2", "--seeds", "3",
            "--epochs", "15", "--jobs", "1", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    database = out / "runs.sqlite"
    deadline = time.monotonic() + 120
    before: list[tuple] = []
    while time.monotonic() < deadline and process.poll() is None:
        if database.exists():
            try:
                before = _rows(database)
            except sqlite3.OperationalError:
                before = []
            if len(before) >= 2:
                break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    before = _rows(database)
    assert 1 <= len(before) < 9, "the kill must land mid-way"
    finished = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    after = _rows(database)
    assert len(after) == 9 and len({r[0] for r in after}) == 9
    assert set(before) <= set(after)  # no finished run lost or rewritten
    assert f"{len(before)} finished runs reused" in finished.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--techniques", "none", "magic"], "technique must be one of"),
        (["--rates", "1.0"], r"rate must be in \[0, 1\)"),
        (["--rates", "-0.1"], r"rate must be in \[0, 1\)"),
        (["--dataset", "fashion-mnist", "--data-dir", "/nonexistent/dir"], "does not exist"),
        (
            ["--dataset", "fashion-mnist", "--data-dir", "/"],
            "apt-get install dataset-fashion-mnist",
        ),
        (["--models", "transformer"], "model must be one of"),
        (["--folds", "0"], "expected a positive int"),
    ],
)
def test_bad_arguments_one_line_exit_2(tmp_path, capsys, args, message):
    argv = ["compare", "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path / "x"), *args]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's errors
        code = exit_.code
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dropkit: error:"), lines
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "x" / "runs.sqlite").exists()


def test_bad_argument_from_the_command_line(tmp_path):
    argv = [sys.executable, "-m", "dropkit", "compare", "--rates", "1.5", "--out", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    finished = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 2
    assert (
        finished.stderr.strip()
        == "dropkit: error: argument --rates: rate must be in [0, 1), got 1.5"
    )


def test_store_ignores_duplicates(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    config = RunConfig("digits", "mlp", "none", (0.0, 0.0), seed=0)
    store.add(config, {"test_score": 0.5, "curves": {}})
    store.add(config, {"test_score": 0.9, "curves": {}})
    assert [json.dumps(r) for _, r in store.runs()] == [
        json.dumps({"test_score": 0.5, "curves": {}})
    ]
    store.close()


def test_reproduce_uci_needs_the_uncertainty_module_and_data(capsys):
    assert main(["reproduce", "uci"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    try:
        from dropkit.experiments import uci  # noqa: F401
    except ImportError:
        assert "needs the uncertainty module" in lines[0]
    else:
        assert "--data-dir" in lines[0]


def test_summary_pairs_seeds_and_averages_folds():
    from scipy import stats

    from dropkit.experiments.compare import summarise

    def run(technique, seed, fold, score):
        config = RunConfig("digits", "mlp", technique, (0.2, 0.2), seed, fold, folds=2)
        curves = {"train_loss": [1.0], "val_loss": [1.0]}
        return config, {"test_score": score, "val_score": score, "curves": curves}

    base = {0: (0.80, 0.82), 1: (0.70, 0.74), 2: (0.90, 0.90)}
    gain = {0: 0.03, 1: 0.01, 2: 0.02}
    runs = [run("none", s, f, base[s][f]) for s in base for f in (0, 1)]
    runs += [run("dropout", s, f, base[s][f] + gain[s]) for s in base for f in (0, 1)]
    rows = {row.technique: row for row in summarise(runs)}
    assert rows["none"].test_score == pytest.approx([0.81, 0.72, 0.90])  # folds averaged
    assert rows["dropout"].delta_vs_none == pytest.approx(0.02)
    expected = stats.ttest_rel([0.84, 0.73, 0.92], [0.81, 0.72, 0.90]).pvalue
    assert rows["dropout"].p_value_t == pytest.approx(expected)
    assert rows["none"].p_value_t is None
