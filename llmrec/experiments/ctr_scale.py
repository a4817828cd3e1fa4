"""CTR at scale (kind ``ctr_scale``; ``configs/experiments/ctr_scale.yaml``, ``ctr_stream_memory.yaml``):
one CTR model trained on a shard set streamed from disk, variants side by side with peer libraries.

Data: a generated Criteo-shaped set (``data.generate``: cached under ``LLMREC_HOME/data/criteo_synth/<key>``,
reused when the settings match) or any shard set (``data.path``: e.g. converted Criteo / Avazu); days split
into train / valid / test. The ``IdEncoder`` is fitted on the training days.

Every variant (and seed) trains in its own fresh process (spawned), so its peak RSS is its own; a thread
samples the process's RSS every ``rss_interval`` seconds (the RSS-over-time plot), and with
``memory_limit_mb`` the process runs under ``RLIMIT_AS`` (address space: a hard cap, no cgroup needed), so
"data larger than memory trains by streaming" is checked, not assumed. Results: test AUC / logloss,
training samples/s (training time only), peak RSS, embedding memory (table + optimizer state).

Peers (FuxiCTR DeepFM, in ``.venv-peers``) get the same encoded rows (ids per field, the same hashed
table sizes) in memory, as their loaders need, and the same hyperparameters. A finished (variant, seed) or
peer is kept in ``<output>.partial.json`` and not rerun after a kill."""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import resource
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from llmrec.config import StrictConfig, deep_merge, llmrec_home, repo_root
from llmrec.ctr.cache import CachedEmbedding
from llmrec.ctr.ids import IdEncoder, IdEncoderConfig, StreamData
from llmrec.ctr.quant import QuantEmbedding
from llmrec.data.criteo import CriteoSynthConfig, generate_criteo
from llmrec.data.registry import DataConfig, load_data
from llmrec.data.shards import ShardSet, open_shards, write_recdata_shards
from llmrec.errors import BackendError, ConfigError
from llmrec.experiments.kinds import ExperimentKind, validate
from llmrec.experiments.paper_code import peer_command
from llmrec.experiments.runner import Runner
from llmrec.io import settings_key
from llmrec.models import build_model
from llmrec.models.registry import resolve_model_config
from llmrec.results import pyplot
from llmrec.threads import peak_rss_mb, rss_mb
from llmrec.train import Trainer, TrainerConfig


class RecDataChunks(StrictConfig):
    """A recommendation data set (e.g. MovieLens) cut into ``chunks`` time-ordered days of a shard set."""
    data: DataConfig
    chunks: int = Field(10, ge=1)


class ShardSource(StrictConfig):
    """Which shard set: generated (``generate``: its settings), a recommendation data set in time-ordered
    chunks (``recdata``) or on disk (``path``)."""
    generate: CriteoSynthConfig | None = None
    recdata: RecDataChunks | None = None
    path: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "ShardSource":
        if sum(x is not None for x in (self.generate, self.recdata, self.path)) != 1:
            raise ValueError("data: give exactly one of 'generate' (settings), 'recdata' (a data set in "
                             "chunks) or 'path' (a shard set)")
        return self


class ScaleData(ShardSource):
    """A shard set and its days for training / validation / test."""
    train_days: list[int]
    valid_days: list[int]
    test_days: list[int]
    chunk_rows: int = Field(262_144, ge=1)  # rows decoded at a time while streaming


class ScaleVariant(StrictConfig):
    """One configuration: a label and overrides of the experiment's model / trainer."""
    label: str
    model: dict[str, Any] = {}
    trainer: dict[str, Any] = {}


class ScalePeer(StrictConfig):
    """A peer library's model, trained with the settings of ``variant`` (its model and trainer); ``helen``
    is the Helen authors' code (``make peers-code``) with its ``optimizer``."""
    library: str = "fuxictr"
    model: str = "deepfm"
    variant: str
    optimizer: Literal["helen", "adam"] | None = None

    @property
    def key(self) -> str:
        """How results name the peer: library:model, plus :optimizer for a paper's code."""
        return f"{self.library}:{self.model}" + (f":{self.optimizer}" if self.optimizer else "")


