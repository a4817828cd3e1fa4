"""Id encoding at industrial scale: vectorized (no per-row Python), fitted by one streaming counting pass
over a shard set, and a streamed training data source built on it.

``IdEncoder`` maps raw int64 ids to rows of the one shared categorical table, per field:

- ``vocab``: ids seen at least ``min_count`` times in the fitting shards get their own row (a sorted id
  array + ``searchsorted``: 8 bytes per kept id); rare and unseen ids share ``oov_rows`` hashed rows.
- ``hash``: every id hashed into the field's buckets; the fields share ``table_rows`` in proportion to
  their distinct ids in the fitting shards, so a 10M-row table is a 10M-row table whatever the sample
  (a field may get more rows than it has distinct ids). Unseen ids need nothing special.
- ``identity``: ids are already rows in ``[0, size)`` (pre-hashed data); one outside is a ``DataError``
  naming the field and the id.

Numerical fields: ``log1p`` (signed: ``sign(x) log(1+|x|)``, the usual transform of Criteo's counts) or
``none``, standardized with the fitting shards' mean / std; NaN becomes 0 and is counted per field
(``nan_counts``), and gets its own bucket for bucketized numerical embeddings (equal-frequency edges from
the first ``bucket_sample`` values).

The encoder duck-types what CTR models read of a ``FeatureEncoder`` (``categorical``, ``numerical``,
``n_categorical_rows``, ``offsets``, ``cardinalities``), so every registered CTR model trains on streamed
data unchanged."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterator, Literal

import numpy as np
import torch
from pydantic import Field
from tqdm.auto import tqdm

from llmrec.config import StrictConfig
from llmrec.ctr.features import Batch, FeatureSpec
from llmrec.data.criteo import mix64
from llmrec.data.shards import Shard, ShardSet
from llmrec.errors import ConfigError, DataError


class IdEncoderConfig(StrictConfig):
    """How raw ids become table rows and numbers become inputs (see the module docstring)."""
    mode: Literal["vocab", "hash", "identity"] = "vocab"
    min_count: int = Field(2, ge=1)  # vocab: rarer ids go to the OOV rows
    oov_rows: int = Field(1, ge=1)  # vocab: hashed rows shared by rare / unseen ids, per field
    table_rows: int | None = Field(None, ge=1)  # hash: rows of the whole table (None: one per distinct id)
    sizes: dict[str, int] = {}  # identity: rows per field
    numeric_transform: Literal["log1p", "none"] = "log1p"
    buckets: int = Field(20, ge=2)
    bucket_sample: int = Field(1_000_000, ge=100)
    batch_rows: int = Field(262_144, ge=1)  # rows decoded at a time while fitting
    # fit on the first N rows only (None: all): bounds the counting pass's memory on data larger than RAM
    # (hash mode then shares the table by the distinct ids of that sample)
    fit_rows: int | None = Field(None, ge=1)


def _signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


class IdEncoder:
    """Raw ids -> rows of one shared table, numbers -> standardized inputs (module docstring)."""

    def __init__(self, config: IdEncoderConfig, categorical: list[str], numerical: list[str], label: str = "label"
                 ) -> None:
        self.config = config
        self.label = label
        self.categorical = [FeatureSpec(name=c, type="categorical") for c in categorical]
        self.numerical = [FeatureSpec(name=c, type="numerical", buckets=config.buckets) for c in numerical]
        self.multi_hot: list[FeatureSpec] = []
        self.dense: list[FeatureSpec] = []
        self.kept: dict[str, np.ndarray] = {}  # vocab: sorted kept ids per field
        # vocab, after ``extend``: ids given rows later (sorted) and their rows, appended after every field
        self.added: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.extra_rows = 0
        self.rows: dict[str, int] = {}  # table rows per field
        self.distinct: dict[str, int] = {}
        self.stats: dict[str, tuple[float, float]] = {}
        self.edges: dict[str, np.ndarray] = {}
        self.nan_counts: dict[str, int] = {}
        self.fitted = False

    # --- what models read ----------------------------------------------------------------------------
    def n_categorical_rows(self) -> int:
        """Rows of the shared categorical table (rows added by ``extend`` included)."""
        return sum(self.rows.values()) + self.extra_rows

    def offsets(self) -> dict[str, int]:
        """First row of each field in the shared table."""
        out, total = {}, 0
        for s in self.categorical:
            out[s.name] = total
            total += self.rows[s.name]
        return out

    def cardinalities(self) -> dict[str, int]:
        """Table rows per categorical field."""
        return dict(self.rows)

    # --- fitting ---------------------------------------------------------------------------------------
    def fit(self, shards: ShardSet, progress: bool = True) -> "IdEncoder":
        """One pass over ``shards``: id counts per field, numerical moments, bucket edges; returns self."""
        c = self.config
        cat = [s.name for s in self.categorical]
        num = [s.name for s in self.numerical]
        uniq: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {f: [] for f in cat}
        sums = {f: np.zeros(3) for f in num}  # n, sum, sum of squares of the finite transformed values
        sample: dict[str, list[np.ndarray]] = {f: [] for f in num}
        sampled, seen = 0, 0
        for shard in tqdm(shards.shards, desc="fit id encoder", disable=not progress):
            if c.fit_rows is not None and seen >= c.fit_rows:
                break
            for cols in shards.read(shard, [*cat, *num], c.batch_rows):
                if c.fit_rows is not None:
                    if seen >= c.fit_rows:
                        break
                    cols = {k: v[: c.fit_rows - seen] for k, v in cols.items()}
                seen += len(next(iter(cols.values()))) if cols else 0
                if c.mode != "identity":
                    for f in cat:
                        u, k = np.unique(cols[f], return_counts=True)
                        uniq[f].append((u, k))
                        if len(uniq[f]) >= 16:  # merge, keeping memory ~ distinct ids
                            uniq[f] = [_merge_counts(uniq[f])]
                for f in num:
                    x = self._transform(cols[f])
                    ok = x[np.isfinite(x)]
                    sums[f] += (len(ok), ok.sum(), np.square(ok).sum())
                    if sampled < c.bucket_sample:
                        sample[f].append(ok[: c.bucket_sample - sampled])
                sampled += len(next(iter(cols.values()))) if num else 0
        for f in cat:
            if c.mode == "identity":
                if f not in c.sizes:
                    raise ConfigError(f"encoder.sizes: identity mode needs the rows of field {f!r}")
                self.rows[f] = c.sizes[f]
                continue
            ids, counts = _merge_counts(uniq[f]) if uniq[f] else (np.zeros(0, np.int64), np.zeros(0, np.int64))
            self.distinct[f] = len(ids)
            if c.mode == "vocab":
                self.kept[f] = ids[counts >= c.min_count]
                self.rows[f] = c.oov_rows + len(self.kept[f])
        if c.mode == "hash":
            total = sum(self.distinct.values())
            budget = c.table_rows or total
            for f in cat:
                self.rows[f] = int(max(1, round(budget * self.distinct[f] / max(1, total))))
            if cat and sum(self.rows.values()) != budget:  # rounding: the largest field takes the difference
                top = max(cat, key=lambda f: self.rows[f])
                self.rows[top] = max(1, self.rows[top] + budget - sum(self.rows.values()))
        for f in num:
            n, s1, s2 = sums[f]
            mean = s1 / n if n else 0.0
            std = float(np.sqrt(max(0.0, s2 / n - mean * mean))) if n else 1.0
            self.stats[f] = (float(mean), std if std > 1e-12 else 1.0)
            vals = np.concatenate(sample[f]) if sample[f] else np.zeros(0)
            qs = np.quantile(vals, np.linspace(0, 1, c.buckets + 1)[1:-1]) if len(vals) else []
            self.edges[f] = np.unique(np.asarray(qs, np.float64))
            self.nan_counts[f] = 0
        self.fitted = True
        return self

    def _transform(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        return _signed_log(x) if self.config.numeric_transform == "log1p" else x

    # --- encoding --------------------------------------------------------------------------------------
    def encode_ids(self, field: str, ids: np.ndarray) -> np.ndarray:
        """Rows of ``field``'s ids within the field (before its offset)."""
        c = self.config
        ids = ids.astype(np.int64, copy=False)
        if c.mode == "identity":
            bad = (ids < 0) | (ids >= self.rows[field])
            if bad.any():
                raise DataError(f"{field}: id {int(ids[np.argmax(bad)])} outside the table's range "
                                f"[0, {self.rows[field]})")
            return ids
        if c.mode == "hash":
            return (mix64(ids.view(np.uint64) ^ np.uint64(_field_salt(field))) % np.uint64(self.rows[field])
                    ).astype(np.int64)
        kept = self.kept[field]
        pos = np.searchsorted(kept, ids)
        pos_c = np.minimum(pos, max(0, len(kept) - 1))
        hit = (kept[pos_c] == ids) if len(kept) else np.zeros(len(ids), bool)
        oov = (mix64(ids.view(np.uint64)) % np.uint64(c.oov_rows)).astype(np.int64)
        return np.where(hit, c.oov_rows + pos_c, oov)

    def table_rows(self, field: str, ids: np.ndarray) -> np.ndarray:
        """Rows of ``field``'s ids in the shared table (offset included; rows added by ``extend`` win)."""
        rows = self.encode_ids(field, ids) + self.offsets()[field]
        if field in self.added:
            new_ids, new_rows = self.added[field]
            pos = np.minimum(np.searchsorted(new_ids, ids), len(new_ids) - 1)
            hit = new_ids[pos] == ids
            rows = np.where(hit, new_rows[pos], rows)
        return rows

    def extend(self, shards: ShardSet, min_count: int | None = None, progress: bool = False) -> np.ndarray:
        """IncCTR's feature module (vocab mode): ids of ``shards`` seen at least ``min_count`` times (default:
        the encoder's) that have no row yet get new rows after every existing row; old ids keep theirs.
        Returns, for each new row in order, the row its id used before (its OOV row), so a model can start
        the new row from what it knew about the id."""
        if self.config.mode != "vocab":
            raise ConfigError(f"encoder.mode: extend needs 'vocab', not {self.config.mode!r}")
        need = min_count or self.config.min_count
        cat = [s.name for s in self.categorical]
        counts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {f: [] for f in cat}
        for shard in tqdm(shards.shards, desc="extend id encoder", disable=not progress):
            for cols in shards.read(shard, cat, self.config.batch_rows):
                for f in cat:
                    counts[f].append(np.unique(cols[f], return_counts=True))
        previous = []
        for f in cat:
            if not counts[f]:
                continue
            ids, k = _merge_counts(counts[f])
            cand = ids[k >= need]
            known = self.table_rows(f, cand) >= self.offsets()[f] + self.config.oov_rows
            new = cand[~known]
            if not len(new):
                continue
            previous.append(self.table_rows(f, new))
            start = self.n_categorical_rows()
            rows = np.arange(start, start + len(new), dtype=np.int64)
            old_ids, old_rows = self.added.get(f, (np.zeros(0, np.int64), np.zeros(0, np.int64)))
            merged = np.concatenate([old_ids, new])
            order = np.argsort(merged, kind="stable")
            self.added[f] = (merged[order], np.concatenate([old_rows, rows])[order])
            self.extra_rows += len(new)
        return np.concatenate(previous) if previous else np.zeros(0, np.int64)

    def transform(self, cols: dict[str, np.ndarray], with_label: bool = True) -> Batch:
        """A ``Batch`` of encoded rows; a missing column is a ``DataError`` naming it; NaN numbers become 0
        (counted in ``nan_counts``); a NaN or non-0/1 label is a ``DataError``."""
        if not self.fitted:
            raise ConfigError("IdEncoder.transform called before fit")
        need = [s.name for s in self.categorical + self.numerical] + ([self.label] if with_label else [])
        missing = [f for f in need if f not in cols]
        if missing:
            raise DataError(f"{missing[0]}: column missing from the batch")
        n = len(cols[need[0]]) if need else 0
        cat = np.empty((n, len(self.categorical)), np.int64)
        for j, s in enumerate(self.categorical):
            cat[:, j] = self.table_rows(s.name, cols[s.name])
        num = np.zeros((n, len(self.numerical)), np.float32)
        bucket = np.zeros((n, len(self.numerical)), np.int64)
        for j, s in enumerate(self.numerical):
            x = self._transform(cols[s.name])
            nan = ~np.isfinite(x)
            self.nan_counts[s.name] = self.nan_counts.get(s.name, 0) + int(nan.sum())
            mean, std = self.stats[s.name]
            num[:, j] = np.where(nan, 0.0, (x - mean) / std)
            bucket[:, j] = np.where(nan, s.buckets, np.searchsorted(self.edges[s.name], x, side="right"))
        label = None
        if with_label:
            y = cols[self.label].astype(np.float32)
            bad = ~((y == 0) | (y == 1))
            if bad.any():
                raise DataError(f"{self.label}: value {y[np.argmax(bad)]} at row {int(np.argmax(bad))} is not 0/1")
            label = torch.from_numpy(y)
        return Batch(cat=torch.from_numpy(cat), num=torch.from_numpy(num), num_bucket=torch.from_numpy(bucket),
                     seq={}, dense={}, label=label)

    def memory_bytes(self) -> int:
        """Bytes the encoder itself holds (kept-id arrays)."""
        return sum(a.nbytes for a in self.kept.values())

    def to_json(self) -> str:
        """Settings, row counts and statistics (kept ids are saved apart: ``kept_arrays``)."""
        return json.dumps({"config": self.config.model_dump(), "label": self.label,
                           "categorical": [s.name for s in self.categorical],
                           "numerical": [s.name for s in self.numerical], "rows": self.rows,
                           "distinct": self.distinct, "stats": self.stats,
                           "edges": {k: v.tolist() for k, v in self.edges.items()}})

    @classmethod
    def from_json(cls, text: str, kept: dict[str, np.ndarray] | None = None) -> "IdEncoder":
        """An encoder from ``to_json`` output (and the kept ids, for vocab mode)."""
        d = json.loads(text)
        enc = cls(IdEncoderConfig(**d["config"]), d["categorical"], d["numerical"], d["label"])
        enc.rows, enc.distinct = d["rows"], d["distinct"]
        enc.stats = {k: tuple(v) for k, v in d["stats"].items()}
        enc.edges = {k: np.asarray(v) for k, v in d["edges"].items()}
        enc.kept = kept or {}
        if enc.config.mode == "vocab" and set(enc.kept) != set(d["categorical"]):
            raise DataError("kept: vocab mode needs the kept ids of every field")
        enc.fitted = True
        return enc


