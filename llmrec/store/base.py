"""What every store backend shares: the ``Store`` protocol that ``Memory``, the research sources and the
benchmarks use, and ``LoggedStore``, which serves it from a SQL database (the truth) and one FAISS index per
namespace in each process (a replica, derived from the database).

The database holds the items, their metadata index, a change log (``ops``: add / del by row id, numbered by
a sequence that grows with every write), per-namespace versions and history events. Writes are one database
transaction each and are serialized (SQLite's write lock; a PostgreSQL advisory lock), so the log's order is
the commit order. A process's FAISS indexes are loaded from a snapshot (or rebuilt from the stored vectors)
and brought up to date by replaying the log past the sequence they cover, before every read and write:

- **read-your-writes**: a write reaches the writer's own indexes when it commits;
- **read-after-write across processes**: a search first replays what other processes committed, so a
  search that starts after a write was acknowledged anywhere sees it;
- a replica never diverges for long: replay is idempotent (row ids are never reused), and ``verify``
  compares every index with its rows.

Backends (``SQLiteDB`` in ``vector_store.py``, ``PostgresDB`` in ``postgres.py``) supply the connection, the
SQL dialect and the locks (``DB``). The on-disk and in-database formats are in memory/README.md."""
from __future__ import annotations

import hashlib
import json
import re
import struct
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from llmrec.config import StrictConfig
from llmrec.errors import NotFoundError, StoreError
from llmrec.io import atomic_open
from llmrec.store.index import AnnIndex, IndexConfig

_META_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_TEXT_CHARS = 1_000_000
SNAPSHOT_MAGIC = b"LLMRECSNAP1\n"


class StoreConfig(StrictConfig):
    """Vector store settings: dimension, index, durability, snapshot and compaction thresholds."""
    dim: int | None = None  # fixed by the first add when None
    index: IndexConfig = IndexConfig()
    durability: Literal["normal", "full"] = "normal"  # "full" also survives OS crashes (fsync per commit)
    exact_filter_limit: int = 4096  # filtered searches over at most this many rows score them exactly
    rescore_factor: int = 4  # ivfpq: fetch k * factor candidates, rescore with the stored exact vectors
    log_compact_ops: int = 50_000  # flush deletes the change log below its snapshots once it is this long
    hnsw_rebuild_ratio: float = 0.25  # hnsw: rebuild a namespace's graph when tombstones pass this share


@dataclass
class Hit:
    """A search result: id, text, metadata and score."""
    id: str
    score: float
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    namespace: str = ""


@dataclass
class Record:
    """A stored item: id, text, metadata, vector and namespace."""
    id: str
    text: str
    metadata: dict[str, Any]
    vector: np.ndarray
    namespace: str


