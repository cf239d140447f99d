"""Standard outputs of ``dropkit compare`` and ``search``: ``results.csv`` and
``results.json`` (one row per run or trial), per-epoch CSVs, and TensorBoard event files.

A row holds the run's config, the path of its per-epoch metrics (``epochs/<key>.csv``, relative
to the run directory) and its test metrics. Files are written to a temporary name and renamed,
so a reader never sees half a file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dropkit.experiments._atomic import atomic_directory, output_error, write_text
from dropkit.experiments.training import RunConfig

__all__ = ["RESULT_FIELDS", "result_rows", "write_results", "write_tensorboard", "write_trials"]

#: The columns of ``results.csv`` (and keys of each ``results.json`` row), in order.
RESULT_FIELDS = (
    "key", "dataset", "model", "technique", "rate", "rates", "seed", "fold", "folds", "epochs",
    "batch_size", "lr", "weight_decay", "train_size", "width", "epochs_csv", "test_score",
    "test_nll", "test_brier", "test_ece", "val_score", "val_loss", "gap", "wall_s", "cpu_s",
)  # fmt: skip
_CURVES = ("train_loss", "train_score", "val_loss", "val_score")


def _write_text(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise output_error(error, path.parent) from error
    write_text(path, text)  # whole or not at all; a full disk is one OutputError line


def _csv_text(fields: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in fields})
    return buffer.getvalue()


def _json_value(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def result_rows(runs: Sequence[tuple[RunConfig, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One dict per run, with the keys of :data:`RESULT_FIELDS` (``rates`` a list)."""
    rows = []
    for config, result in runs:
        key = config.key()
        row: dict[str, Any] = {
            "key": key,
            "dataset": config.dataset,
            "model": config.model,
            "technique": config.technique,
            "rate": config.rate,
            "rates": list(config.rates),
            "seed": config.seed,
            "fold": config.fold,
            "folds": config.folds,
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "lr": config.lr,
            "weight_decay": config.weight_decay,
            "train_size": config.train_size,
            "width": config.width,
            "epochs_csv": f"epochs/{key}.csv",
        }
        for name in RESULT_FIELDS[16:]:
            row[name] = _json_value(result.get(name))
        rows.append(row)
    return rows


def write_results(
    runs: Sequence[tuple[RunConfig, dict[str, Any]]], directory: str | Path
) -> tuple[Path, Path]:
    """Write ``results.csv``, ``results.json`` and ``epochs/<key>.csv`` (columns ``epoch``,
    ``train_loss``, ``train_score``, ``val_loss``, ``val_score``) into ``directory``."""
    directory = Path(directory)
    rows = result_rows(runs)
    for row, (_, result) in zip(rows, runs, strict=True):
        curves = result.get("curves", {})
        length = len(curves.get("train_loss", []))
        epochs = [
            {"epoch": e + 1, **{k: curves[k][e] for k in _CURVES if k in curves}}
            for e in range(length)
        ]
        _write_text(directory / row["epochs_csv"], _csv_text(("epoch", *_CURVES), epochs))
    flat = [{**row, "rates": json.dumps(row["rates"])} for row in rows]
    csv_path, json_path = directory / "results.csv", directory / "results.json"
    _write_text(csv_path, _csv_text(RESULT_FIELDS, flat))
    _write_text(json_path, json.dumps(rows, indent=1) + "\n")
    return csv_path, json_path


def _run_name(config: RunConfig) -> str:
    name = f"{config.model}/{config.technique}-p{config.rate:g}/seed{config.seed}-fold{config.fold}"
    if config.train_size is not None:
        name += f"-n{config.train_size}"
    return re.sub(r"[^A-Za-z0-9_.=/-]+", "_", name) + f"-{config.key()[:8]}"


def _summary_writer(path: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:  # torch's writer needs the tensorboard package
        from dropkit.experiments._errors import UsageError

        raise UsageError(
            "--tensorboard needs the 'tensorboard' package: pip install 'dropkit[experiments]'"
        ) from error
    return SummaryWriter(str(path))


def write_tensorboard(
    runs: Sequence[tuple[RunConfig, dict[str, Any]]], directory: str | Path
) -> int:
    """One TensorBoard run per stored run under ``directory`` (``model/technique-pR/seedS-foldF
    -key``): the per-epoch curves as scalars ``loss/train``, ``loss/val``, ``score/train``,
    ``score/val``, the test metrics at the last epoch, and the config as text. Runs already
    written (their folder exists) are skipped, so a resumed compare adds only new ones.
    Returns the number written. View with ``tensorboard --logdir DIRECTORY``."""
    directory = Path(directory)
    written = 0
    for config, result in runs:
        path = directory / _run_name(config)
        if path.exists():
            continue
        with atomic_directory(path) as partial:  # a killed write leaves no "complete" run
            _write_run_events(partial, config, result)
        written += 1
    return written


def _write_run_events(path: Path, config: RunConfig, result: dict[str, Any]) -> None:
    writer = _summary_writer(path)
    try:
        curves = result.get("curves", {})
        for key in _CURVES:
            metric, part = key.split("_")[1], key.split("_")[0]
            for epoch, value in enumerate(curves.get(key, []), start=1):
                writer.add_scalar(f"{metric}/{part}", value, epoch)
        for name in ("test_score", "test_nll", "test_brier", "test_ece", "gap"):
            if isinstance(result.get(name), (int, float)):
                writer.add_scalar(f"test/{name[5:] if name != 'gap' else name}",
                                  result[name], config.epochs)  # fmt: skip
        writer.add_text("config", f"`{config.to_json()}`")
    finally:
        writer.close()


def write_trials(
    study: Any, directory: str | Path, tensorboard: str | Path | None = None
) -> tuple[Path, Path]:
    """``results.csv`` / ``results.json`` of an Optuna study (one row per trial: number, state,
    technique, per-site rates, value, the per-epoch validation scores' CSV), and optionally
    TensorBoard runs ``trial-N`` with the reported validation score per epoch."""
    directory = Path(directory)
    rows = []
    for trial in study.get_trials(deepcopy=False):
        epochs_csv = f"epochs/trial-{trial.number}.csv"
        steps = sorted(trial.intermediate_values.items())
        _write_text(
            directory / epochs_csv,
            _csv_text(("epoch", "val_score"), [{"epoch": e + 1, "val_score": v} for e, v in steps]),
        )
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name,
                "technique": trial.params.get("technique"),
                "rates": trial.user_attrs.get("rates", {}),
                "value": _json_value(trial.value),
                "epochs_csv": epochs_csv,
                "duration_s": None if trial.duration is None else trial.duration.total_seconds(),
            }
        )
        if tensorboard is not None:
            path = Path(tensorboard) / f"trial-{trial.number}"
            if not path.exists() and steps:
                with atomic_directory(path) as partial:
                    writer = _summary_writer(partial)
                    try:
                        for epoch, value in steps:
                            writer.add_scalar("score/val", value, epoch + 1)
                        writer.add_text("params", f"`{json.dumps(trial.params)}`")
                    finally:
                        writer.close()
    fields = ("trial", "state", "technique", "rates", "value", "epochs_csv", "duration_s")
    flat = [{**row, "rates": json.dumps(row["rates"])} for row in rows]
    csv_path, json_path = directory / "results.csv", directory / "results.json"
    _write_text(csv_path, _csv_text(fields, flat))
    _write_text(json_path, json.dumps(rows, indent=1) + "\n")
    return csv_path, json_path