class ScaleExperiment(StrictConfig):
    """Data, encoder, base model and trainer, the variants and peers to compare, process limits."""
    name: str
    output: str | None = None
    seeds: list[int] = [2021]
    data: ScaleData
    encoder: IdEncoderConfig = IdEncoderConfig()
    model: dict[str, Any] = {"name": "deepfm"}
    trainer: TrainerConfig = TrainerConfig()
    variants: list[ScaleVariant]
    peers: list[ScalePeer] = []
    peer_python: str = ".venv-peers/bin/python"
    threads: int = Field(1, ge=1)
    memory_limit_mb: int | None = Field(None, ge=256)  # RLIMIT_AS of every variant's process
    rss_interval: float = Field(0.5, gt=0)

    @model_validator(mode="after")
    def _names(self) -> "ScaleExperiment":
        labels = [v.label for v in self.variants]
        if len(set(labels)) != len(labels):
            raise ValueError(f"variants: duplicate labels {labels}")
        for i, p in enumerate(self.peers):
            if p.variant not in labels:
                raise ValueError(f"peers[{i}].variant: no variant {p.variant!r} (have {labels})")
        return self

    def resolved(self, v: ScaleVariant, seed: int) -> tuple[dict, TrainerConfig]:
        """(model config, trainer config) of a variant at a seed."""
        t = TrainerConfig(**deep_merge(self.trainer.model_dump(), {**v.trainer, "seed": seed}))
        return deep_merge(self.model, v.model), t


def shard_set(d: ShardSource, progress: bool = True) -> ShardSet:
    """The experiment's shard set: generated (cached by its settings) or opened."""
    if d.path is not None:
        return open_shards(d.path)
    if d.recdata is not None:
        settings = d.recdata.model_dump(mode="json")
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
        root = llmrec_home() / "data" / "recdata_chunks" / key
        if (root / "manifest.json").exists() and open_shards(root).source.get("settings") == settings:
            return open_shards(root)
        return write_recdata_shards(load_data(d.recdata.data), root, d.recdata.chunks, {"settings": settings})
    key = hashlib.sha256(json.dumps(d.generate.settings(), sort_keys=True).encode()).hexdigest()[:12]
    root = llmrec_home() / "data" / "criteo_synth" / key
    try:
        return open_shards(root) if _complete(root, d.generate) else generate_criteo(d.generate, root, progress)
    except OSError as e:
        raise ConfigError(f"data.generate: cannot write the data under {root} ({e})") from None


def _complete(root: Path, c: CriteoSynthConfig) -> bool:
    path = root / "manifest.json"
    return path.exists() and json.loads(path.read_text()).get("source", {}).get("config") == c.settings()


def _sampler(series: list, interval: float, stop: threading.Event, t0: float) -> None:
    while not stop.wait(interval):
        series.append((round(time.perf_counter() - t0, 2), round(rss_mb(), 1)))


