"""The shared store: PostgreSQL holds the truth (items, metadata index, change log, events), and every process
that opens it serves searches from its own FAISS replicas that catch up from the change log by sequence
number (``llmrec.store.base.LoggedStore``).

    store = PostgresStore("host=/run/postgresql dbname=llmrec", schema="memories")

Consistency: writes are serialized by a transaction-scoped advisory lock (one per schema), so the log's
sequence order is the commit order, and a replica that has seen sequence n has seen every write before it.
Every read and write first replays what other processes committed (one indexed query when nothing changed):
a search that starts after a write was acknowledged — by this process or any other — sees it
(read-your-writes per user, and read-after-write across nodes). A write is acknowledged when its COMMIT
returns; a connection lost before that is an error and the write may not have happened (it is never half
applied). A lost connection (a restarted server) is reopened on the next call, and the replicas resync from
the log (or reload if the log they need was compacted).

Layout: one PostgreSQL schema per store (tables ``meta``, ``namespaces``, ``items``, ``meta_kv``, ``ops``,
``ns_seq``, ``events``, ``log_head``; memory/README.md). ``snapshot_dir`` (optional, per process or shared by
processes on one machine) keeps checksummed FAISS snapshots so a restart skips rebuilding."""
from __future__ import annotations

import re
import uuid
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from llmrec.errors import StoreError
from llmrec.store.base import LoggedStore, StoreConfig

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _schema_sql(schema: str) -> str:
    return f"""
    CREATE SCHEMA IF NOT EXISTS {schema};
    SET search_path TO {schema};
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS namespaces (name TEXT PRIMARY KEY);
    CREATE TABLE IF NOT EXISTS items (
        rid BIGSERIAL PRIMARY KEY,
        namespace TEXT NOT NULL,
        ext_id TEXT NOT NULL,
        text TEXT NOT NULL,
        metadata TEXT NOT NULL,
        vector BYTEA NOT NULL,
        UNIQUE (namespace, ext_id)
    );
    CREATE INDEX IF NOT EXISTS items_ns ON items (namespace, rid);
    CREATE TABLE IF NOT EXISTS meta_kv (namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                                        rid BIGINT NOT NULL);
    CREATE INDEX IF NOT EXISTS meta_kv_lookup ON meta_kv (namespace, key, value);
    CREATE INDEX IF NOT EXISTS meta_kv_rid ON meta_kv (rid);
    CREATE TABLE IF NOT EXISTS ops (seq BIGSERIAL PRIMARY KEY, namespace TEXT NOT NULL, rid BIGINT NOT NULL,
                                    op TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS ns_seq (name TEXT PRIMARY KEY, seq BIGINT NOT NULL);
    CREATE TABLE IF NOT EXISTS events (seq BIGSERIAL PRIMARY KEY, namespace TEXT NOT NULL, item_id TEXT NOT NULL,
                                       event TEXT NOT NULL, payload TEXT NOT NULL, at DOUBLE PRECISION NOT NULL);
    CREATE INDEX IF NOT EXISTS events_item ON events (namespace, item_id);
    CREATE TABLE IF NOT EXISTS log_head (one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), seq BIGINT NOT NULL);
    INSERT INTO log_head VALUES (TRUE, 0) ON CONFLICT DO NOTHING;
    """


