"""Impression data too large for memory: a folder of parquet shards plus a ``manifest.json``, read back as a
stream of column batches with bounded memory.

Layout (what ``llmrec data generate criteo`` and ``llmrec data convert`` write)::

    <root>/manifest.json             schema, shards in time order, generator / converter settings
    <root>/day=000/part-00000.parquet

``manifest.json``: ``{"format": "llmrec-shards/1", "label": "label", "categorical": ["C1", ...],
"numerical": ["I1", ...], "shards": [{"path": "day=000/part-00000.parquet", "day": 0, "rows": N}, ...],
"source": {...}}``. Categorical columns hold int64 ids (raw ids: hashed strings for the real formats),
numerical columns float32 with NaN for a missing value, the label 0/1.

Every shard is written to a temporary name and renamed, and the manifest is written last (atomically), so
a killed writer leaves either a complete shard or none; the writers skip shards that are already complete
and resume. Reading checks each shard against the manifest's schema: a missing column or an unreadable
(corrupt / truncated) file is a ``DataError`` naming the file and the column."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from llmrec.data.schema import RecData
from llmrec.errors import DataError, NotFoundError
from llmrec.io import write_text_atomic

FORMAT = "llmrec-shards/1"


@dataclass
class Shard:
    """One parquet file of the set: its path (relative to the root), day and row count."""
    path: str
    day: int
    rows: int


@dataclass
class ShardSet:
    """A manifest and the shards it lists (``open_shards``); ``select`` keeps some days."""
    root: Path
    label: str
    categorical: list[str]
    numerical: list[str]
    shards: list[Shard]
    source: dict = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """Every column a shard must have: label, categorical, numerical."""
        return [self.label, *self.categorical, *self.numerical]

    @property
    def rows(self) -> int:
        """Total rows of the listed shards."""
        return sum(s.rows for s in self.shards)

    @property
    def days(self) -> list[int]:
        """The days present, in order."""
        return sorted({s.day for s in self.shards})

    def select(self, days: list[int] | range | None = None) -> "ShardSet":
        """The same set restricted to ``days`` (None: all); a day with no shard is an error naming it."""
        if days is None:
            return self
        have = set(self.days)
        missing = [d for d in days if d not in have]
        if missing:
            raise NotFoundError(f"days: {missing} not in {self.root} (it has days {self.days})")
        keep = set(days)
        return ShardSet(self.root, self.label, self.categorical, self.numerical,
                        [s for s in self.shards if s.day in keep], self.source)

    def to_json(self) -> dict:
        """The manifest as a JSON-able dict."""
        return {"format": FORMAT, "label": self.label, "categorical": self.categorical, "numerical": self.numerical,
                "shards": [s.__dict__ for s in self.shards], "source": self.source}

    def write_manifest(self) -> Path:
        """Write ``manifest.json`` atomically; returns its path."""
        path = self.root / "manifest.json"
        write_text_atomic(path, json.dumps(self.to_json(), indent=1))
        return path

    def read(self, shard: Shard, columns: list[str] | None = None, batch_rows: int = 65536
             ) -> Iterator[dict[str, np.ndarray]]:
        """Column batches (``name -> array``) of one shard, at most ``batch_rows`` rows each; only that many
        rows are decoded at a time."""
        path = self.root / shard.path
        cols = columns or self.columns
        try:
            f = pq.ParquetFile(path)
        except FileNotFoundError:
            raise NotFoundError(f"{path}: shard listed in the manifest is missing") from None
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"{path}: not a readable parquet file ({e})") from None
        names = set(f.schema_arrow.names)
        missing = [c for c in cols if c not in names]
        if missing:
            raise DataError(f"{path}: column {missing[0]!r} missing (shard has {sorted(names)})")
        try:
            for rb in f.iter_batches(batch_size=batch_rows, columns=cols):
                yield {c: rb.column(c).to_numpy(zero_copy_only=False) for c in cols}
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"{path}: corrupt parquet data ({e})") from None

    def read_all(self, columns: list[str] | None = None) -> dict[str, np.ndarray]:
        """Every listed shard in memory, concatenated (for validation / test days that fit)."""
        parts: dict[str, list[np.ndarray]] = {c: [] for c in (columns or self.columns)}
        for s in self.shards:
            for b in self.read(s, columns):
                for c, v in b.items():
                    parts[c].append(v)
        return {c: np.concatenate(v) if v else np.zeros(0) for c, v in parts.items()}


def open_shards(root: str | Path) -> ShardSet:
    """The shard set at ``root`` (its ``manifest.json``); errors name what is wrong."""
    root = Path(root)
    path = root / "manifest.json"
    if not path.exists():
        raise NotFoundError(f"{path}: no shard manifest (write one with `llmrec data generate criteo` or "
                            f"`llmrec data convert`)")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not JSON ({e})") from None
    if d.get("format") != FORMAT:
        raise DataError(f"{path}: format {d.get('format')!r}, expected {FORMAT!r}")
    for key in ("label", "categorical", "numerical", "shards"):
        if key not in d:
            raise DataError(f"{path}: field {key!r} missing")
    return ShardSet(root, d["label"], list(d["categorical"]), list(d["numerical"]),
                    [Shard(**s) for s in d["shards"]], d.get("source", {}))


def shard_schema(label: str, categorical: list[str], numerical: list[str]) -> pa.Schema:
    """The arrow schema of a shard: int8 label, int64 ids, float32 numbers."""
    return pa.schema([(label, pa.int8()), *[(c, pa.int64()) for c in categorical],
                      *[(c, pa.float32()) for c in numerical]])


def write_shard(path: Path, columns: dict[str, np.ndarray], schema: pa.Schema) -> int:
    """Write one shard atomically (temporary file, then rename); returns its row count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({f.name: pa.array(columns[f.name], type=f.type) for f in schema}, schema=schema)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
    return table.num_rows


