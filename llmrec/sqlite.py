"""SQLite helpers shared by the caches and the vector store: ``IN (...)`` queries over any number of values
(SQLite caps bound parameters per statement), and one key-value cache design (scope, key) -> bytes used by
the embedding cache and the LLM generation cache. WAL journal; one transaction per ``put_many``, so a killed
writer keeps every batch it finished and the file always opens."""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

IN_CHUNK = 500  # values per statement: far under SQLite's default limit on bound parameters


def select_in(conn: sqlite3.Connection, sql: str, values: Sequence[Any], prefix: Sequence[Any] = (),
              chunk: int = IN_CHUNK) -> Iterator[tuple]:
    """Rows of ``sql`` (which holds one ``IN ({marks})``) for every chunk of ``values``; ``prefix`` are the
    parameters bound before the ``IN`` list."""
    values = list(values)
    for i in range(0, len(values), chunk):
        part = values[i: i + chunk]
        yield from conn.execute(sql.replace("{marks}", ",".join("?" * len(part))), [*prefix, *part])


class SQLiteKV:
    """A persistent map (scope, key) -> bytes, safe across threads. ``scope`` separates models."""

    def __init__(self, path: str | Path, table: str) -> None:
        if not table.isidentifier():
            raise ValueError(f"table: {table!r} is not an identifier")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.table = table
        self._conn = sqlite3.connect(str(path), check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"CREATE TABLE IF NOT EXISTS {table} "
                           "(scope TEXT, key TEXT, value BLOB, PRIMARY KEY (scope, key))")
        self._lock = threading.Lock()

    def get_many(self, scope: str, keys: Sequence[str]) -> dict[str, bytes]:
        """Values of ``scope`` by key (absent keys are left out)."""
        with self._lock:
            return dict(select_in(self._conn, f"SELECT key, value FROM {self.table} WHERE scope=? AND key IN ({{marks}})",
                                  keys, prefix=[scope]))

    def put_many(self, scope: str, items: Sequence[tuple[str, bytes]]) -> None:
        """Store values of ``scope`` by key (one transaction)."""
        with self._lock, self._conn:
            self._conn.executemany(f"INSERT OR REPLACE INTO {self.table} VALUES (?, ?, ?)",
                                   [(scope, k, v) for k, v in items])
