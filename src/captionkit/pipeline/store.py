"""The runner's memory: one SQLite row per item, committed as soon as the item finishes.

SQLite in WAL mode survives the process being killed at any instant (kill -9 included): a row is either
committed or absent. ``results.jsonl`` is rebuilt from here on every start, so the output file holds each
item exactly once whatever happened to the previous run.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from captionkit.errors import ConfigError
from captionkit.io.results import result_record
from captionkit.records import ItemResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,            -- position in the dataset, to write results in input order
    status TEXT NOT NULL,            -- 'done' | 'failed'
    attempts INTEGER NOT NULL,
    result TEXT NOT NULL,            -- ItemResult as JSON
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS items_seq ON items (seq);
"""


class StateStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # durable against process death; fsync at checkpoints
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    # --- run identity -------------------------------------------------------------------------------------
    def begin(self, fingerprint: str, dataset: str, restart: bool = False) -> None:
        """Refuse to resume with different settings: mixing two configurations in one output is never wanted."""
        if restart:
            self.db.execute("DELETE FROM items")
            self.db.execute("DELETE FROM meta")
        old = self.meta("fingerprint")
        if old is not None and old != fingerprint and self.count() > 0:
            raise ConfigError(
                f"{self.path.parent} holds a run made with other settings (stages, frames, limits or column "
                f"mapping differ). Rerun with the same arguments to resume, pass --restart to start over, "
                f"or choose another --out directory."
            )
        self.set_meta("fingerprint", fingerprint)
        self.set_meta("dataset", dataset)

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # --- items --------------------------------------------------------------------------------------------
    def state(self, item_id: str) -> tuple[str, int] | None:
        """(status, attempts) of an item seen before, or None."""
        row = self.db.execute("SELECT status, attempts FROM items WHERE id = ?", (item_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def save(self, result: ItemResult, seq: int) -> None:
        self.save_many([(result, seq)])

    def save_many(self, rows: list[tuple[ItemResult, int]]) -> None:
        now = time.time()
        with self.db:  # one transaction: the batch is committed whole or not at all
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR REPLACE INTO items (id, seq, status, attempts, result, updated) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (r.id, seq, "done" if r.ok else "failed", r.attempts, json.dumps(result_record(r), ensure_ascii=False), now)
                    for r, seq in rows
                ],
            )

    def results(self, final_only_below: int | None = None) -> Iterator[dict[str, Any]]:
        """Stored results in dataset order. With ``final_only_below=N``, failed items with fewer than N
        attempts (which the next run retries) are left out."""
        sql = "SELECT result FROM items"
        args: tuple[Any, ...] = ()
        if final_only_below is not None:
            sql += " WHERE status = 'done' OR attempts >= ?"
            args = (final_only_below,)
        for (text,) in self.db.execute(sql + " ORDER BY seq", args):
            yield json.loads(text)

    def count(self, status: str | None = None) -> int:
        if status is None:
            return self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM items WHERE status = ?", (status,)).fetchone()[0]
