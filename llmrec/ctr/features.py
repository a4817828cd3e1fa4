"""Typed feature specs and encoders fitted on train only, producing vectorized tensor batches.

- categorical: vocabulary with min-count; index 0 is OOV (unseen or rare values)
- numerical: standardized with train mean/std (NaN -> 0), and also an equal-frequency bucket id
  (edges from train quantiles; NaN gets its own bucket) for models that embed numerics by bucket
- multi_hot: token vocabulary (0 = padding, 1 = OOV), padded to the longest train row (capped)
- dense: a vector looked up by a key column (e.g. LLM knowledge of the item), fixed dimension
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Literal, Mapping

import numpy as np
import torch

from llmrec.config import StrictConfig
from llmrec.errors import ConfigError, NotFoundError


class FeatureSpec(StrictConfig):
    """One input feature: its column name and type (categorical, numerical, multi-hot, a behaviour sequence
    or a dense vector)."""
    name: str
    type: Literal["categorical", "numerical", "multi_hot", "behavior", "dense"]
    min_count: int = 1  # categorical / multi_hot: rarer values map to OOV
    max_len: int = 16  # multi_hot: cap on tokens per row; behavior: the most recent max_len are kept (counted)
    # behavior: the categorical feature whose values the sequence holds (its embedding rows are shared)
    target: str | None = None
    buckets: int = 20  # numerical: equal-frequency buckets (for bucketized numerical embeddings)
    key: str | None = None  # dense: the column whose value selects the vector
    dim: int | None = None  # dense: vector dimension


@dataclass
class Batch:
    """Model input: tensors, never per-row Python objects."""

    cat: torch.Tensor  # [N, n_cat] long, already offset into one shared table
    num: torch.Tensor  # [N, n_num] float
    num_bucket: torch.Tensor  # [N, n_num] long, bucket id per numerical field (last bucket = NaN)
    # name -> [N, L] long, 0 = padding: multi-hot token ids; behavior: 1 + row in the shared categorical table
    seq: dict[str, torch.Tensor]
    dense: dict[str, torch.Tensor]  # name -> [N, dim] float
    label: torch.Tensor | None = None  # [N] float
    # multi-label view: [N, T] float labels and [N, T] int8 codes (llmrec.data.multilabel: 0 unknown,
    # 1 reported, 2 attributed)
    labels: torch.Tensor | None = None
    observed: torch.Tensor | None = None

    def __len__(self) -> int:
        for t in (self.cat, self.num, *self.seq.values(), *self.dense.values(), self.label):
            if t is not None and t.ndim and t.shape[0]:
                return int(t.shape[0])
        return 0

    def slice(self, idx: torch.Tensor) -> "Batch":
        """The rows ``idx`` of the batch."""
        return Batch(
            cat=self.cat[idx], num=self.num[idx], num_bucket=self.num_bucket[idx], seq={k: v[idx] for k, v in self.seq.items()},
            dense={k: v[idx] for k, v in self.dense.items()}, label=None if self.label is None else self.label[idx],
            labels=None if self.labels is None else self.labels[idx],
            observed=None if self.observed is None else self.observed[idx],
        )

    def to(self, device: str | torch.device) -> "Batch":
        """The batch on ``device``."""
        return Batch(
            cat=self.cat.to(device), num=self.num.to(device), num_bucket=self.num_bucket.to(device), seq={k: v.to(device) for k, v in self.seq.items()},
            dense={k: v.to(device) for k, v in self.dense.items()},
            label=None if self.label is None else self.label.to(device),
            labels=None if self.labels is None else self.labels.to(device),
            observed=None if self.observed is None else self.observed.to(device),
        )


DenseTables = Mapping[str, Mapping[str, np.ndarray]]  # feature name -> key value -> vector


class FeatureEncoder:
    """Encoders for a list of ``FeatureSpec`` fitted on the training rows (vocabularies, numeric scaling) that
    turn any rows into a ``Batch`` of tensors; unseen values map to the out-of-vocabulary id."""
    def __init__(self, specs: list[FeatureSpec]) -> None:
        names = [s.name for s in specs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"specs: duplicate feature names {sorted(dup)}")
        for s in specs:
            if s.type == "dense" and (not s.key or not s.dim):
                raise ValueError(f"specs.{s.name}: a dense feature needs 'key' and 'dim'")
            if s.type == "behavior" and not any(t.name == s.target and t.type == "categorical" for t in specs):
                raise ValueError(f"specs.{s.name}.target: a behaviour sequence needs the categorical feature "
                                 f"whose values it holds, got {s.target!r}")
        self.specs = specs
        self.vocab: dict[str, dict[str, int]] = {}
        self.stats: dict[str, tuple[float, float]] = {}
        self.edges: dict[str, list[float]] = {}
        self.truncated: dict[str, int] = {}  # behavior: rows whose sequence was longer than max_len (cut)
        self.nan_counts: dict[str, int] = {}  # numerical: NaN / inf values transformed (as missing)
        self.added: dict[str, dict[str, int]] = {}  # categorical values given rows after fitting (``extend``)
        self.fitted = False

    def of_type(self, kind: str) -> list[FeatureSpec]:
        """The specs of one feature type, in order."""
        return [s for s in self.specs if s.type == kind]

    categorical = property(lambda self: self.of_type("categorical"))
    numerical = property(lambda self: self.of_type("numerical"))
    multi_hot = property(lambda self: self.of_type("multi_hot"))
    behavior = property(lambda self: self.of_type("behavior"))
    dense = property(lambda self: self.of_type("dense"))

    @property
    def embedded_fields(self) -> list[str]:
        """Field names in the order ``FieldEmbedding`` stacks them (categorical, numerical, multi-hot, dense);
        behaviour sequences are read by the models that attend over them, not stacked."""
        return [s.name for kind in ("categorical", "numerical", "multi_hot", "dense") for s in self.of_type(kind)]

    def cardinalities(self) -> dict[str, int]:
        """Vocabulary size of each categorical / multi-hot field (out-of-vocabulary id included)."""
        return {s.name: len(self.vocab[s.name]) + (2 if s.type == "multi_hot" else 1)
                for s in self.specs if s.type in ("categorical", "multi_hot")}

    def _column(self, columns: Mapping[str, np.ndarray], name: str) -> np.ndarray:
        if name not in columns:
            raise NotFoundError(f"{name}: feature column not in the data (have {sorted(columns)})")
        return columns[name]

    def fit(self, columns: Mapping[str, np.ndarray]) -> "FeatureEncoder":
        """Fit vocabularies and numeric statistics on training columns; returns self."""
        for s in self.specs:
            if s.type == "categorical":
                counts = Counter(str(v) for v in self._column(columns, s.name))
                kept = sorted(v for v, c in counts.items() if c >= s.min_count)
                self.vocab[s.name] = {v: i + 1 for i, v in enumerate(kept)}
            elif s.type == "multi_hot":
                counts = Counter(str(t) for row in self._column(columns, s.name) for t in row)
                kept = sorted(v for v, c in counts.items() if c >= s.min_count)
                self.vocab[s.name] = {v: i + 2 for i, v in enumerate(kept)}
            elif s.type == "numerical":
                col = self._column(columns, s.name)
                try:
                    x = np.asarray(col, dtype=np.float64)
                except (TypeError, ValueError):
                    raise TypeError(f"{s.name}: numerical feature has non-numeric values") from None
                x = x[np.isfinite(x)]  # NaN / inf are missing values: not in the statistics
                mean, std = (float(x.mean()), float(x.std())) if len(x) else (0.0, 1.0)
                self.stats[s.name] = (mean, std if std > 1e-12 else 1.0)
                qs = np.quantile(x, np.linspace(0, 1, s.buckets + 1)[1:-1]) if s.buckets > 1 and len(x) else []
                self.edges[s.name] = sorted(set(float(q) for q in qs))
        self.fitted = True
        return self

    def transform(self, columns: Mapping[str, np.ndarray], label: str | None = "label",
                  dense_tables: DenseTables | None = None) -> Batch:
        """Encode columns into a ``Batch`` (unseen values -> the out-of-vocabulary id); a missing column is an
        error naming it."""
        if not self.fitted:
            raise ConfigError("FeatureEncoder.transform called before fit")
        n = len(next(iter(columns.values())))
        offsets = self.offsets()
        cats = []
        for s in self.categorical:
            cats.append(self._rows(s.name, self._column(columns, s.name), offsets[s.name], n))
        cat = torch.from_numpy(np.stack(cats, 1)) if cats else torch.zeros((n, 0), dtype=torch.long)
        nums, buckets = [], []
        for s in self.numerical:
            try:
                x = np.asarray(self._column(columns, s.name), dtype=np.float64)
            except (TypeError, ValueError):
                raise TypeError(f"{s.name}: numerical feature has non-numeric values") from None
            mean, std = self.stats[s.name]
            missing = ~np.isfinite(x)  # NaN / inf: value 0 (the mean) and the field's own last bucket, counted
            self.nan_counts[s.name] = self.nan_counts.get(s.name, 0) + int(missing.sum())
            nums.append(np.where(missing, 0.0, (x - mean) / std))
            b = np.searchsorted(np.asarray(self.edges[s.name]), np.where(missing, 0.0, x), side="right")
            buckets.append(np.where(missing, s.buckets, b))
        num = torch.from_numpy(np.stack(nums, 1).astype(np.float32)) if nums else torch.zeros((n, 0))
        num_bucket = (torch.from_numpy(np.stack(buckets, 1).astype(np.int64)) if buckets
                      else torch.zeros((n, 0), dtype=torch.long))
        seq = {}
        for s in self.multi_hot:
            vocab = self.vocab[s.name]
            rows = self._column(columns, s.name)
            mat = np.zeros((n, s.max_len), np.int64)
            for r, toks in enumerate(rows):
                ids = [vocab.get(str(t), 1) for t in list(toks)[: s.max_len]]
                mat[r, : len(ids)] = ids
            seq[s.name] = torch.from_numpy(mat)
        for s in self.behavior:  # 1 + the target field's row in the shared table (0 = padding), oldest first
            mat = np.zeros((n, s.max_len), np.int64)
            cut = 0
            for r, toks in enumerate(self._column(columns, s.name)):
                toks = list(toks)
                if len(toks) > s.max_len:
                    toks, cut = toks[-s.max_len:], cut + 1
                mat[r, : len(toks)] = self._rows(s.target, toks, offsets[s.target], len(toks)) + 1
            self.truncated[s.name] = self.truncated.get(s.name, 0) + cut
            seq[s.name] = torch.from_numpy(mat)
        dense = {}
        for s in self.dense:
            table = (dense_tables or {}).get(s.name)
            if table is None:
                raise NotFoundError(f"{s.name}: dense feature needs a vector table (dense_tables['{s.name}'])")
            keys = self._column(columns, s.key)
            missing = next((k for k in keys if str(k) not in table), None)
            if missing is not None:
                raise NotFoundError(f"{s.name}: no vector for {s.key}={missing!r}")
            mat = np.stack([np.asarray(table[str(k)], np.float32) for k in keys])
            if mat.shape[1] != s.dim:
                raise ValueError(f"{s.name}: vectors have dimension {mat.shape[1]}, spec says {s.dim}")
            dense[s.name] = torch.from_numpy(mat)
        y = None
        if label is not None:
            lab = np.asarray(self._column(columns, label), dtype=np.float32)
            if np.isnan(lab).any():
                raise ValueError(f"{label}: NaN label at row {int(np.argmax(np.isnan(lab)))}")
            y = torch.from_numpy(lab)
        return Batch(cat=cat, num=num, num_bucket=num_bucket, seq=seq, dense=dense, label=y)

    def _rows(self, field: str, values, offset: int, n: int) -> np.ndarray:
        """Table rows of one categorical field's values: its fitted vocabulary (after ``offset``), then the rows
        ``extend`` appended, else the field's out-of-vocabulary row."""
        vocab, added = self.vocab[field], self.added.get(field, {})
        return np.fromiter((vocab[k] + offset if k in vocab else added.get(k, offset)
                            for k in map(str, values)), np.int64, n)

    def extend(self, columns: Mapping[str, np.ndarray], min_count: int | None = None) -> np.ndarray:
        """IncCTR's feature module on in-memory rows: categorical values of ``columns`` seen at least
        ``min_count`` times (default: each field's own ``min_count``) that have no row yet get new rows after
        every existing row; known values keep theirs (offsets do not move). Returns, for each new row in order,
        the row its value used before (its field's out-of-vocabulary row), so a model can start from it."""
        if not self.fitted:
            raise ConfigError("FeatureEncoder.extend called before fit")
        offsets, previous = self.offsets(), []
        start = self.n_categorical_rows()
        for s in self.categorical:
            counts = Counter(str(v) for v in self._column(columns, s.name))
            known, added = self.vocab[s.name], self.added.setdefault(s.name, {})
            new = sorted(v for v, c in counts.items() if c >= (min_count or s.min_count)
                         and v not in known and v not in added)
            for v in new:
                added[v] = start + len(previous)
                previous.append(offsets[s.name])
        return np.asarray(previous, np.int64)

    def offsets(self) -> dict[str, int]:
        """Start row of each categorical field in one shared embedding table."""
        out, total = {}, 0
        for s in self.categorical:
            out[s.name] = total
            total += len(self.vocab[s.name]) + 1
        return out

    def n_categorical_rows(self) -> int:
        """Rows of the shared categorical embedding table (all fields together, rows ``extend`` added too)."""
        return (sum(len(self.vocab[s.name]) + 1 for s in self.categorical)
                + sum(len(v) for v in self.added.values()))

    def to_json(self) -> str:
        """The fitted encoder as JSON (saved with a model)."""
        return json.dumps({
            "specs": [s.model_dump() for s in self.specs],
            "vocab": self.vocab,
            "stats": self.stats,
            "edges": self.edges,
            "added": self.added,
        })

    @classmethod
    def from_json(cls, text: str) -> "FeatureEncoder":
        """A fitted encoder from ``to_json`` output."""
        d = json.loads(text)
        enc = cls([FeatureSpec(**s) for s in d["specs"]])
        enc.vocab = d["vocab"]
        enc.stats = {k: tuple(v) for k, v in d["stats"].items()}
        enc.edges = d.get("edges", {})
        enc.added = d.get("added", {})
        enc.fitted = True
        return enc