def train_variant(args: dict) -> dict:
    """One (variant, seed) in this process: fit the encoder, stream-train, test; with RSS samples. Runs in
    a spawned child (``run_ctr_scale``); callable directly in tests."""
    if args.get("memory_limit_mb"):
        cap = int(args["memory_limit_mb"]) * 2 ** 20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    torch.set_num_threads(args["threads"])
    series: list = []
    stop, t0 = threading.Event(), time.perf_counter()
    th = threading.Thread(target=_sampler, args=(series, args["rss_interval"], stop, t0), daemon=True)
    th.start()
    try:
        s = open_shards(args["root"])
        enc_cfg = IdEncoderConfig(**args["encoder"])
        train, valid, test = (s.select(args[k]) for k in ("train_days", "valid_days", "test_days"))
        enc = IdEncoder(enc_cfg, s.categorical, s.numerical, s.label).fit(train, progress=False)
        tc = TrainerConfig(**args["trainer"])
        torch.manual_seed(tc.seed)
        model = build_model(enc, args["model"])
        chunk = args["chunk_rows"]
        trainer = Trainer(tc)
        fit = trainer.fit(model, StreamData(train, enc, chunk), StreamData(valid, enc, chunk, shuffle=False))
        metrics = trainer.evaluate(model, StreamData(test, enc, chunk, shuffle=False))
        table = embedding_bytes(model)
        caches = [m for m in model.modules() if isinstance(m, CachedEmbedding)]
        cache_stats = {k: sum(c.stats[k] for c in caches) for k in caches[0].stats} if caches else None
    finally:
        stop.set()
    return {"auc": metrics["auc"], "logloss": metrics["logloss"], "train_samples_per_second": fit.samples_per_second,
            "train_seconds": fit.train_seconds, "epochs": len(fit.history), "best_epoch": fit.best_epoch,
            "valid_auc": fit.best_valid["auc"], "table_rows": enc.n_categorical_rows(),
            "embedding_table_mb": table / 2 ** 20,
            "peak_rss_mb": peak_rss_mb(), "rss_mb": series,
            "train_rows": train.rows, "nan_counts": enc.nan_counts, "cache": cache_stats}


def embedding_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's embedding weights (optimizer state not counted): dense tables as stored, a cached
    table's host table plus its cache, a quantized table's codes packed at their bit width plus step sizes."""
    total, owned = 0, set()
    for m in model.modules():
        if isinstance(m, CachedEmbedding):
            b = m.memory_bytes()
            total += b["host_table"] + b["cache"]
            owned.update(id(p) for p in m.parameters())
        elif isinstance(m, QuantEmbedding):
            b = m.memory_bytes()
            total += b["codes_packed"] + b["steps"]
    tables = model.embedding_tables() if hasattr(model, "embedding_tables") else []
    return total + sum(p.numel() * p.element_size() for p in tables if id(p) not in owned)


def _spawned(args: dict) -> dict:
    ctx = mp.get_context("spawn")
    # under an address-space cap, glibc's per-thread malloc arenas (64 MiB of address space each) would use
    # it up before any data: the child starts with two, and Arrow allocates through malloc (its jemalloc /
    # mimalloc pools reserve address space in large runs); a fixed mmap threshold keeps glibc from serving
    # large blocks from the heap once some were freed (the heap then fragments and grows over a long stream)
    env = ({"MALLOC_ARENA_MAX": "2", "ARROW_DEFAULT_MEMORY_POOL": "system", "MALLOC_MMAP_THRESHOLD_": "1048576"}
           if args.get("memory_limit_mb") else {})
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with ctx.Pool(1, maxtasksperchild=1) as pool:
            return pool.apply(train_variant, (args,))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def export_encoded(s: ShardSet, exp: ScaleExperiment, folder: Path, bucket_numbers: bool) -> dict:
    """The encoded rows for a peer: ``split.npz`` (``part/<field>`` ids within the field, numbers as
    standardized values or, with ``bucket_numbers``, as bucket ids of a categorical field — BARS's Criteo
    setting — and labels) and the feature list with each field's table rows."""
    enc = IdEncoder(exp.encoder, s.categorical, s.numerical, s.label).fit(s.select(exp.data.train_days), False)
    arrays, off = {}, enc.offsets()
    for part, days in (("train", exp.data.train_days), ("valid", exp.data.valid_days), ("test", exp.data.test_days)):
        b = enc.transform(s.select(days).read_all())
        for j, f in enumerate(s.categorical):
            arrays[f"{part}/{f}"] = (b.cat[:, j] - off[f]).numpy()
        for j, f in enumerate(s.numerical):
            arrays[f"{part}/{f}"] = (b.num_bucket if bucket_numbers else b.num)[:, j].numpy()
        arrays[f"{part}/label"] = b.label.numpy()
    np.savez(folder / "split.npz", **arrays)
    nums = ([{"name": f, "type": "categorical", "vocab": exp.encoder.buckets + 1} for f in s.numerical]
            if bucket_numbers else [{"name": f, "type": "numerical"} for f in s.numerical])
    return {"features": [{"name": f, "type": "categorical", "vocab": enc.rows[f]} for f in s.categorical] + nums}


