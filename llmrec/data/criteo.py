"""Criteo-shaped impression data: a seeded generator with real signal, and converters for the real Criteo
and Avazu files, all written as a parquet shard set (``llmrec.data.shards``).

Generator (``CriteoSynthConfig``, ``generate_criteo``): 13 numerical fields ``I1..I13`` (counts,
log-normal, each missing at its own rate up to ``missing_rate``) and 26 categorical fields ``C1..C26``
whose id universes follow the shape of Criteo Kaggle's 26 cardinalities scaled so the largest has
``max_cardinality`` ids (10M and more when asked). Ids are drawn with power-law popularity (exponent
``zipf``) over a hashed id space, so the frequency of an id does not depend on its value. The label comes
from a hidden model:

    logit = bias + sum_f w_f(id_f, day) + gamma * sum_{(f,g) in P} <v_f(id_f), v_g(id_g)> / sqrt(k)
            + sum_k beta_k * tanh(z_k)

``w_f(id, day) = sigma_f (a cos(theta day) + b sin(theta day))`` drifts slowly with the day (``drift`` =
theta), ``v`` are k-dim latent vectors on ``interaction_pairs`` random field pairs, ``z_k`` the standardized
log count of numerical field k; a few fields (``noise_fields``) carry no signal. Every per-id quantity is
a hash of (seed, field, id), so nothing of size ``max_cardinality`` is ever stored. A share
``new_id_rate`` of each day's draws goes to ids born in the last three days (new-id handling for
incremental training). With ``popularity_effect`` > 0 (default 0), each signal field also adds
``popularity_effect * sigma_f * (2 p - 1)``, p = 1 - log(1 + popularity rank) / log(1 + cardinality)
(1: the most popular id; a new id's rank is its rank among the newborns x 10): rarer ids click less, as in
real logs, so what an unseen id should start from is learnable (AutoAssign+'s shared rows). The bias is set on a pilot sample so the click rate is ``ctr``; the manifest records
it and the Bayes-optimal AUC of that sample (``oracle_auc``: what a perfect model would reach).

Real formats (files not provided here; ``llmrec data convert``):

- Criteo (Kaggle ``train.txt`` / 1TB ``day_N``): tab-separated ``label, I1..I13, C1..C26``, ids as 8-digit
  hex, empty = missing. One input file per day, or ``rows_per_day`` to cut one file into days
  (Kaggle: 7 days).
- Avazu (``train.csv``): header ``id,click,hour,C1,banner_pos,site_id,...,C21``; every field categorical
  (strings hashed to 56-bit ids with BLAKE2b), ``hour`` (YYMMDDHH) gives the day and an hour-of-day field.

A missing categorical value becomes id -1 (its own value); a missing number stays NaN."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from pydantic import Field
from tqdm.auto import tqdm

from llmrec.config import StrictConfig
from llmrec.data.shards import Shard, ShardSet, complete_rows, hash_strings, shard_schema, write_shard
from llmrec.errors import DataError, MissingFileError
from llmrec.metrics import auc

# Criteo Kaggle (display advertising challenge) train set: distinct values of C1..C26
CRITEO_CARDINALITIES = (1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194, 27,
                        14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572)
N_NUMERICAL = 13
CATEGORICAL = [f"C{i + 1}" for i in range(len(CRITEO_CARDINALITIES))]
NUMERICAL = [f"I{i + 1}" for i in range(N_NUMERICAL)]
AVAZU_FIELDS = ["C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id", "app_domain",
                "app_category", "device_id", "device_ip", "device_model", "device_type", "device_conn_type",
                "C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21"]

_M = np.uint64(0xFFFFFFFFFFFFFFFF)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer over a uint64 array (wrapping arithmetic): a well-mixed 64-bit hash."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _salted(ids: np.ndarray, *salt: int) -> np.ndarray:
    key = np.uint64(0)
    for s in salt:
        key = mix64(np.asarray([key ^ np.uint64(s & 0xFFFFFFFFFFFFFFFF)], np.uint64))[0]
    return mix64(ids.astype(np.uint64) ^ key)


def _uniform(h: np.ndarray) -> np.ndarray:
    """(0, 1] floats from 64-bit hashes."""
    return ((h >> np.uint64(11)).astype(np.float64) + 1.0) * (1.0 / 9007199254740992.0)


def hashed_normal(ids: np.ndarray, *salt: int) -> np.ndarray:
    """One standard normal per id, a pure function of (salt, id) (Box-Muller over two hashes)."""
    u1 = _uniform(_salted(ids, *salt, 1))
    u2 = _uniform(_salted(ids, *salt, 2))
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


class CriteoSynthConfig(StrictConfig):
    """Settings of the Criteo-shaped generator (see the module docstring for the hidden model)."""
    days: int = Field(7, ge=1)
    rows_per_day: int = Field(500_000, ge=1)
    shard_rows: int = Field(250_000, ge=1)
    max_cardinality: int = Field(10_000_000, ge=2)  # id universe of the largest field
    zipf: float = Field(1.1, gt=0)  # power-law exponent of id popularity
    latent_dim: int = Field(4, ge=1)
    interaction_pairs: int = Field(12, ge=0)
    noise_fields: int = Field(4, ge=0, le=26)  # categorical fields without any effect
    signal: float = Field(1.0, ge=0)  # scale of every effect
    drift: float = Field(0.15, ge=0)  # radians per day the id effects rotate
    new_id_rate: float = Field(0.05, ge=0, le=1)
    missing_rate: float = Field(0.3, ge=0, le=1)  # numerical fields are missing at rates in [0, this]
    ctr: float = Field(0.25, gt=0, lt=1)
    popularity_effect: float = Field(0.0, ge=0)  # rare ids click less (module docstring); 0: independent
    seed: int = 0

    def settings(self) -> dict:
        """The settings that identify a generated set (manifest, cache key); ``popularity_effect`` only when
        set, so sets generated before it existed keep their identity."""
        return self.model_dump(exclude={"popularity_effect"} if self.popularity_effect == 0 else None)

    def cardinalities(self) -> list[int]:
        """Id universe per categorical field: Criteo's shape scaled to ``max_cardinality``."""
        top = max(CRITEO_CARDINALITIES)
        return [max(2, round(c * self.max_cardinality / top)) for c in CRITEO_CARDINALITIES]


