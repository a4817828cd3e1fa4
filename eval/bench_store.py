"""Vector store benchmark: 100k vectors of dim 384 (a Gaussian mixture, normalized).

    python eval/bench_store.py [--n 100000 --queries 1000]

Add throughput (store.add in batches: SQLite commit + FAISS add), search latency p50/p99 through the
store API (FAISS + SQLite hydration) for flat, HNSW and IVF-PQ, and recall@10 of the approximate indexes
against exact flat search on the same queries. Writes eval/results/bench_store.json."""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from llmrec.results import write_result
from llmrec.store import IndexConfig, StoreConfig, VectorStore


def dataset(n: int, q: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(256, dim)).astype(np.float32)
    x = centers[rng.integers(0, 256, n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    qs = centers[rng.integers(0, 256, q)] + 0.6 * rng.normal(size=(q, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    return x, qs


def run(kind: str, x: np.ndarray, qs: np.ndarray, k: int, batch: int) -> tuple[dict, list[list[str]]]:
    root = Path(tempfile.mkdtemp(prefix=f"bench-store-{kind}-"))
    try:
        store = VectorStore(root, StoreConfig(index=IndexConfig(kind=kind)))
        ids = [str(i) for i in range(len(x))]
        texts = [f"memory unit {i}" for i in range(len(x))]
        t = time.perf_counter()
        for i in tqdm(range(0, len(x), batch), desc=f"add {kind}", leave=False):
            store.add("bench", ids[i : i + batch], texts[i : i + batch], x[i : i + batch],
                      [{"shard": i // batch % 8}] * len(ids[i : i + batch]))
        add_s = time.perf_counter() - t
        store.search("bench", qs[0], k)
        lat, results = [], []
        for q in qs:
            t = time.perf_counter()
            hits = store.search("bench", q, k)
            lat.append(time.perf_counter() - t)
            results.append([h.id for h in hits])
        flt = []
        for q in qs[:200]:
            t = time.perf_counter()
            store.search("bench", q, k, where={"shard": 3})
            flt.append(time.perf_counter() - t)
        t = time.perf_counter()
        store.close()
        close_s = time.perf_counter() - t
        t = time.perf_counter()
        VectorStore(root).close()
        reopen_s = time.perf_counter() - t
        lat_ms = np.array(lat) * 1000
        return {
            "add_vectors_per_s": len(x) / add_s,
            "add_seconds": add_s,
            "search_p50_ms": float(np.percentile(lat_ms, 50)),
            "search_p99_ms": float(np.percentile(lat_ms, 99)),
            "filtered_search_p50_ms": float(np.percentile(np.array(flt) * 1000, 50)),
            "snapshot_seconds": close_s,
            "reopen_seconds": reopen_s,
        }, results
    finally:
        shutil.rmtree(root, ignore_errors=True)


def recall(approx: list[list[str]], exact: list[list[str]]) -> float:
    return float(np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact)]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--batch", type=int, default=1000, help="vectors per add call")
    ap.add_argument("--out", default="eval/results/bench_store.json")
    a = ap.parse_args()
    x, qs = dataset(a.n, a.queries, a.dim)
    out, exact = {}, None
    for kind in ("flat", "hnsw", "ivfpq"):
        res, ids = run(kind, x, qs, a.k, a.batch)
        if kind == "flat":
            exact = ids
        res[f"recall@{a.k}_vs_flat"] = recall(ids, exact)
        out[kind] = res
        print(kind, {k: round(v, 3) for k, v in res.items()}, flush=True)
    payload = {"settings": vars(a), "indexes": out,
               "target": "HNSW recall@10 vs flat >= 0.95"}
    print("wrote", write_result(Path(a.out), payload, config=vars(a)))


if __name__ == "__main__":
    main()