class PostgresDB:
    """``LoggedStore``'s database in one PostgreSQL schema (psycopg 3, autocommit with explicit
    transactions). Writes take ``pg_advisory_xact_lock`` on the schema's key; ``log_head`` holds the last
    committed sequence (it outlives log compaction); reads that must agree run in REPEATABLE READ."""

    def __init__(self, dsn: str, schema: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise StoreError("postgres: psycopg is not installed (pip install 'llmrec[postgres]')") from None
        if not _SCHEMA_NAME.match(schema):
            raise StoreError(f"schema: {schema!r} must be a lower-case identifier (letters, digits, _)")
        self._psycopg, self.dsn, self.schema = psycopg, dsn, schema
        self._key = zlib.crc32(f"llmrec:{schema}".encode()) - 2**31  # the advisory lock's key (int4)
        self._sql: dict[str, str] = {}
        self.in_transaction, self._writing = False, False
        self._conn = self._connect()
        with self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._key,))  # one creator at a time
            self._conn.execute(_schema_sql(schema))
            self._conn.execute("INSERT INTO meta VALUES ('store_id', %s) ON CONFLICT DO NOTHING", (uuid.uuid4().hex,))

    def _connect(self):
        try:
            conn = self._psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
        except self._psycopg.OperationalError as e:
            raise StoreError(f"postgres: cannot connect ({str(e).strip().splitlines()[0]})") from None
        conn.execute(f"SET search_path TO {self.schema}")
        return conn

    def _q(self, sql: str) -> str:
        out = self._sql.get(sql)
        if out is None:
            out = self._sql[sql] = sql.replace("%", "%%").replace("?", "%s")
        return out

    def _alive(self) -> None:
        """Reopen a connection the server dropped (restart, idle kill) between transactions."""
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()

    def _run(self, fn):
        """``fn()``, translating connection loss into a ``StoreError`` (outside a transaction, one retry on a
        fresh connection: a read or a begin is safe to repeat)."""
        try:
            self._alive()
            return fn()
        except self._psycopg.OperationalError as e:
            if self.in_transaction:
                raise StoreError(f"postgres: connection lost in a transaction, nothing was written "
                                 f"({str(e).strip().splitlines()[0]})") from None
            self._conn = self._connect()
            return fn()

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """See ``DB``."""
        return self._run(lambda: self._conn.execute(self._q(sql), list(args)))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """See ``DB``."""
        q = self._q(sql)

        def run():
            with self._conn.cursor() as cur:
                cur.executemany(q, [list(r) for r in rows])
        self._run(run)

    def select_in(self, sql: str, values: Sequence[Any], prefix: Sequence[Any] = ()) -> Iterator[tuple]:
        """See ``DB``."""
        values = list(values)
        if not values:
            return iter(())
        q = self._q(sql.replace("IN ({marks})", "= ANY(?)"))
        return iter(self._run(lambda: self._conn.execute(q, [*prefix, values]).fetchall()))

    def begin_read(self) -> None:
        """See ``DB``."""
        self._run(lambda: self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        self.in_transaction = True

    def begin_write(self) -> None:
        """See ``DB``."""
        def run():
            self._conn.execute("BEGIN")
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._key,))
        self._run(run)
        self.in_transaction, self._writing = True, True

    def commit(self) -> None:
        """See ``DB``."""
        try:
            if self._writing:  # the head the readers see moves in the same commit as the ops
                self._conn.execute("UPDATE log_head SET seq = GREATEST(seq, COALESCE((SELECT MAX(seq) FROM ops), 0))")
            self._conn.execute("COMMIT")
        except self._psycopg.OperationalError as e:
            raise StoreError(f"postgres: connection lost at commit; the write may not have been applied "
                             f"({str(e).strip().splitlines()[0]})") from None
        finally:
            self.in_transaction, self._writing = False, False

    def rollback(self) -> None:
        """See ``DB``."""
        self.in_transaction, self._writing = False, False
        try:
            if not (self._conn.closed or self._conn.broken):
                self._conn.execute("ROLLBACK")
        except self._psycopg.OperationalError:
            pass  # the server dropped the connection: the transaction is gone with it

    def max_seq(self) -> int:
        """The last committed sequence; inside a write, this transaction's own last op too."""
        row = self.execute("SELECT GREATEST((SELECT seq FROM log_head), COALESCE((SELECT MAX(seq) FROM ops), 0))"
                           ).fetchone()
        return int(row[0])

    def insert_items(self, rows: list[tuple[str, str, str, str, bytes]]) -> list[int]:
        """See ``DB``."""
        q = "INSERT INTO items (namespace, ext_id, text, metadata, vector) VALUES (%s,%s,%s,%s,%s) RETURNING rid"

        def run():
            with self._conn.cursor() as cur:
                cur.executemany(q, [list(r) for r in rows], returning=True)
                out = []
                while True:
                    out.append(int(cur.fetchone()[0]))
                    if not cur.nextset():
                        return out
        return self._run(run)

    def numeric_value_sql(self) -> str:
        """``meta_kv.value`` as a number, NULL unless it is one (a JSON number)."""
        # written without '?' (the placeholder this class rewrites): {0,1}
        return ("(CASE WHEN value ~ '^-{0,1}[0-9]+([.][0-9]+){0,1}([eE][-+]{0,1}[0-9]+){0,1}$' "
                "THEN value::double precision END)")

    @contextmanager
    def flush_lock(self) -> Iterator[None]:
        """See ``DB``."""
        yield  # snapshots are written atomically per file; compaction runs in a write transaction

    def close(self) -> None:
        """See ``DB``."""
        self._conn.close()


class PostgresStore(LoggedStore):
    """The ``Store`` protocol over PostgreSQL (module docstring): many processes, on one machine or many,
    share it; each keeps FAISS replicas of the namespaces it reads."""

    def __init__(self, dsn: str, schema: str = "llmrec", config: StoreConfig | None = None,
                 snapshot_dir: str | Path | None = None) -> None:
        self.dsn, self.schema = dsn, schema
        super().__init__(PostgresDB(dsn, schema), config, Path(snapshot_dir) if snapshot_dir else None,
                         f"postgres schema {schema}")

    def drop(self) -> None:
        """Delete the store: its schema and everything in it (tests, ``llmrec memory`` admin)."""
        with self._lock:
            self._db.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
            self._indexes, self._seq = {}, 0