class _Hidden:
    """The generator's hidden model: per-field scales, interaction pairs, numerical effects."""

    def __init__(self, c: CriteoSynthConfig) -> None:
        rng = np.random.default_rng([c.seed, 17])
        n = len(CATEGORICAL)
        self.sigma = c.signal * 0.6 * rng.uniform(0.2, 1.0, n)
        self.sigma[rng.choice(n, c.noise_fields, replace=False)] = 0.0
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        pick = rng.choice(len(pairs), min(c.interaction_pairs, len(pairs)), replace=False)
        self.pairs = [pairs[p] for p in sorted(pick)]
        self.gamma = c.signal * 0.5
        self.num_mu = rng.uniform(0.5, 4.0, N_NUMERICAL)
        self.num_s = rng.uniform(0.5, 1.5, N_NUMERICAL)
        self.num_beta = c.signal * 0.3 * rng.standard_normal(N_NUMERICAL)
        self.missing = rng.uniform(0.0, c.missing_rate, N_NUMERICAL)


def _ranks(u: np.ndarray, k: int, s: float) -> np.ndarray:
    """Popularity ranks in [0, k) from uniforms: a truncated power law p(r) ~ (r + 1)^-s (inverse CDF of its
    continuous version)."""
    if abs(s - 1.0) < 1e-9:
        r = np.exp(u * np.log(k + 1.0))
    else:
        a = 1.0 - s
        r = ((np.power(k + 1.0, a) - 1.0) * u + 1.0) ** (1.0 / a)
    return np.clip(np.floor(r).astype(np.int64) - 1, 0, k - 1)