def run_peer(exp: ScaleExperiment, s: ShardSet, peer: ScalePeer, seed: int, folder: Path, features: dict) -> dict:
    """A peer library on the exported rows, in the peers' environment, ``exp.threads`` threads."""
    root = repo_root() or Path.cwd()
    python = Path(exp.peer_python) if Path(exp.peer_python).is_absolute() else root / exp.peer_python
    if not python.exists():
        raise BackendError(f"peer_python: {python} not found (run `make peers`)")
    v = next(v for v in exp.variants if v.label == peer.variant)
    m, t = exp.resolved(v, seed)
    m = build_model_config(m)
    hp = {"embedding_dim": m["embedding_dim"], "hidden_units": m["hidden_units"], "dropout": m["dropout"],
          "batch_size": t.batch_size, "learning_rate": t.learning_rate, "embedding_l2": t.embedding_l2,
          "epochs": t.epochs, "patience": t.patience}
    (folder / "spec.json").write_text(json.dumps({**features, "hp": hp}))
    cmd = peer_command(root, folder, peer.library, peer.model, seed, peer.optimizer)
    res = subprocess.run([str(python), *cmd], capture_output=True, text=True,
                         env={**os.environ, "BENCH_THREADS": str(exp.threads), "OMP_NUM_THREADS": str(exp.threads)})
    if res.returncode:
        raise BackendError(f"peer {peer.key} failed:\n{(res.stderr or res.stdout)[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def build_model_config(spec: dict) -> dict:
    """A model spec with every default filled (the peers need the resolved sizes)."""
    return resolve_model_config(spec).model_dump()


def summarize(runs: dict[str, list[dict]]) -> dict:
    """Mean and std over seeds of each variant's / peer's numbers."""
    out = {}
    for label, rs in runs.items():
        row = {}
        for k in ("auc", "logloss", "train_samples_per_second", "peak_rss_mb"):
            vals = [r[k] for r in rs if r.get(k) is not None]
            if vals:
                row[f"{k}_mean"], row[f"{k}_std"] = float(np.mean(vals)), float(np.std(vals))
        out[label] = row
    return out


def plot(summary: dict, runs: dict[str, list[dict]], path: Path, limit_mb: int | None = None) -> None:
    """Throughput and peak RSS bars per variant / peer, and RSS over time of each variant's first seed."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    labels = list(summary)
    for ax, key, title in ((axes[0], "train_samples_per_second_mean", "training samples/s"),
                           (axes[1], "peak_rss_mb_mean", "peak RSS (MiB)")):
        vals = [summary[k].get(key, 0.0) for k in labels]
        ax.barh(labels, vals)
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:,.0f}", va="center", fontsize=8)
        ax.set_xlabel(title)
        ax.set_xlim(0, max(vals + [1.0]) * 1.25)
    for label, rs in runs.items():
        series = rs[0].get("rss_mb") or []
        if series:
            axes[2].plot([p[0] for p in series], [p[1] for p in series], label=label)
    if limit_mb:
        axes[2].axhline(limit_mb, color="red", ls="--", label="RLIMIT_AS (address space)")
    axes[2].set_xlabel("seconds")
    axes[2].set_ylabel("RSS (MiB)")
    axes[2].set_ylim(bottom=0)
    axes[2].legend(fontsize=8)
    aucs = ", ".join(f"{k} {summary[k].get('auc_mean', float('nan')):.4f}" for k in labels)
    fig.suptitle(f"test AUC: {aucs}", fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


RESUME_FORMAT = "ctr_scale/3"  # the resume key: runs kept under an older format are not reused


def run_ctr_scale(exp: ScaleExperiment, out: str | Path | None = None) -> dict:
    """Every (variant, seed) and peer; writes the result JSON and plot."""
    s = shard_set(exp.data)
    # each finished (variant, seed) / peer is kept by the runner with the settings it ran with (and the data's),
    # and reused only with the same
    runner = Runner(exp, RESUME_FORMAT, out)
    data_key = settings_key(exp.data)
    runs: dict[str, list[dict]] = {}

    def cached(item: str, settings: dict, compute) -> dict:
        return runner.cached({"label": item, "settings": settings, "data": data_key}, compute)

    for v in exp.variants:
        for seed in exp.seeds:
            m, t = exp.resolved(v, seed)
            args = {"root": str(s.root), "encoder": exp.encoder.model_dump(), "model": m,
                    "trainer": t.model_dump(), "threads": exp.threads, "rss_interval": exp.rss_interval,
                    "memory_limit_mb": exp.memory_limit_mb, "chunk_rows": exp.data.chunk_rows,
                    **{k: getattr(exp.data, k) for k in ("train_days", "valid_days", "test_days")}}
            r = cached(f"{v.label}/{seed}", {k: a for k, a in args.items() if k != "root"},
                       lambda args=args, v=v, seed=seed: {"variant": v.label, "seed": seed, **_spawned(args)})
            print(f"{v.label} seed {seed}: AUC {r['auc']:.4f}, {r['train_samples_per_second']:,.0f} samples/s, "
                  f"peak RSS {r['peak_rss_mb']:,.0f} MiB", flush=True)
            runs.setdefault(v.label, []).append(r)
    if exp.peers:
        with tempfile.TemporaryDirectory() as tmp:
            exported: dict[bool, dict] = {}
            for peer in exp.peers:
                label = peer.key
                for seed in exp.seeds:
                    v = next(v for v in exp.variants if v.label == peer.variant)
                    m, t = exp.resolved(v, seed)

                    def compute(peer=peer, m=m, seed=seed, label=label) -> dict:
                        bucket = build_model_config(m).get("numeric_embedding") == "bucket"
                        if bucket not in exported:
                            exported.clear()
                            exported[bucket] = export_encoded(s, exp, Path(tmp), bucket)
                        return {"variant": label, "seed": seed,
                                **run_peer(exp, s, peer, seed, Path(tmp), exported[bucket])}

                    r = cached(f"peer/{label}/{seed}", {"peer": peer.model_dump(), "model": m,
                                                        "trainer": t.model_dump(), "threads": exp.threads,
                                                        "encoder": exp.encoder.model_dump()}, compute)
                    print(f"{label} seed {seed}: AUC {r['auc']:.4f}, {r['train_samples_per_second']:,.0f} samples/s, "
                          f"peak RSS {r['peak_rss_mb']:,.0f} MiB", flush=True)
                    runs.setdefault(label, []).append(r)
    summary = summarize(runs)
    data_info = {"root": str(s.root), "source": s.source, "rows": {k: s.select(getattr(exp.data, k)).rows for k in
                                                                   ("train_days", "valid_days", "test_days")},
                 "decoded_train_mb": s.select(exp.data.train_days).rows * _row_bytes(s) / 2 ** 20}
    result = {"data": data_info, "summary": summary, "runs": runs, "memory_limit_mb": exp.memory_limit_mb}
    path = runner.write(result, plot=lambda png: plot(summary, runs, png, exp.memory_limit_mb))
    return {**result, "output": str(path)}


def _row_bytes(s: ShardSet) -> int:
    """Bytes one row takes decoded (int64 ids, float32 numbers, int8 label)."""
    return 8 * len(s.categorical) + 4 * len(s.numerical) + 1


def _load(raw: dict, path: Path) -> ScaleExperiment:
    return validate(ScaleExperiment, raw, path)


KIND = ExperimentKind(load=_load, run=run_ctr_scale)
