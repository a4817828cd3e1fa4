"""Stores behind one protocol (``Store``): the embedded FAISS + SQLite store (``VectorStore``, the default) and
the shared PostgreSQL store (``PostgresStore``, FAISS replicas per process); ``open_store`` picks one from a
location (a folder, or a ``postgresql://`` URL with an optional ``schema`` parameter)."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from llmrec.store.base import Hit, LoggedStore, Record, Store, StoreConfig
from llmrec.store.index import AnnIndex, IndexConfig
from llmrec.store.postgres import PostgresStore  # psycopg itself is imported only when one is opened
from llmrec.store.vector_store import StoreError, VectorStore

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def split_schema(url: str, default: str = "llmrec") -> tuple[str, str]:
    """A ``postgresql://...?schema=NAME`` URL -> (the URL without ``schema``, NAME or ``default``)."""
    base, _, query = url.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    schema = next((v for k, v in pairs if k == "schema"), default)
    rest = urlencode([(k, v) for k, v in pairs if k != "schema"], safe="/")
    return (f"{base}?{rest}" if rest else base), schema


def open_store(location: str | Path, config: StoreConfig | None = None,
               snapshot_dir: str | Path | None = None) -> LoggedStore:
    """The store at ``location``: a ``postgresql://`` URL opens the shared PostgreSQL store (its ``schema``
    parameter names the store, default ``llmrec``; ``snapshot_dir`` keeps this process's FAISS snapshots),
    anything else is the folder of an embedded store."""
    if isinstance(location, str) and location.startswith(POSTGRES_SCHEMES):
        dsn, schema = split_schema(location)
        return PostgresStore(dsn, schema, config, snapshot_dir)
    return VectorStore(location, config)


__all__ = ["AnnIndex", "IndexConfig", "Hit", "LoggedStore", "PostgresStore", "Record", "Store", "StoreConfig", "StoreError",
           "VectorStore", "open_store", "split_schema"]