def _draw(c: CriteoSynthConfig, h: _Hidden, day: int, shard: int, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Columns of ``n`` rows of one shard and their logits (without the bias)."""
    rng = np.random.default_rng([c.seed, day, shard, 5])
    cards = c.cardinalities()
    cols: dict[str, np.ndarray] = {}
    logit = np.zeros(n)
    latent: dict[int, np.ndarray] = {}
    theta = c.drift * day
    in_pair = {f for p in h.pairs for f in p}
    for f, name in enumerate(CATEGORICAL):
        ranks = _ranks(rng.random(n), cards[f], c.zipf)
        pop_rank = ranks.astype(np.float64)
        ids = (_salted(ranks, c.seed, f, 7) >> np.uint64(24)).astype(np.int64)
        new = rng.random(n) < c.new_id_rate
        if new.any():
            born = np.maximum(0, day - rng.integers(0, 3, int(new.sum())))
            r_new = _ranks(rng.random(int(new.sum())), max(2, cards[f] // 10), c.zipf)
            key = (born.astype(np.uint64) << np.uint64(40)) | r_new.astype(np.uint64)
            ids[new] = (_salted(key, c.seed, f, 1000) >> np.uint64(24)).astype(np.int64)
            pop_rank[new] = r_new * 10.0
        cols[name] = ids
        if h.sigma[f] > 0:
            a = hashed_normal(ids, c.seed, f, 11)
            b = hashed_normal(ids, c.seed, f, 12)
            logit += h.sigma[f] * (a * np.cos(theta) + b * np.sin(theta))
            if c.popularity_effect:
                p = 1.0 - np.log1p(pop_rank) / np.log1p(cards[f])
                logit += c.popularity_effect * h.sigma[f] * (2.0 * p - 1.0)
        if f in in_pair:
            latent[f] = np.stack([hashed_normal(ids, c.seed, f, 100 + k) for k in range(c.latent_dim)], 1)
    for i, j in h.pairs:
        logit += h.gamma * (latent[i] * latent[j]).sum(1) / np.sqrt(c.latent_dim)
    for k, name in enumerate(NUMERICAL):
        z = rng.standard_normal(n)
        x = np.floor(np.expm1(h.num_mu[k] + h.num_s[k] * z)).astype(np.float32)
        logit += h.num_beta[k] * np.tanh(z)
        x[rng.random(n) < h.missing[k]] = np.nan
        cols[name] = x
    return cols, logit


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _calibrate(c: CriteoSynthConfig, h: _Hidden) -> tuple[float, float]:
    """(bias giving click rate ``ctr`` on a pilot sample of day 0, Bayes AUC of that sample)."""
    _, logit = _draw(c, h, 0, 10_000, min(200_000, c.rows_per_day * c.days))
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _sigmoid(logit + mid).mean() < c.ctr else (lo, mid)
    bias = (lo + hi) / 2
    p = _sigmoid(logit + bias)
    y = np.random.default_rng([c.seed, 99]).random(len(p)) < p
    return bias, auc(y.astype(np.float32), p)


def generate_criteo(config: CriteoSynthConfig, root: str | Path, progress: bool = True) -> ShardSet:
    """Write the generated data as a shard set under ``root`` (resuming: complete shards of the same
    settings are kept); returns it."""
    root = Path(root)
    c, h = config, _Hidden(config)
    manifest = root / "manifest.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("source", {}).get("config") != c.settings():
        raise DataError(f"{root}: holds shards generated with other settings; use another folder")
    bias, oracle = _calibrate(c, h)
    source = {"generator": "criteo_synth", "config": c.settings(), "bias": bias, "oracle_auc": oracle,
              "cardinalities": dict(zip(CATEGORICAL, c.cardinalities()))}
    schema = shard_schema("label", CATEGORICAL, NUMERICAL)
    shards = []
    per_day = -(-c.rows_per_day // c.shard_rows)
    jobs = [(d, s) for d in range(c.days) for s in range(per_day)]
    for d, s in tqdm(jobs, desc="generate shards", disable=not progress):
        n = min(c.shard_rows, c.rows_per_day - s * c.shard_rows)
        rel = f"day={d:03d}/part-{s:05d}.parquet"
        if complete_rows(root / rel) != n:
            cols, logit = _draw(c, h, d, s, n)
            rng = np.random.default_rng([c.seed, d, s, 6])
            cols["label"] = (rng.random(n) < _sigmoid(logit + bias)).astype(np.int8)
            write_shard(root / rel, cols, schema)
        shards.append(Shard(rel, d, n))
    out = ShardSet(root, "label", CATEGORICAL, NUMERICAL, shards, source)
    out.write_manifest()
    return out


# --- real formats --------------------------------------------------------------------------------------

class _ShardWriter:
    """Accumulates converted rows and writes fixed-size shards per day."""

    def __init__(self, root: Path, categorical: list[str], numerical: list[str], shard_rows: int) -> None:
        self.root, self.shard_rows = root, shard_rows
        self.schema = shard_schema("label", categorical, numerical)
        self.categorical, self.numerical = categorical, numerical
        self.buf: dict[str, list[np.ndarray]] = {}
        self.day, self.count, self.part = None, 0, 0
        self.shards: list[Shard] = []

    def add(self, day: int, cols: dict[str, np.ndarray]) -> None:
        if self.day is not None and day != self.day:
            self.flush()
            self.part = 0
        self.day = day
        for k, v in cols.items():
            self.buf.setdefault(k, []).append(v)
        self.count += len(cols["label"])
        while self.count >= self.shard_rows:
            self._write(self.shard_rows)

    def _write(self, n: int) -> None:
        merged = {k: np.concatenate(v) for k, v in self.buf.items()}
        rel = f"day={self.day:03d}/part-{self.part:05d}.parquet"
        if complete_rows(self.root / rel) != n:
            write_shard(self.root / rel, {k: v[:n] for k, v in merged.items()}, self.schema)
        self.shards.append(Shard(rel, self.day, n))
        self.buf = {k: [v[n:]] for k, v in merged.items()}
        self.count -= n
        self.part += 1

    def flush(self) -> None:
        if self.count:
            self._write(self.count)

    def finish(self, source: dict) -> ShardSet:
        self.flush()
        out = ShardSet(self.root, "label", self.categorical, self.numerical, self.shards, source)
        out.write_manifest()
        return out


def _require(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"{p}: input file not found")
    return p


def convert_criteo(inputs: Iterable[str | Path], root: str | Path, rows_per_day: int | None = None,
                   shard_rows: int = 1_000_000, block_bytes: int = 1 << 24, progress: bool = True) -> ShardSet:
    """Criteo's tab-separated files (one per day, or one cut every ``rows_per_day`` rows) as a shard set."""
    names = ["label", *NUMERICAL, *CATEGORICAL]
    types = {"label": pa.int8(), **{c: pa.float32() for c in NUMERICAL}, **{c: pa.string() for c in CATEGORICAL}}
    w = _ShardWriter(Path(root), CATEGORICAL, NUMERICAL, shard_rows)
    row = 0
    files = [_require(p) for p in inputs]
    for file_day, path in enumerate(files):
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(column_names=names, block_size=block_bytes),
                                parse_options=pacsv.ParseOptions(delimiter="\t"),
                                convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True))
        for rb in tqdm(_batches(reader, path), desc=f"convert {path.name}", disable=not progress):
            n = rb.num_rows
            cols = {"label": rb.column("label").to_numpy(zero_copy_only=False)}
            if np.isnan(cols["label"].astype(np.float32)).any():
                raise DataError(f"{path}: empty label near row {row}")
            for c in NUMERICAL:
                cols[c] = rb.column(c).to_numpy(zero_copy_only=False).astype(np.float32)
            for c in CATEGORICAL:
                cols[c] = hash_strings(rb.column(c), hex_ids=True)
            if rows_per_day is None:
                w.add(file_day, cols)
            else:
                days = (row + np.arange(n)) // rows_per_day
                for d in np.unique(days):
                    m = days == d
                    w.add(int(d), {k: v[m] for k, v in cols.items()})
            row += n
    return w.finish({"converter": "criteo", "inputs": [str(p) for p in files], "rows_per_day": rows_per_day})