@runtime_checkable
class Store(Protocol):
    """The store protocol: namespaced items (id, text, metadata, vector) with add / upsert / delete, get,
    metadata ``find``, filtered vector ``search``, transactions, history events, versions and ``verify``.
    ``VectorStore`` (embedded: SQLite + FAISS) and ``PostgresStore`` (PostgreSQL + per-process FAISS
    replicas) implement it and pass one conformance suite (tests/test_store_conformance.py)."""
    config: StoreConfig

    @property
    def dim(self) -> int | None:
        """The vector dimension (None until the first add fixes it)."""
    def add(self, namespace: str, ids: Sequence[str], texts: Sequence[str], vectors: Any,
            metadatas: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Insert new items (an existing id is an error)."""
    def upsert(self, namespace: str, ids: Sequence[str], texts: Sequence[str], vectors: Any,
               metadatas: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Insert or replace items by id."""
    def delete(self, namespace: str, ids: Sequence[str], missing_ok: bool = False) -> int:
        """Delete items by id; how many were deleted."""
    def get(self, namespace: str, ids: Sequence[str]) -> list[Record | None]:
        """Records in the order of ``ids`` (None where absent)."""
    def find(self, namespace: str, where: Mapping[str, Any]) -> list[Record]:
        """Records whose metadata matches ``where``."""
    def search(self, namespace: str, query: Any, k: int = 10, where: Mapping[str, Any] | None = None) -> list[Hit]:
        """Top-k hits by inner product, optionally filtered on metadata."""
    def transaction(self) -> Any:
        """A context grouping writes: all acknowledged or none."""
    def log_event(self, namespace: str, item_ids: Sequence[str], event: str,
                  payloads: Sequence[Mapping[str, Any]]) -> None:
        """Append history events (in the current transaction, if any)."""
    def events(self, namespace: str, item_id: str | None = None) -> list[dict[str, Any]]:
        """History events, oldest first."""
    def namespaces(self) -> list[str]:
        """Every namespace that has held an item."""
    def count(self, namespace: str) -> int:
        """Items in a namespace."""
    def ids(self, namespace: str) -> list[str]:
        """Ids of a namespace's items, in insertion order."""
    def version(self, namespace: str | None = None) -> int:
        """A number that changes with every write (to the store, or to one namespace)."""
    def verify(self) -> dict[str, dict[str, int]]:
        """Every namespace's index against its rows: duplicates, missing, extra (0 when healthy)."""
    def flush(self) -> None:
        """Persist derived state (snapshots) and compact the change log."""
    def close(self) -> None:
        """Flush and close."""


class DB(Protocol):
    """What ``LoggedStore`` needs of a database connection. SQL is written with ``?`` placeholders; a
    statement holding ``IN ({marks})`` goes through ``select_in``."""
    in_transaction: bool

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """Run one statement; a cursor (``fetchone``, ``fetchall``, ``fetchmany``)."""
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement per row."""
    def select_in(self, sql: str, values: Sequence[Any], prefix: Sequence[Any] = ()) -> Iterator[tuple]:
        """Rows of a statement holding ``IN ({marks})`` for any number of ``values``."""
    def begin_read(self) -> None:
        """Start a transaction whose reads agree with each other."""
    def begin_write(self) -> None:
        """Start a write transaction holding the store's write lock."""
    def commit(self) -> None:
        """Commit (a write is acknowledged when this returns)."""
    def rollback(self) -> None:
        """Roll back (also after the connection was lost)."""
    def max_seq(self) -> int:
        """The last committed change-log sequence (inside a write: this transaction's last op too)."""
    def insert_items(self, rows: list[tuple[str, str, str, str, bytes]]) -> list[int]:
        """Insert (namespace, ext_id, text, metadata, vector) rows; their new row ids, in order."""
    def numeric_value_sql(self) -> str:
        """An SQL expression: ``meta_kv.value`` as a number, NULL unless it is one."""
    def flush_lock(self) -> Any:
        """A context serializing flushes across processes."""
    def close(self) -> None:
        """Close the connection."""


def _ns_key(ns: str) -> str:
    return hashlib.sha1(ns.encode()).hexdigest()[:20]


class LoggedStore:
    """Namespaced items in a SQL database, searched through per-process FAISS replicas of each namespace
    (module docstring); ``snapshot_dir`` (optional) holds checksummed snapshots of the replicas so that the
    next open skips rebuilding."""

    def __init__(self, db: DB, config: StoreConfig | None, snapshot_dir: Path | None, where: str) -> None:
        self._db, self._where, self._snap_dir = db, where, snapshot_dir
        if snapshot_dir is not None:
            snapshot_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.config = self._reconcile_config(config)
        self.store_id = str(self._db.execute("SELECT value FROM meta WHERE key='store_id'").fetchone()[0])
        self._indexes: dict[str, AnnIndex] = {}
        self._seq = 0
        self._txn: list[tuple[str, str, np.ndarray, np.ndarray | None]] | None = None  # pending index ops
        self._filters: dict[tuple[str, str], tuple[int, set[int]]] = {}  # (ns, filter) -> (ns version, row ids)
        self._load_indexes()

    # ------------------------------------------------------------------ config & lifecycle
    def _reconcile_config(self, config: StoreConfig | None) -> StoreConfig:
        row = self._db.execute("SELECT value FROM meta WHERE key='config'").fetchone()
        if row is None:
            config = config or StoreConfig()
            self._db.execute("INSERT INTO meta VALUES ('config', ?) ON CONFLICT DO NOTHING", (config.model_dump_json(),))
            row = self._db.execute("SELECT value FROM meta WHERE key='config'").fetchone()
        saved = StoreConfig.model_validate_json(row[0])
        if config is not None:
            for name in ("dim", "index"):
                mine, theirs = getattr(config, name), getattr(saved, name)
                if name == "dim" and mine is None:
                    continue
                if mine != theirs:
                    raise StoreError(f"{name}: the store at {self._where} was created with {theirs}, not {mine}")
            saved = saved.model_copy(update={"durability": config.durability,
                                             "exact_filter_limit": config.exact_filter_limit,
                                             "rescore_factor": config.rescore_factor})
        return saved

    @property
    def dim(self) -> int | None:
        """The vector dimension (None until the first add fixes it)."""
        return self.config.dim

    def close(self) -> None:
        """Close the database connection (pending index state is already persisted)."""
        with self._lock:
            self.flush()
            self._db.close()

    def __enter__(self) -> "LoggedStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ index maintenance
    def _new_index(self) -> AnnIndex:
        if self.config.dim is None:
            raise StoreError(f"dim: the store at {self._where} has namespaces but no vector dimension")
        return AnnIndex(self.config.dim, self.config.index)

    def _ns_version(self, ns: str) -> int:
        row = self._db.execute("SELECT seq FROM ns_seq WHERE name=?", (ns,)).fetchone()
        return int(row[0]) if row else 0

    def _floor(self) -> int:
        return int((self._db.execute("SELECT value FROM meta WHERE key='ops_floor'").fetchone() or [0])[0])

    @contextmanager
    def _read_txn(self) -> Iterator[None]:
        """One consistent view of the database for several reads; a no-op inside a transaction."""
        if self._db.in_transaction:
            yield
            return
        self._db.begin_read()
        try:
            yield
        finally:
            self._db.commit()

    def _rebuild(self, ns: str) -> AnnIndex:
        idx = self._new_index()
        cur = self._db.execute("SELECT rid, vector FROM items WHERE namespace=? ORDER BY rid", (ns,))
        while rows := cur.fetchmany(10_000):
            idx.add(np.array([r[0] for r in rows], np.int64),
                    np.stack([np.frombuffer(r[1], np.float32) for r in rows]))
        return idx

    def _load_indexes(self) -> None:
        with self._lock, self._read_txn():  # config, log position, namespaces and rows from one snapshot
            self._refresh_config()
            self._seq = self._db.max_seq()
            floor = self._floor()
            self._indexes = {}
            for (ns,) in self._db.execute("SELECT name FROM namespaces").fetchall():
                idx = self._load_snapshot(ns, floor)
                self._indexes[ns] = idx if idx is not None else self._rebuild(ns)

    def _refresh_config(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key='config'").fetchone()
        saved = StoreConfig.model_validate_json(row[0])
        if saved.dim != self.config.dim:
            self.config = self.config.model_copy(update={"dim": saved.dim})

    def _snapshot_path(self, ns: str) -> Path:
        return self._snap_dir / f"{_ns_key(ns)}.snap"

    def _load_snapshot(self, ns: str, floor: int) -> AnnIndex | None:
        """The namespace's snapshot brought up to date, or None (rebuild) unless every check passes."""
        if self._snap_dir is None:
            return None
        snap = read_snapshot(self._snapshot_path(ns))
        if snap is None:
            return None
        info, data = snap
        if (info["store_id"] != self.store_id or info["namespace"] != ns or info["kind"] != self.config.index.kind
                or info["dim"] != self.config.dim or info["seq"] > self._seq
                # below the floor the log it would replay is gone, unless the namespace has no op since it
                or info["seq"] < min(floor, self._ns_version(ns))):
            return None
        try:
            idx = AnnIndex.from_bytes(self.config.dim, self.config.index, data, info["tombstones"])
        except (RuntimeError, ValueError, TypeError):
            return None
        self._replay(ns, idx, info["seq"], self._seq)
        rows = int(self._db.execute("SELECT COUNT(*) FROM items WHERE namespace=?", (ns,)).fetchone()[0])
        return idx if idx.ntotal == rows else None

    def _replay(self, ns: str | None, idx: AnnIndex | None, after: int, upto: int) -> None:
        """Apply logged ops with after < seq <= upto (to one namespace's index, or to all)."""
        q = "SELECT o.seq, o.namespace, o.rid, o.op, i.vector FROM ops o LEFT JOIN items i ON i.rid = o.rid " \
            "WHERE o.seq > ? AND o.seq <= ?" + (" AND o.namespace = ?" if ns is not None else "") + " ORDER BY o.seq"
        args: list = [after, upto] + ([ns] if ns is not None else [])
        for _, op_ns, rid, op, vec in self._db.execute(q, args).fetchall():
            target = idx if ns is not None else self._indexes.get(op_ns)
            if target is None:
                target = self._indexes[op_ns] = self._new_index()
            # idempotent: rids are never reused, so an id already in the index (live or tombstoned) is
            # never added a second time, and only a live one is removed
            if op == "add":
                if vec is not None and not target.contains(rid):  # vec None: deleted later, its 'del' follows
                    target.add(np.array([rid], np.int64), np.frombuffer(vec, np.float32)[None])
            elif target.contains(rid) and rid not in target.tombstones:
                target.remove(np.array([rid], np.int64))

    def _sync(self) -> None:
        """Catch up with writes made by other processes (or other store objects). Inside a transaction there
        is nothing to catch up with (it holds the write lock and synced when it began) and the log holds its
        own uncommitted ops, which reach the indexes at commit: a no-op."""
        if self._txn is not None:
            return
        with self._read_txn():
            latest = self._db.max_seq()
            if latest == self._seq:
                return
            self._refresh_config()
            if self._seq < self._floor():  # the log we would replay was compacted: reload
                self._load_indexes()
                return
            touched = {r[0] for r in self._db.execute(
                "SELECT DISTINCT namespace FROM ops WHERE seq > ? AND seq <= ?", (self._seq, latest))}
            self._replay(None, None, self._seq, latest)
            self._seq = latest
            for ns in touched:
                self._maybe_rebuild(ns)

    def _maybe_rebuild(self, ns: str) -> None:
        """HNSW cannot delete: rebuild the graph once tombstones pass ``hnsw_rebuild_ratio`` of it."""
        idx = self._indexes.get(ns)
        if idx is not None and idx.tombstones and \
                len(idx.tombstones) > self.config.hnsw_rebuild_ratio * max(1, idx.index.ntotal):
            self._indexes[ns] = self._rebuild(ns)

    def flush(self) -> None:
        """Write a snapshot of every namespace (one atomic file each; with a snapshot folder) so the next
        open skips rebuilding, then compact the change log below them. Serialized across processes; a
        snapshot newer than ours is kept."""
        with self._lock, self._db.flush_lock():
            if self._txn is not None:
                raise StoreError("flush: not allowed inside a transaction (snapshots cover committed writes only)")
            self._sync()
            if self._snap_dir is not None:
                self._write_snapshots()
            self._compact_log()

    def _write_snapshots(self) -> None:
        for ns, idx in self._indexes.items():
            path = self._snapshot_path(ns)
            have = read_snapshot(path, header_only=True)
            # unchanged since its snapshot (or a newer one is there): not rewritten, so a flush costs
            # the namespaces that changed, not every user's
            if have is not None and have["store_id"] == self.store_id and \
                    have["seq"] >= min(self._seq, self._ns_version(ns)):
                continue
            write_snapshot(path, {"store_id": self.store_id, "namespace": ns, "seq": self._seq,
                                  "kind": self.config.index.kind, "dim": self.config.dim,
                                  "tombstones": sorted(idx.tombstones)}, idx.to_bytes())
            for legacy in (path.with_suffix(".faiss"), path.with_suffix(".json")):  # pre-0.3 snapshot pairs
                legacy.unlink(missing_ok=True)

    def _compact_log(self) -> None:
        """Delete the logged ops below ``self._seq``. Called by ``flush`` right after it has made every
        namespace's snapshot (if any) cover ``self._seq``, so nothing below it is needed to load them; a
        replica of another process that lags behind the new floor reloads (``_sync``)."""
        covered, floor = self._seq, self._floor()
        n = int(self._db.execute("SELECT COUNT(*) FROM ops WHERE seq > ? AND seq <= ?", (floor, covered)).fetchone()[0])
        if n < self.config.log_compact_ops:
            return
        with self.transaction():
            self._db.execute("DELETE FROM ops WHERE seq <= ?", (covered,))
            self._db.execute("INSERT INTO meta VALUES ('ops_floor', ?) ON CONFLICT(key) DO UPDATE SET "
                             "value=excluded.value", (str(covered),))

    # ------------------------------------------------------------------ validation
    def _check_namespace(self, namespace: str) -> None:
        if not isinstance(namespace, str) or not namespace.strip() or len(namespace) > 256:
            raise StoreError("namespace: must be a non-empty string of at most 256 characters")
        _check_text(namespace, "namespace")

    def _check_vectors(self, vectors: Any, n: int) -> np.ndarray:
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim == 1 and n == 1:
            v = v[None]
        if v.ndim != 2 or v.shape[0] != n:
            raise StoreError(f"vectors: expected {n} rows of vectors, got shape {v.shape}")
        if self.config.dim is not None and v.shape[1] != self.config.dim:
            raise StoreError(f"vectors: expected dimension {self.config.dim}, got {v.shape[1]}")
        bad = ~np.isfinite(v).all(axis=1)
        if bad.any():
            raise StoreError(f"vectors[{int(np.argmax(bad))}]: contains NaN or inf")
        return np.ascontiguousarray(v)

    def _check_items(self, ids: Sequence[str], texts: Sequence[str], metadatas) -> list[str]:
        if len(ids) != len(texts):
            raise StoreError(f"ids: {len(ids)} ids for {len(texts)} texts")
        if metadatas is not None and len(metadatas) != len(texts):
            raise StoreError(f"metadatas: {len(metadatas)} entries for {len(texts)} texts")
        seen = set()
        for i, (x, t) in enumerate(zip(ids, texts)):
            if not isinstance(x, str) or not x:
                raise StoreError(f"ids[{i}]: must be a non-empty string")
            if x in seen:
                raise StoreError(f"ids[{i}]: duplicate id {x!r} in one call")
            seen.add(x)
            _check_text(x, f"ids[{i}]")
            if not isinstance(t, str) or not t.strip():
                raise StoreError(f"texts[{i}]: empty text")
            _check_text(t, f"texts[{i}]")
            if len(t) > MAX_TEXT_CHARS:
                raise StoreError(f"texts[{i}]: {len(t)} characters exceed {MAX_TEXT_CHARS}")
        out = []
        for i, m in enumerate(metadatas or [{}] * len(texts)):
            if not isinstance(m, Mapping):
                raise StoreError(f"metadatas[{i}]: must be a mapping")
            try:
                text = json.dumps(dict(m), sort_keys=True, allow_nan=False)
            except (TypeError, ValueError) as e:
                raise StoreError(f"metadatas[{i}]: not JSON-serializable ({e})") from e
            _check_text(text, f"metadatas[{i}]")
            out.append(text)
        return out

    # ------------------------------------------------------------------ writes
    def add(self, namespace: str, ids: Sequence[str], texts: Sequence[str], vectors: Any,
            metadatas: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Insert new items; an id that already exists in the namespace is an error (use ``upsert``)."""
        self._write(namespace, ids, texts, vectors, metadatas, replace=False)

    def upsert(self, namespace: str, ids: Sequence[str], texts: Sequence[str], vectors: Any,
               metadatas: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Insert or replace items by id."""
        self._write(namespace, ids, texts, vectors, metadatas, replace=True)

    @contextmanager
    def transaction(self) -> Iterator["LoggedStore"]:
        """Group writes into one database transaction: all of them are acknowledged together or none is (a
        crash or an exception inside rolls every one back). ``get`` / ``find`` / ``ids`` inside see the pending
        writes; the FAISS indexes (``search``) change only at commit. Nested calls join the outer one."""
        with self._lock:
            if self._txn is not None:
                yield self
                return
            self._db.begin_write()
            try:
                self._sync()  # under the write lock: nobody else can write now
                self._txn = []
                yield self
                seq = self._db.max_seq()
                self._db.commit()
            except BaseException:
                self._txn = None
                self._db.rollback()
                self._refresh_config_after_rollback()
                raise
            pending, self._txn = self._txn, None
            for ns, op, rids, vecs in pending:
                idx = self._indexes.get(ns)
                if idx is None:
                    idx = self._indexes[ns] = self._new_index()
                if op == "add":
                    idx.add(rids, vecs)
                else:
                    idx.remove(rids)
            self._seq = seq
            for ns in {p[0] for p in pending if p[1] == "remove"}:
                self._maybe_rebuild(ns)

    def _refresh_config_after_rollback(self) -> None:
        """A dimension fixed inside a rolled-back transaction is undone too (best effort: the connection
        may be the thing that failed; the next call reconnects and syncs)."""
        try:
            self._refresh_config()
        except Exception:  # noqa: BLE001 - the original error is the one to raise
            pass

    def _bump(self, namespace: str) -> None:
        self._db.execute("INSERT INTO ns_seq VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET seq=excluded.seq",
                         (namespace, self._db.max_seq()))

    def _write(self, namespace, ids, texts, vectors, metadatas, replace: bool) -> None:
        self._check_namespace(namespace)
        _not_a_string(ids, "ids")
        _not_a_string(texts, "texts")
        ids, texts = list(ids), list(texts)
        metas = self._check_items(ids, texts, metadatas)
        vecs = self._check_vectors(vectors, len(ids))
        if not ids:
            return
        with self.transaction():
            if self.config.dim is None:
                self._fix_dim(vecs.shape[1])
            vecs = self._check_vectors(vecs, len(ids))
            self._db.execute("INSERT INTO namespaces VALUES (?) ON CONFLICT DO NOTHING", (namespace,))
            removed = self._delete_rows(namespace, ids, must_exist=False) if replace else []
            if not replace:
                self._reject_existing(namespace, ids)
            rids = self._db.insert_items([(namespace, x, t, m, v.tobytes()) for x, t, m, v in zip(ids, texts, metas, vecs)])
            kv = []
            for m, rid in zip(metas, rids):
                for key, val in json.loads(m).items():
                    if val is None or isinstance(val, (str, int, float, bool)):
                        kv.append((namespace, key, json.dumps(val), rid))
            if kv:
                self._db.executemany("INSERT INTO meta_kv VALUES (?, ?, ?, ?)", kv)
            self._db.executemany("INSERT INTO ops (namespace, rid, op) VALUES (?, ?, 'add')", [(namespace, r) for r in rids])
            self._bump(namespace)
            if removed:
                self._txn.append((namespace, "remove", np.array(removed, np.int64), None))
            self._txn.append((namespace, "add", np.array(rids, np.int64), vecs))

    def _fix_dim(self, dim: int) -> None:
        self.config = self.config.model_copy(update={"dim": dim})
        self._db.execute("UPDATE meta SET value=? WHERE key='config'", (self.config.model_dump_json(),))

    def _reject_existing(self, namespace: str, ids: list[str]) -> None:
        row = next(self._db.select_in("SELECT ext_id FROM items WHERE namespace=? AND ext_id IN ({marks}) LIMIT 1",
                                      ids, prefix=[namespace]), None)
        if row:
            raise StoreError(f"ids: {row[0]!r} already exists in namespace {namespace!r} (use upsert)")

    def _delete_rows(self, namespace: str, ids: list[str], must_exist: bool) -> list[int]:
        found: dict[str, int] = dict(self._db.select_in(
            "SELECT ext_id, rid FROM items WHERE namespace=? AND ext_id IN ({marks})", ids, prefix=[namespace]))
        if must_exist:
            missing = [x for x in ids if x not in found]
            if missing:
                raise NotFoundError(f"ids: not found in namespace {namespace!r}: {missing[:5]}")
        rids = list(found.values())
        if rids:
            self._db.executemany("DELETE FROM items WHERE rid=?", [(r,) for r in rids])
            self._db.executemany("DELETE FROM meta_kv WHERE rid=?", [(r,) for r in rids])
            self._db.executemany("INSERT INTO ops (namespace, rid, op) VALUES (?, ?, 'del')",
                                 [(namespace, r) for r in rids])
        return rids

    def delete(self, namespace: str, ids: Sequence[str], missing_ok: bool = False) -> int:
        """Delete items by id; returns how many were deleted. Unknown namespace or id: KeyError."""
        self._check_namespace(namespace)
        _not_a_string(ids, "ids")
        ids = list(ids)
        with self.transaction():
            if self._db.execute("SELECT 1 FROM namespaces WHERE name=?", (namespace,)).fetchone() is None:
                raise NotFoundError(f"namespace: unknown namespace {namespace!r}")
            rids = self._delete_rows(namespace, ids, must_exist=not missing_ok)
            if rids:
                self._bump(namespace)
                self._txn.append((namespace, "remove", np.array(rids, np.int64), None))
        return len(rids)

    # ------------------------------------------------------------------ reads
    def verify(self) -> dict[str, dict[str, int]]:
        """Compare every namespace's FAISS index with its database rows (after catching up with other
        writers): ``{namespace: {rows, indexed, duplicates, missing, extra}}``; a healthy store has 0 of the
        last three."""
        with self._lock, self._read_txn():  # the replayed log and the rows from one database snapshot
            self._sync()
            out = {}
            for ns, idx in sorted(self._indexes.items()):
                rows = {r[0] for r in self._db.execute("SELECT rid FROM items WHERE namespace=?", (ns,))}
                got = idx.ids()
                have = set(got.tolist())
                out[ns] = {"rows": len(rows), "indexed": int(len(got)), "duplicates": int(len(got) - len(have)),
                           "missing": len(rows - have), "extra": len(have - rows)}
            return out

    def version(self, namespace: str | None = None) -> int:
        """A number that changes whenever any process writes to the store (the last change-log sequence), or
        with ``namespace``, to that namespace only (so a cache of one user survives other users' writes)."""
        if namespace is not None:
            self._check_namespace(namespace)
        with self._lock:
            return self._db.max_seq() if namespace is None else self._ns_version(namespace)

    def namespaces(self) -> list[str]:
        """Every namespace that has ever held an item."""
        with self._lock:
            self._sync()
            return sorted(self._indexes)

    def count(self, namespace: str) -> int:
        """Items in a namespace."""
        self._check_namespace(namespace)
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM items WHERE namespace=?", (namespace,)).fetchone()[0])

    def ids(self, namespace: str) -> list[str]:
        """Ids of a namespace's items, in insertion order."""
        self._check_namespace(namespace)
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT ext_id FROM items WHERE namespace=? ORDER BY rid", (namespace,)).fetchall()]

    def get(self, namespace: str, ids: Sequence[str]) -> list[Record | None]:
        """Records in the order of ``ids`` (None where an id is absent)."""
        self._check_namespace(namespace)
        _not_a_string(ids, "ids")
        ids = list(ids)
        for i, x in enumerate(ids):
            if not isinstance(x, str):
                raise StoreError(f"ids[{i}]: must be a string")
            _check_text(x, f"ids[{i}]")
        out: dict[str, Record] = {}
        with self._lock:
            for ext, text, meta, vec in self._db.select_in(
                    "SELECT ext_id, text, metadata, vector FROM items WHERE namespace=? AND ext_id IN ({marks})",
                    ids, prefix=[namespace]):
                out[ext] = Record(ext, text, json.loads(meta), np.frombuffer(vec, np.float32).copy(), namespace)
        return [out.get(x) for x in ids]

    def log_event(self, namespace: str, item_ids: Sequence[str], event: str, payloads: Sequence[Mapping[str, Any]]) -> None:
        """Append history events (``add`` / ``update`` / ``delete`` ...) for items, in the current transaction if
        there is one (so an event is recorded exactly when its write is)."""
        self._check_namespace(namespace)
        now = time.time()
        rows = [(namespace, str(i), event, json.dumps(dict(p), sort_keys=True), now) for i, p in zip(item_ids, payloads)]
        with self.transaction():
            if rows:
                self._db.executemany("INSERT INTO events (namespace, item_id, event, payload, at) VALUES (?,?,?,?,?)",
                                     rows)

    def events(self, namespace: str, item_id: str | None = None) -> list[dict[str, Any]]:
        """History events of a namespace (or of one item), oldest first."""
        self._check_namespace(namespace)
        with self._lock:
            sql = "SELECT seq, item_id, event, payload, at FROM events WHERE namespace=?"
            args: list[Any] = [namespace]
            if item_id is not None:
                sql += " AND item_id=?"
                args.append(item_id)
            return [{"seq": r[0], "id": r[1], "event": r[2], **json.loads(r[3]), "at": r[4]}
                    for r in self._db.execute(sql + " ORDER BY seq", args).fetchall()]

    def find(self, namespace: str, where: Mapping[str, Any]) -> list[Record]:
        """Every record of a namespace whose metadata matches ``where`` (through the metadata index)."""
        self._check_namespace(namespace)
        with self._lock:
            rids = sorted(self._filter_rids(namespace, where))
            return [Record(r[2], r[3], json.loads(r[4]), np.frombuffer(r[5], np.float32).copy(), namespace)
                    for r in self._rows(rids, "rid, namespace, ext_id, text, metadata, vector") if r[1] == namespace]

    def _range_rids(self, namespace: str, key: str, bounds: Mapping[str, Any]) -> set[int]:
        ops = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
        num = self._db.numeric_value_sql()
        sql, args = f"SELECT rid FROM meta_kv WHERE namespace=? AND key=? AND {num} IS NOT NULL", [namespace, key]
        for op, v in bounds.items():
            if op not in ops:
                raise StoreError(f"where.{key}.{op}: range operators are gt, gte, lt, lte")
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise StoreError(f"where.{key}.{op}: a range bound must be a number")
            sql += f" AND {num} {ops[op]} ?"
            args.append(float(v))
        return {r[0] for r in self._db.execute(sql, args).fetchall()}

    def _filter_rids(self, namespace: str, where: Mapping[str, Any]) -> set[int]:
        """Row ids matching every condition, via the metadata index: ``key == value``, ``key in [values]`` or
        a numeric range ``{"gte": a, "lt": b}`` (operators gt, gte, lt, lte)."""
        result: set[int] | None = None
        for key, val in where.items():
            if not _META_KEY.match(str(key)):
                raise StoreError(f"where.{key}: metadata keys must be identifiers")
            if isinstance(val, Mapping):
                found = self._range_rids(namespace, key, val)
                result = found if result is None else result & found
                if not result:
                    return set()
                continue
            vals = list(val) if isinstance(val, (list, tuple, set)) else [val]
            if not vals:
                raise StoreError(f"where.{key}: empty list")
            for v in vals:
                if not (v is None or isinstance(v, (str, int, float, bool))):
                    raise StoreError(f"where.{key}: value must be a scalar or a list of scalars")
            rows = self._db.select_in("SELECT rid FROM meta_kv WHERE namespace=? AND key=? AND value IN ({marks})",
                                      [json.dumps(v) for v in vals], prefix=[namespace, key])
            found = {r[0] for r in rows}
            result = found if result is None else result & found
            if not result:
                return set()
        return result or set()

    def search(self, namespace: str, query: Any, k: int = 10,
               where: Mapping[str, Any] | None = None) -> list[Hit]:
        """Top-k hits by inner product in one namespace, optionally filtered on metadata."""
        self._check_namespace(namespace)
        if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
            raise StoreError("k: must be a positive integer")
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if self.config.dim is not None and q.shape[0] != self.config.dim:
            raise StoreError(f"query: expected dimension {self.config.dim}, got {q.shape[0]}")
        if not np.isfinite(q).all():
            raise StoreError("query: contains NaN or inf")
        with self._lock:
            self._sync()
            idx = self._indexes.get(namespace)
            if idx is None or idx.ntotal == 0:
                return []
            k = min(k, idx.ntotal)  # never allocate for more hits than the namespace holds
            allowed = None
            if where:
                allowed, version = self._cached_filter(namespace, where)
                if len(allowed) <= self.config.exact_filter_limit:
                    return self._exact(namespace, q, k, allowed)
                # the filter keeps every row of the namespace as indexed (no write since the replica's
                # sequence; e.g. every unit is a turn): search without a selector
                if version <= self._seq and len(allowed) == idx.ntotal - len(idx.tombstones):
                    allowed = None
            rescore = self.config.index.kind == "ivfpq"
            fetch = k * (self.config.rescore_factor if rescore else 1)
            with _single_thread_faiss():
                scores, rids = idx.search(q[None], fetch, allowed)
            pairs = [(float(s_), int(r)) for s_, r in zip(scores[0], rids[0]) if r != -1]
            if rescore:
                return self._exact(namespace, q, k, {r for _, r in pairs})
            return self._hydrate(namespace, pairs)[:k]

    def _cached_filter(self, namespace: str, where: Mapping[str, Any]) -> tuple[set[int], int]:
        """``_filter_rids`` and the namespace's version they were read at (one database snapshot), remembered
        per (namespace, filter) until the namespace's next write: searches of one user with the same filter
        (a granularity) do not fetch the matching row ids every time."""
        if self._db.in_transaction:  # pending writes: not cached, and no version to vouch for them
            return self._filter_rids(namespace, where), 1 << 62
        key = (namespace, json.dumps(where, sort_keys=True, default=str))
        with self._read_txn():
            version = self._ns_version(namespace)
            hit = self._filters.get(key)
            if hit is not None and hit[0] == version:
                return hit[1], version
            found = self._filter_rids(namespace, where)
        if len(self._filters) >= 256:
            self._filters.pop(next(iter(self._filters)))
        self._filters[key] = (version, found)
        return found, version

    def _rows(self, rids: list[int], columns: str) -> list[tuple]:
        return list(self._db.select_in(f"SELECT {columns} FROM items WHERE rid IN ({{marks}})", rids))

    def _hydrate(self, namespace: str, pairs: list[tuple[float, int]]) -> list[Hit]:
        rows = {r[0]: r for r in self._rows([r for _, r in pairs], "rid, namespace, ext_id, text, metadata")}
        return [Hit(rows[r][2], s_, rows[r][3], json.loads(rows[r][4]), namespace)
                for s_, r in pairs if r in rows and rows[r][1] == namespace]

    def _exact(self, namespace: str, q: np.ndarray, k: int, rids: set[int]) -> list[Hit]:
        rows = [r for r in self._rows(sorted(rids), "rid, namespace, ext_id, text, metadata, vector")
                if r[1] == namespace]
        if not rows:
            return []
        mat = np.stack([np.frombuffer(r[5], np.float32) for r in rows])
        scores = mat @ q
        top = np.argsort(-scores, kind="stable")[:k]
        return [Hit(rows[i][2], float(scores[i]), rows[i][3], json.loads(rows[i][4]), namespace) for i in top]


class _single_thread_faiss:
    """One query is faster on one OpenMP thread than split over several (measured: 6 ms vs 39 ms on
    2 cores for 100k x 384 flat); restores the previous thread count afterwards."""

    def __enter__(self) -> None:
        import faiss

        self._faiss = faiss
        self._prev = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)

    def __exit__(self, *exc) -> None:
        self._faiss.omp_set_num_threads(self._prev)


def _not_a_string(value: Any, field: str) -> None:
    """``add("u", "abc", ...)`` would otherwise become the ids a, b, c."""
    if isinstance(value, str):
        raise StoreError(f"{field}: expected a list of {field}, got a string")


def _check_text(text: str, field: str) -> None:
    """Text every backend can store: UTF-8 encodable (no lone surrogate) and without NUL characters
    (PostgreSQL's text type cannot hold them)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise StoreError(f"{field}: not encodable as UTF-8 at character {e.start} (a lone surrogate?)") from None
    if "\x00" in text:
        raise StoreError(f"{field}: contains a NUL character at {text.index(chr(0))}")


def write_snapshot(path: Path, header: dict[str, Any], data: bytes) -> None:
    """magic + 8-byte header length + JSON header (with the sha256 of ``data``) + ``data``, in one atomic file."""
    head = json.dumps({**header, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}).encode()
    with atomic_open(path, "wb") as f:
        f.write(SNAPSHOT_MAGIC + struct.pack("<Q", len(head)) + head)
        f.write(data)


_HEADER_TYPES = {"store_id": str, "namespace": str, "seq": int, "kind": str, "dim": int, "tombstones": list,
                 "sha256": str, "size": int}


def read_snapshot(path: Path, header_only: bool = False):
    """(header, index bytes), or the header alone; None for a missing, torn, corrupt or malformed file."""
    try:
        with open(path, "rb") as f:
            if f.read(len(SNAPSHOT_MAGIC)) != SNAPSHOT_MAGIC:
                return None
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 1 << 30:
                return None
            header = json.loads(f.read(n))
            if not isinstance(header, dict) or any(type(header.get(k)) is not t for k, t in _HEADER_TYPES.items()):
                return None
            if not all(type(x) is int for x in header["tombstones"]):
                return None
            if header_only:
                return header
            data = f.read(header["size"] + 1)
    except (OSError, ValueError, struct.error):
        return None
    if len(data) != header["size"] or hashlib.sha256(data).hexdigest() != header["sha256"]:
        return None
    return header, data
