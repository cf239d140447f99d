"""Your own data and model in ``dropkit compare``: CSV / .npz / ImageFolder, ``--model``, the
Python API (``jobs > 1``), ``results.csv`` / ``results.json``, TensorBoard, and bad input."""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import dropkit.experiments
from dropkit.cli import main
from dropkit.experiments import data
from dropkit.experiments.compare import holm
from dropkit.experiments.results import RESULT_FIELDS

FACTORIES = "tests.experiments._factories"


def _table(rows: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    y = np.where(x[:, 0] + 0.5 * x[:, 1] > 0, "yes", "no")
    return x, y


def _write_csv(path: Path, x: np.ndarray, y: np.ndarray, label: str = "label") -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"f{i}" for i in range(x.shape[1])] + [label])
        for features, target in zip(x, y, strict=True):
            writer.writerow([*(f"{v:.6f}" for v in features), target])
    return path


def _stored(out: Path) -> list[tuple]:
    with sqlite3.connect(out / "runs.sqlite") as connection:
        return connection.execute(
            "SELECT key, technique, seed, fold, test_score FROM runs ORDER BY key"
        ).fetchall()


def test_csv_and_factory_from_the_cli_write_results_and_tensorboard(tmp_path, capsys):
    x, y = _table()
    path = _write_csv(tmp_path / "table.csv", x, y)
    out, board = tmp_path / "run", tmp_path / "tb"
    argv = ["compare", "--data", str(path), "--model", f"{FACTORIES}:small_mlp",
            "--techniques", "none", "dropout", "curriculum", "--rates", "0.2", "--seeds", "2",
            "--epochs", "2", "--jobs", "1", "--out", str(out),
            "--tensorboard", str(board)]  # fmt: skip
    assert main(argv) == 0
    stored = _stored(out)
    assert len(stored) == 6
    with open(out / "results.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert tuple(table[0]) == RESULT_FIELDS
    rows = json.loads((out / "results.json").read_text())
    assert len(table) == len(rows) == 6
    by_key = {key: score for key, _, _, _, score in stored}
    for row, line in zip(rows, table, strict=True):
        assert row["test_score"] == pytest.approx(by_key[row["key"]])
        assert float(line["test_score"]) == pytest.approx(row["test_score"])
        assert row["model"] == f"{FACTORIES}:small_mlp" and row["dataset"].startswith("table.csv@")
        with open(out / row["epochs_csv"], newline="") as handle:
            epochs = list(csv.DictReader(handle))
        assert [int(e["epoch"]) for e in epochs] == [1, 2]
        assert float(epochs[-1]["val_score"]) == pytest.approx(row["val_score"])
    # One TensorBoard run per stored run, holding the per-epoch curves.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    event_files = sorted(board.rglob("events.out.tfevents.*"))
    assert len(event_files) == 6
    first = rows[0]
    folder = next(p.parent for p in event_files if first["key"][:8] in p.parent.name)
    events = EventAccumulator(str(folder))
    events.Reload()
    values = [e.value for e in events.Scalars("score/val")]
    assert values[-1] == pytest.approx(first["val_score"], rel=1e-6)
    assert len(values) == 2
    assert "results:" in capsys.readouterr().out

    # A rerun trains nothing, and adds no TensorBoard runs.
    assert main(argv) == 0
    assert _stored(out) == stored
    assert len(sorted(board.rglob("events.out.tfevents.*"))) == 6


def test_npz_regression_with_k_folds(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=90)
    path = tmp_path / "points.npz"
    np.savez(path, x=x, y=y)
    dataset = data.load_file(path)
    assert dataset.task == "regression" and dataset.input_shape == (3,)
    assert len(dataset.y_train) == 72 and abs(float(dataset.y_train.mean())) < 1e-6
    out = tmp_path / "run"
    argv = ["compare", "--data", str(path), "--model", f"{FACTORIES}:regressor", "--folds", "2",
            "--techniques", "none", "gaussian", "--seeds", "1", "--epochs", "1",
            "--jobs", "1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    stored = _stored(out)
    assert sorted((t, f) for _, t, _, f, _ in stored) == [
        ("gaussian", 0), ("gaussian", 1), ("none", 0), ("none", 1)
    ]  # fmt: skip
    assert all(score <= 0 for *_, score in stored)  # -RMSE


def test_npz_stated_split_and_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    np.savez(tmp_path / "split.npz", x_train=rng.normal(size=(20, 2, 5)),
             y_train=np.arange(20) % 2, x_test=rng.normal(size=(6, 2, 5)),
             y_test=np.arange(6) % 2)  # fmt: skip
    split = data.load_file(tmp_path / "split.npz")
    assert (len(split.y_train), len(split.y_test)) == (20, 6)
    assert split.input_shape == (2, 5) and split.task == "classification"

    for index in range(30):
        folder = tmp_path / "images" / ("cat" if index % 2 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    images = data.load_file(tmp_path / "images", image_size=8)
    assert images.input_shape == (3, 8, 8) and images.num_classes == 2
    assert len(images.y_train) + len(images.y_test) == 30
    assert images.x_train.min() >= 0.0 and images.x_train.max() <= 1.0
    out = tmp_path / "run"
    argv = ["compare", "--data", str(tmp_path / "images"), "--image-size", "8", "--models",
            "cnn", "--techniques", "spatial", "--seeds", "1", "--epochs", "1", "--jobs", "1",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert len(_stored(out)) == 1


def test_python_api_with_two_jobs_and_resume(tmp_path):
    from tests.experiments._factories import small_mlp

    x, y = _table(160, seed=3)
    out = tmp_path / "api"
    kwargs = dict(techniques=["none", "dropout"], rates=[0.2], seeds=2, epochs=1, jobs=2, out=out)
    result = dropkit.experiments.compare(small_mlp, (x[:120], y[:120]), (x[120:], y[120:]),
                                         **kwargs)  # fmt: skip
    assert result.ran == 4 and result.reused == 0
    assert [r.technique for r in result.rows] == ["none", "dropout"]
    assert result.report.exists() and result.results_csv.exists()
    assert len(json.loads(result.results_json.read_text())) == 4
    assert result.rows[1].delta_ci is not None
    low, high = result.rows[1].delta_ci
    assert low <= result.rows[1].delta_vs_none <= high
    again = dropkit.experiments.compare(small_mlp, (x[:120], y[:120]), (x[120:], y[120:]),
                                        **kwargs)  # fmt: skip
    assert (again.ran, again.reused) == (0, 4)
    assert [r.test_score for r in again.rows] == [r.test_score for r in result.rows]


def test_python_api_rejects_an_unpicklable_factory_for_jobs(tmp_path):
    from torch import nn

    x, y = _table(40)
    with pytest.raises(dropkit.experiments.UsageError, match="module-level function"):
        dropkit.experiments.compare(lambda t, p: nn.Linear(4, 2), (x, y), (x, y), jobs=2,
                                    out=tmp_path / "x")  # fmt: skip
    assert not (tmp_path / "x").exists()


def test_holm_matches_its_definition():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.2]) == pytest.approx([0.5, 0.4])  # monotone, capped at 1
    assert holm([0.9, 0.8, 0.7]) == pytest.approx([1.0, 1.0, 1.0])
    rng = np.random.default_rng(0)
    values = rng.uniform(size=7)
    adjusted = holm(list(values))
    order = np.argsort(values)
    expected = np.maximum.accumulate(np.minimum(1, (7 - np.arange(7)) * values[order]))
    assert np.asarray(adjusted)[order] == pytest.approx(expected)


def _bad_csv(tmp_path: Path, kind: str) -> Path:
    x, y = _table(30)
    path = tmp_path / f"{kind}.csv"
    if kind == "no_label":
        return _write_csv(path, x, y, label="target")
    if kind == "single_class":
        return _write_csv(path, x, np.full(30, "yes"))
    _write_csv(path, x, y)
    lines = path.read_text().splitlines()
    cells = lines[5].split(",")
    cells[2] = "red" if kind == "text" else "nan"
    lines[5] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no_label", r"no label column 'label' \(columns: f0, f1, f2, f3, target\)"),
        ("text", r"column 'f2' is not numeric \(line 6: 'red'\)"),
        ("nan", r"1 missing/NaN value\(s\), e.g. column 'f2' at line 6"),
        ("single_class", r"single class"),
        ("empty_images", r"no images found"),
        ("missing_module", r"no module named 'no_such_module_h14'"),
        ("missing_function", r"has no 'absent'"),
        ("not_callable", r"'NOT_CALLABLE' is a int, not callable"),
        ("not_a_module", r"returned str, not a torch.nn.Module"),
        ("wrong_outputs", r"output \(2, 7\).*the data need \(N, 2\)"),
        ("missing_file", r"no such file or directory"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_stored(tmp_path, capsys, case, message):
    model = f"{FACTORIES}:small_mlp"
    if case in ("no_label", "text", "nan", "single_class"):
        source = _bad_csv(tmp_path, case)
    elif case == "empty_images":
        source = tmp_path / "images"
        (source / "cat").mkdir(parents=True)
        (source / "cat" / "notes.txt").write_text("not an image")
    elif case == "missing_file":
        source = tmp_path / "absent.csv"
    else:
        source = _write_csv(tmp_path / "good.csv", *_table(30))
        model = {
            "missing_module": "no_such_module_h14:build",
            "missing_function": f"{FACTORIES}:absent",
            "not_callable": f"{FACTORIES}:NOT_CALLABLE",
            "not_a_module": f"{FACTORIES}:not_a_module",
            "wrong_outputs": f"{FACTORIES}:wrong_outputs",
        }[case]
    out = tmp_path / "out"
    argv = ["compare", "--data", str(source), "--model", model, "--epochs", "1", "--seeds", "1",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dropkit: error:"), lines
    assert re.search(message, lines[0]), lines[0]
    assert not out.exists()  # nothing written to the run's store


def test_write_trials_of_a_study(tmp_path):
    optuna = pytest.importorskip("optuna")
    from dropkit.experiments.results import write_trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))

    def objective(trial):
        trial.suggest_categorical("technique", ["none", "dropout"])
        trial.set_user_attr("rates", {"drop1": 0.1})
        for epoch in range(3):
            trial.report(0.1 * epoch + trial.number, epoch)
        return float(trial.number)

    study.optimize(objective, n_trials=3)
    csv_path, json_path = write_trials(study, tmp_path, tmp_path / "tb")
    rows = json.loads(json_path.read_text())
    assert [r["trial"] for r in rows] == [0, 1, 2] and rows[2]["value"] == 2.0
    assert rows[1]["rates"] == {"drop1": 0.1} and rows[0]["state"] == "COMPLETE"
    with open(tmp_path / rows[2]["epochs_csv"], newline="") as handle:
        assert [float(r["val_score"]) for r in csv.DictReader(handle)] == pytest.approx(
            [2.0, 2.1, 2.2]
        )
    assert len(list((tmp_path / "tb").rglob("events.out.tfevents.*"))) == 3
    assert csv_path.read_text().startswith("trial,state,technique,rates,value,epochs_csv")