def convert_avazu(inputs: Iterable[str | Path], root: str | Path, shard_rows: int = 1_000_000,
                  block_bytes: int = 1 << 24, progress: bool = True) -> ShardSet:
    """Avazu's CSV (header ``id,click,hour,...``) as a shard set: the day from ``hour`` (days numbered from
    the first day seen), ``hour`` of day as one more categorical field."""
    categorical = ["hour_of_day", *AVAZU_FIELDS]
    w = _ShardWriter(Path(root), categorical, [], shard_rows)
    first_day = None
    files = [_require(p) for p in inputs]
    for path in files:
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=block_bytes),
                                convert_options=pacsv.ConvertOptions(
                                    column_types={"click": pa.int8(), "hour": pa.int64(),
                                                  **{c: pa.string() for c in AVAZU_FIELDS}}))
        have = reader.schema.names
        missing = [c for c in ("click", "hour", *AVAZU_FIELDS) if c not in have]
        if missing:
            raise DataError(f"{path}: column {missing[0]!r} missing (an Avazu file has {['id', 'click', 'hour', *AVAZU_FIELDS]})")
        for rb in tqdm(_batches(reader, path), desc=f"convert {path.name}", disable=not progress):
            hour = rb.column("hour").to_numpy(zero_copy_only=False)
            # YYMMDDHH -> days since 2000-01-01 (calendar days, so month boundaries count right)
            dates = np.array([f"20{h // 1000000:02d}-{h // 10000 % 100:02d}-{h // 100 % 100:02d}" for h in hour],
                             dtype="datetime64[D]")
            day = (dates - np.datetime64("2000-01-01")).astype(np.int64)
            first_day = int(day.min()) if first_day is None else first_day
            cols = {"label": rb.column("click").to_numpy(zero_copy_only=False).astype(np.int8),
                    "hour_of_day": (hour % 100).astype(np.int64)}
            for c in AVAZU_FIELDS:
                cols[c] = hash_strings(rb.column(c), hex_ids=False)
            for d in np.unique(day):
                m = day == d
                w.add(int(d) - first_day, {k: v[m] for k, v in cols.items()})
    return w.finish({"converter": "avazu", "inputs": [str(p) for p in files]})