def complete_rows(path: Path) -> int | None:
    """Rows of an already complete shard (its footer reads), else None (absent or half-written)."""
    if not path.exists():
        return None
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowException, OSError):
        return None


def hash_strings(values: pa.Array, hex_ids: bool) -> np.ndarray:
    """int64 ids of a string column: hex digits parsed (Criteo) or a 56-bit BLAKE2b hash (Avazu, any
    string); empty or null -> -1. Each distinct value of the batch is converted once."""
    enc = values.dictionary_encode()
    uniq = enc.dictionary.to_pylist()
    table = np.empty(len(uniq) + 1, np.int64)
    for i, s in enumerate(uniq):
        if not s:
            table[i] = -1
        elif hex_ids:
            try:
                table[i] = int(s, 16)
            except ValueError:
                raise DataError(f"categorical value {s!r} is not a hex id") from None
        else:
            table[i] = int.from_bytes(hashlib.blake2b(s.encode(), digest_size=7).digest(), "little")
    table[-1] = -1
    idx = enc.indices.to_numpy(zero_copy_only=False)
    if enc.indices.null_count:
        idx = np.where(np.asarray(enc.indices.is_null()), len(uniq), idx)
    return table[idx.astype(np.int64)]


def hashed_columns(columns: Mapping[str, np.ndarray], categorical: list[str], numerical: list[str],
                   label: str | None, label_as: str = "label") -> dict[str, np.ndarray]:
    """Raw columns as a shard holds them: categorical values as int64 BLAKE2b ids of their strings, numbers
    as float32, the label (if given) 0/1 under ``label_as``."""
    out = {f: hash_strings(pa.array(np.asarray(columns[f]).astype(str)), hex_ids=False) for f in categorical}
    out.update({f: np.asarray(columns[f], np.float32) for f in numerical})
    if label is not None:
        out[label_as] = np.asarray(columns[label]).astype(np.int8)
    return out


def write_day_shards(data: RecData, root: str | Path, days: list[np.ndarray], categorical: list[str],
                     numerical: list[str], source: dict | None = None) -> ShardSet:
    """Rows of a ``RecData`` as a shard set, day d holding the rows ``days[d]`` (one shard each), columns as
    ``hashed_columns``. Multi-hot fields have no shard column. Shards already complete are kept (resume)."""
    root = Path(root)
    schema = shard_schema("label", categorical, numerical)
    shards = []
    for day, rows in enumerate(days):
        rel = f"day={day:03d}/part-00000.parquet"
        if complete_rows(root / rel) != len(rows):
            write_shard(root / rel, hashed_columns(data.take(rows), categorical, numerical, data.label), schema)
        shards.append(Shard(rel, day, len(rows)))
    out = ShardSet(root, "label", categorical, numerical, shards, {"recdata": data.name, **(source or {})})
    out.write_manifest()
    return out


def write_recdata_shards(data: RecData, root: str | Path, chunks: int, source: dict | None = None) -> ShardSet:
    """A ``RecData`` (e.g. MovieLens) as a shard set whose days are ``chunks`` equal, time-ordered chunks
    (ties in time broken by row order), one shard per chunk: every categorical and numerical field of the
    data (``write_day_shards``), the label 0/1."""
    if not 1 <= chunks <= len(data):
        raise DataError(f"chunks: must be in [1, {len(data)}] for {data.name}, got {chunks}")
    order = np.argsort(data.columns[data.time], kind="stable")
    cat = [f for f, t in data.fields.items() if t == "categorical"]
    num = [f for f, t in data.fields.items() if t == "numerical"]
    return write_day_shards(data, root, np.array_split(order, chunks), cat, num, {"chunks": chunks, **(source or {})})
