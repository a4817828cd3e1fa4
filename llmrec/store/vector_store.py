"""The embedded store (the default): SQLite for text, metadata, vectors and the change log; FAISS for search.

On-disk layout (see memory/README.md):
  <dir>/store.sqlite          the source of truth (WAL mode); every add/upsert/delete is one transaction
                              (``transaction()`` groups several); meta holds the store's identity (a UUID)
  <dir>/index/<key>.snap      optional FAISS snapshot per namespace: ONE file, written atomically, = magic +
                              JSON header (store id, namespace, log sequence covered, index kind, tombstones,
                              sha256 of the index bytes) + the serialized index
  <dir>/index/.flush.lock     serializes flushes across processes (fcntl lock)

Every write commits to SQLite before it returns, so a writer killed at any moment leaves a store that
opens with every acknowledged write. FAISS indexes are derived: on open they are loaded from a snapshot
and brought up to date by replaying the change log (``ops``) past the snapshot's sequence number, or
rebuilt from the stored vectors. A snapshot is used only if it is this store's (identity), intact
(checksum), no older than the log's floor, no newer than the log, and its replayed index holds exactly the
namespace's rows; anything else is rebuilt from SQLite, never an error. Replay is idempotent (an id is
never indexed twice). Several processes may share a store: each replays the others' ops before reading or
writing. Once snapshots cover more than ``log_compact_ops`` logged ops, the log below them is deleted and
``ops_floor`` records where it starts; HNSW indexes are rebuilt once tombstones pass ``hnsw_rebuild_ratio``.
The logic shared with the PostgreSQL backend is ``llmrec.store.base.LoggedStore``."""
from __future__ import annotations

import fcntl
import sqlite3
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from llmrec.sqlite import select_in
from llmrec.store.base import (SNAPSHOT_MAGIC, Hit, LoggedStore, Record, StoreConfig, read_snapshot,
                               write_snapshot)
from llmrec.errors import StoreError


class SQLiteDB:
    """``LoggedStore``'s database in one SQLite file (WAL): writes serialized by SQLite's write lock
    (``BEGIN IMMEDIATE``), the change log's sequence from ``sqlite_sequence``."""
    SCHEMA = """
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS namespaces (name TEXT PRIMARY KEY);
    CREATE TABLE IF NOT EXISTS items (
        rid INTEGER PRIMARY KEY AUTOINCREMENT,
        namespace TEXT NOT NULL,
        ext_id TEXT NOT NULL,
        text TEXT NOT NULL,
        metadata TEXT NOT NULL,
        vector BLOB NOT NULL,
        UNIQUE (namespace, ext_id)
    );
    CREATE TABLE IF NOT EXISTS meta_kv (
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        rid INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS meta_kv_lookup ON meta_kv (namespace, key, value);
    CREATE INDEX IF NOT EXISTS meta_kv_rid ON meta_kv (rid);
    CREATE TABLE IF NOT EXISTS ops (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        namespace TEXT NOT NULL,
        rid INTEGER NOT NULL,
        op TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS ns_seq (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        namespace TEXT NOT NULL,
        item_id TEXT NOT NULL,
        event TEXT NOT NULL,
        payload TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS events_item ON events (namespace, item_id);
    """

    def __init__(self, path: Path, durability: str) -> None:
        self.path = path
        self._conn = sqlite3.connect(str(path / "store.sqlite"), check_same_thread=False, timeout=60,
                                     isolation_level=None)
        self._open_schema()
        self._conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")

    def _open_schema(self, wait_s: float = 60.0) -> None:
        """WAL mode and the schema. Switching a new file to WAL needs an exclusive lock and SQLite answers
        "database is locked" at once, without its busy timeout, while another process is creating the same
        store; retry until ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                if self._conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.executescript(self.SCHEMA)
                # identity: created with the file, so snapshots of a deleted and recreated store are foreign
                self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('store_id', ?)", (uuid.uuid4().hex,))
                # per-namespace versions for stores made before they existed
                self._conn.execute("INSERT OR IGNORE INTO ns_seq SELECT namespace, MAX(seq) FROM ops GROUP BY namespace")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open."""
        return self._conn.in_transaction

    def execute(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        """See ``DB``."""
        return self._conn.execute(sql, args)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """See ``DB``."""
        self._conn.executemany(sql, rows)

    def select_in(self, sql: str, values: Sequence[Any], prefix: Sequence[Any] = ()) -> Iterator[tuple]:
        """See ``DB``."""
        return select_in(self._conn, sql, values, prefix=prefix)

    def begin_read(self) -> None:
        """See ``DB``."""
        self._conn.execute("BEGIN")

    def begin_write(self) -> None:
        """See ``DB``."""
        self._conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        """See ``DB``."""
        self._conn.execute("COMMIT")

    def rollback(self) -> None:
        """See ``DB``."""
        self._conn.execute("ROLLBACK")

    def max_seq(self) -> int:
        """The last change-log sequence ever issued (the log itself may have been compacted)."""
        row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name='ops'").fetchone()
        return int(row[0]) if row else 0

    def insert_items(self, rows: list[tuple[str, str, str, str, bytes]]) -> list[int]:
        """See ``DB``."""
        cur = self._conn.cursor()
        out = []
        for r in rows:
            cur.execute("INSERT INTO items (namespace, ext_id, text, metadata, vector) VALUES (?,?,?,?,?)", r)
            out.append(int(cur.lastrowid))
        return out

    def numeric_value_sql(self) -> str:
        """``meta_kv.value`` as a number, NULL unless it is one (JSON numbers start with a digit or '-')."""
        return "(CASE WHEN value GLOB '[0-9-]*' THEN CAST(value AS REAL) END)"

    @contextmanager
    def flush_lock(self) -> Iterator[None]:
        """See ``DB``."""
        with open(self.path / "index" / ".flush.lock", "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def close(self) -> None:
        """See ``DB``."""
        self._conn.close()


class VectorStore(LoggedStore):
    """FAISS + SQLite vector store with namespaces: add, upsert, delete, get, find, filtered search,
    transactions, history events, checksummed snapshots and crash-safe multi-process use (format:
    memory/README.md). The embedded backend of the ``Store`` protocol."""

    def __init__(self, path: str | Path, config: StoreConfig | None = None) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "index").mkdir(exist_ok=True)
        durability = (config or StoreConfig()).durability
        super().__init__(SQLiteDB(self.path, durability), config, self.path / "index", str(self.path))


__all__ = ["Hit", "Record", "SNAPSHOT_MAGIC", "SQLiteDB", "StoreConfig", "StoreError", "VectorStore",
           "read_snapshot", "write_snapshot"]