def _batches(reader, path: Path):
    try:
        yield from reader
    except pa.ArrowInvalid as e:
        raise DataError(f"{path}: malformed row ({e})") from None


def write_criteo_sample(path: str | Path, rows: int = 200, seed: int = 0) -> Path:
    """A small file in Criteo's real tab-separated format (generated, with missing values), for tests and
    for trying the converter."""
    c = CriteoSynthConfig(days=1, rows_per_day=rows, shard_rows=rows, max_cardinality=5000, seed=seed)
    h = _Hidden(c)
    cols, logit = _draw(c, h, 0, 0, rows)
    rng = np.random.default_rng([seed, 3])
    y = (rng.random(rows) < _sigmoid(logit - 1.0)).astype(int)
    lines = []
    for r in range(rows):
        ints = ["" if np.isnan(cols[k][r]) else str(int(cols[k][r])) for k in NUMERICAL]
        cats = ["" if rng.random() < 0.05 else f"{int(cols[k][r]) & 0xFFFFFFFF:08x}" for k in CATEGORICAL]
        lines.append("\t".join([str(y[r]), *ints, *cats]))
    p = Path(path)
    p.write_text("\n".join(lines) + "\n")
    return p


def write_avazu_sample(path: str | Path, rows: int = 200, seed: int = 0) -> Path:
    """A small file in Avazu's real CSV format (two days of hours), for tests and trying the converter."""
    rng = np.random.default_rng(seed)
    header = ["id", "click", "hour", *AVAZU_FIELDS]
    lines = [",".join(header)]
    for r in range(rows):
        hour = 14102100 + (r * 48 // rows) // 24 * 100 + (r * 48 // rows) % 24
        vals = [f"{rng.integers(0, 50 if i % 3 else 5):x}{'abc'[i % 3]}" for i in range(len(AVAZU_FIELDS))]
        lines.append(",".join([str(10_000_000 + r), str(int(rng.random() < 0.17)), str(hour), *vals]))
    p = Path(path)
    p.write_text("\n".join(lines) + "\n")
    return p
