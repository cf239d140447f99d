"""Resumable storage of finished runs: one SQLite file (WAL), one row per run.

A row is written, and committed, the moment its run ends, keyed by the hash of its config; a
rerun skips keys already present, and a process killed mid-way loses only the runs in flight.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dropkit.experiments._atomic import is_disk_full
from dropkit.experiments._errors import OutputError, UsageError
from dropkit.experiments.training import RunConfig

__all__ = ["RunStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    dataset TEXT NOT NULL, model TEXT NOT NULL, technique TEXT NOT NULL, rate REAL NOT NULL,
    seed INTEGER NOT NULL, fold INTEGER NOT NULL,
    test_score REAL, val_score REAL, test_nll REAL, test_ece REAL, gap REAL, wall_s REAL,
    config TEXT NOT NULL, result TEXT NOT NULL,
    finished_at TEXT NOT NULL DEFAULT (datetime('now'))
)
"""

_COLUMNS = {"key", "dataset", "model", "technique", "rate", "seed", "fold", "config", "result"}


class RunStore:
    """Finished runs in ``path`` (created if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(self.path, timeout=60)
        try:  # read first: another program's database is refused before anything is written
            tables = {
                row[0]
                for row in self._connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            }
            columns = {row[1] for row in self._connection.execute("PRAGMA table_info(runs)")}
        except sqlite3.DatabaseError as error:
            self._connection.close()
            raise self._error(error) from error
        missing = _COLUMNS - columns
        if tables and missing:
            self._connection.close()
            lacks = (
                f"its 'runs' table lacks {sorted(missing)}"
                if columns
                else (f"it has no 'runs' table (tables: {sorted(tables)})")
            )
            raise UsageError(
                f"{self.path} is not a dropkit run store: {lacks} (move it away or choose "
                "another --out)"
            )
        try:
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=NORMAL")
            self._connection.execute(_SCHEMA)
            self._connection.commit()
        except sqlite3.DatabaseError as error:
            self._connection.close()
            raise self._error(error) from error

    def _error(self, error: sqlite3.Error) -> Exception:
        if is_disk_full(error):
            return OutputError(f"no space left on device writing {self.path}")
        return UsageError(
            f"{self.path} is not a dropkit run store ({error}); move it away or choose "
            "another --out"
        )

    def close(self) -> None:
        self._connection.close()

    def finished_keys(self) -> set[str]:
        return {row[0] for row in self._connection.execute("SELECT key FROM runs")}

    def add(self, config: RunConfig, result: dict[str, Any]) -> None:
        """Store one finished run and commit at once (a duplicate key is ignored)."""
        try:
            self._insert(config, result)
        except sqlite3.Error as error:  # the transaction is rolled back: the store stays whole
            raise self._error(error) from error

    def _insert(self, config: RunConfig, result: dict[str, Any]) -> None:
        self._connection.execute(
            "INSERT OR IGNORE INTO runs (key, dataset, model, technique, rate, seed, fold,"
            " test_score, val_score, test_nll, test_ece, gap, wall_s, config, result)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                config.key(),
                config.dataset,
                config.model,
                config.technique,
                config.rate,
                config.seed,
                config.fold,
                result.get("test_score"),
                result.get("val_score"),
                result.get("test_nll"),
                result.get("test_ece"),
                result.get("gap"),
                result.get("wall_s"),
                config.to_json(),
                json.dumps(result),
            ),
        )
        self._connection.commit()

    def runs(self, keys: Iterable[str] | None = None) -> list[tuple[RunConfig, dict[str, Any]]]:
        """Stored runs (all, or those with the given keys) as ``(config, result)`` pairs."""
        rows = self._connection.execute("SELECT key, config, result FROM runs ORDER BY rowid")
        wanted = None if keys is None else set(keys)
        return [
            (RunConfig.from_json(config), json.loads(result))
            for key, config, result in rows
            if wanted is None or key in wanted
        ]