def _field_salt(field: str) -> int:
    return int.from_bytes(field.encode()[:8].ljust(8, b"\0"), "little") ^ 0x5DEECE66D


def _merge_counts(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.concatenate([p[0] for p in parts])
    counts = np.concatenate([p[1] for p in parts])
    u, inv = np.unique(ids, return_inverse=True)
    return u, np.bincount(inv, weights=counts, minlength=len(u)).astype(np.int64)


@dataclass
class StreamData:
    """Training data streamed from a shard set: ``batches`` yields encoded mini-batches shard by shard,
    holding one decoded chunk (``chunk_rows``) at a time, shuffled within the chunk (``shuffle``). The
    trainer records the shards it has finished and resumes after the last one."""
    shards: ShardSet
    encoder: IdEncoder
    chunk_rows: int = 262_144
    shuffle: bool = True
    label: bool = True  # the trainer checks training data has labels

    def __len__(self) -> int:
        return self.shards.rows

    @property
    def n_shards(self) -> int:
        """Number of shards (the trainer's resume unit)."""
        return len(self.shards.shards)

    def shard_batches(self, index: int, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        """Mini-batches of shard ``index`` (the last one of a chunk may be smaller)."""
        shard: Shard = self.shards.shards[index]
        for cols in self.shards.read(shard, None, self.chunk_rows):
            b = self.encoder.transform(cols)
            n = len(b)
            order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
            for i in range(0, n, batch_size):
                yield b.slice(order[i: i + batch_size])

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """Every row in file order, ``batch_size`` at a time (evaluation)."""
        for shard in self.shards.shards:
            for cols in self.shards.read(shard, None, self.chunk_rows):
                b = self.encoder.transform(cols)
                for i in range(0, len(b), batch_size):
                    yield b.slice(torch.arange(i, min(len(b), i + batch_size)))
