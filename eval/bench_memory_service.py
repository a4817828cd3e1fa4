"""The memory service under load: adds per second and search latency through ``llmrec memory serve`` on the
PostgreSQL store, at 100,000 units per user and 1,000,000 units in all, one node and then two nodes.

    python eval/bench_memory_service.py [--users 10 --units-per-user 100000 --adds 1000 --queries 300]
    -> eval/results/bench_memory_service.json (+ .png)

1. The store is filled directly (``PostgresStore.add``, batches of 10,000; then ``VACUUM ANALYZE``, without
   which autovacuum runs during the first measurements): unit texts are unique generated
   sentences; their vectors are MiniLM embeddings of a pool of ``--pool`` sentences, each reused with small
   Gaussian noise and normalised (embedding a million texts on 2 cores would take hours and measures MiniLM,
   not the service). The time to fill is reported apart.
2. One node starts (its FAISS replicas load from PostgreSQL: reported), and answers searches of one user
   (100,000 units): ``dense`` and ``hybrid`` (turn units, k = 10; hybrid's BM25 index warmed first), one
   client at a time (latency p50 / p95) and ``--clients`` clients at once (throughput). Then adds: one message
   each, MiniLM embedding in the service, ``--clients`` clients at once.
3. A second node joins on the same store and the clients are split over both: the same measurements.

Every query and added text is new (numbered), and the nodes start with an empty embedding cache, so each
request embeds its text with MiniLM. Latency is wall time at the client (HTTP, validation, query embedding, FAISS, hydration from PostgreSQL).
Both nodes, PostgreSQL and the clients share this machine's 2 cores, so a second node adds no cores: its
figures say what sharing costs and that it is correct, not how a second machine would scale."""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from bench_memory import OBJECTS, SUBJECTS, VERBS, WHEN  # the same generated memories as bench_memory.py
from llmrec.embed import default_embedder
from llmrec.memory.client import launch_service
from llmrec.results import write_result
from llmrec.store.pgcluster import ThrowawayCluster
from llmrec.store.postgres import PostgresStore

KEY = "bench-service-key-" + "x" * 8
TENANT = "bench"


def sentence(rng: random.Random) -> str:
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(WHEN)}"


def fill(url: str, users: int, per_user: int, pool: int, seed: int) -> dict:
    """Every user's units straight into the store; seconds and rows."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    emb = default_embedder()  # no cache: the pool is embedded afresh
    texts = [sentence(rng) for _ in range(pool)]
    t = time.perf_counter()
    vecs = np.asarray(emb.encode(texts), np.float32)
    embed_s = time.perf_counter() - t
    store = PostgresStore(url.split("&schema=")[0], url.split("&schema=")[1])
    t = time.perf_counter()
    batch = 10_000
    for u in range(users):
        ns = f"user:{TENANT}:u{u}"
        for start in range(0, per_user, batch):
            idx = np.arange(start, min(per_user, start + batch))
            base = vecs[idx % pool] + nrng.normal(0, 0.02, (len(idx), vecs.shape[1])).astype(np.float32)
            base /= np.linalg.norm(base, axis=1, keepdims=True)
            store.add(ns, [f"t-{u}-{i}" for i in idx], [f"{texts[i % pool]} (note {i})" for i in idx], base,
                      [{"granularity": "turn", "session_id": f"s{i // 100}", "timestamp": 1.7e9 + i} for i in idx])
        print(f"filled user {u + 1}/{users} ({(u + 1) * per_user:,} units, {time.perf_counter() - t:.0f} s)",
              flush=True)
    fill_s = time.perf_counter() - t
    t = time.perf_counter()  # after a bulk load, as an operator would: else autovacuum runs during the measurements
    store._db.execute("VACUUM ANALYZE")
    store.close()
    return {"pool_embed_seconds": embed_s, "fill_seconds": fill_s, "vacuum_analyze_seconds": time.perf_counter() - t,
            "units": users * per_user, "per_user": per_user, "users": users}


def start_node(url: str, snapshots: Path, home: Path) -> tuple[subprocess.Popen, str, float]:
    """A node on an empty embedding cache (a fresh home); its process, URL and seconds to answer."""
    t = time.perf_counter()
    proc, base = launch_service(url, {KEY: TENANT}, ["--snapshot-dir", str(snapshots), "--burst", "10000000",
                                                     "--rate", "1000000"],
                                env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "LLMREC_HOME": str(home)})
    return proc, base, time.perf_counter() - t


def timed(calls: list, clients: int) -> tuple[list[float], float]:
    """Run ``calls`` (functions) from ``clients`` threads; per-call latencies and wall seconds."""
    lat: list[float] = []
    lock = threading.Lock()
    it = iter(calls)

    def work() -> None:
        while True:
            with lock:
                fn = next(it, None)
            if fn is None:
                return
            t = time.perf_counter()
            fn()
            d = time.perf_counter() - t
            with lock:
                lat.append(d)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, time.perf_counter() - t0


def measure(bases: list[str], queries: int, adds: int, clients: int, seed: int) -> dict:
    """Search latency (sequential and concurrent) and add throughput through ``bases`` (round robin)."""
    rng = random.Random(seed)
    http = httpx.Client(timeout=120, headers={"Authorization": f"Bearer {KEY}"},
                        limits=httpx.Limits(max_connections=64))
    out: dict = {"nodes": len(bases)}
    def search(i: int, method: str, phase: str):
        # every query text is new (numbered): no embedding cache hit inside or across phases and runs
        query = f"what did {rng.choice(SUBJECTS)} say about {rng.choice(OBJECTS)} ({phase} {len(bases)} {i})"

        def call() -> None:
            r = http.post(f"{bases[i % len(bases)]}/search",
                          json={"user_id": "u0", "query": query, "k": 10, "method": method})
            r.raise_for_status()
        return call

    for method in ("dense", "hybrid"):
        for j in range(20 * len(bases)):  # warm each node: BM25 index of the user, FAISS pages, MiniLM's kernels
            search(j, method, "warm")()
        seq, wall = timed([search(i, method, f"{method} one") for i in range(queries)], 1)
        con, cwall = timed([search(i, method, f"{method} many") for i in range(queries)], clients)
        out[method] = {"p50_ms": 1000 * float(np.percentile(seq, 50)), "p95_ms": 1000 * float(np.percentile(seq, 95)),
                       "concurrent_p50_ms": 1000 * float(np.percentile(con, 50)),
                       "concurrent_p95_ms": 1000 * float(np.percentile(con, 95)),
                       "queries_per_second": queries / cwall}
        print(f"{len(bases)} node(s) {method}: {out[method]}", flush=True)

    def add(i: int):
        def call() -> None:
            r = http.post(f"{bases[i % len(bases)]}/memories",
                          json={"user_id": f"u{1 + i % 5}", "text": f"{sentence(rng)} (new {seed}-{i} {time.time()})"})
            r.raise_for_status()
        return call

    lat, wall = timed([add(i) for i in range(adds)], clients)
    out["add"] = {"adds_per_second": adds / wall, "p50_ms": 1000 * float(np.percentile(lat, 50)),
                  "p95_ms": 1000 * float(np.percentile(lat, 95))}
    print(f"{len(bases)} node(s) add: {out['add']}", flush=True)
    return out


def plot(res: dict, path: Path) -> None:
    from llmrec.results import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    runs = res["runs"]
    labels = [f"{r['nodes']} node{'s' if r['nodes'] > 1 else ''}" for r in runs]
    x = np.arange(len(runs))
    for j, m in enumerate(("dense", "hybrid")):
        axes[0].bar(x + 0.2 * j - 0.3, [r[m]["p50_ms"] for r in runs], 0.2, label=f"{m} p50")
        axes[0].bar(x + 0.2 * j - 0.1 + 0.2, [r[m]["p95_ms"] for r in runs], 0.2, label=f"{m} p95")
    axes[0].axhline(50, color="k", ls="--", lw=1)
    axes[0].set_xticks(x, labels)
    axes[0].set_ylabel("ms (one client)")
    axes[0].set_title(f"search, {res['fill']['per_user']:,} units/user, {res['fill']['units']:,} in all")
    axes[0].legend(fontsize=7)
    axes[1].bar(x - 0.2, [r["add"]["adds_per_second"] for r in runs], 0.4, label="adds/s")
    axes[1].bar(x + 0.2, [r["dense"]["queries_per_second"] for r in runs], 0.4, label="dense searches/s")
    axes[1].set_xticks(x, labels)
    axes[1].set_title(f"throughput, {res['clients']} clients")
    axes[1].legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--units-per-user", type=int, default=100_000)
    ap.add_argument("--pool", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--adds", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("eval/results/bench_memory_service.json"))
    a = ap.parse_args()
    with ThrowawayCluster() as pg:
        url = f"{pg.url}&schema=bench"
        res: dict = {"clients": a.clients, "cores": os.cpu_count(),
                     "fill": fill(url, a.users, a.units_per_user, a.pool, a.seed), "runs": []}
        snaps = Path(pg.root) / "snapshots"
        home = Path(pg.root) / "home"
        one, base1, start1 = start_node(url, snaps / "1", home)
        res["node_start_seconds"] = [start1]
        try:
            res["runs"].append(measure([base1], a.queries, a.adds, a.clients, a.seed))
            two, base2, start2 = start_node(url, snaps / "2", home)
            res["node_start_seconds"].append(start2)
            try:
                res["runs"].append(measure([base1, base2], a.queries, a.adds, a.clients, a.seed + 1))
                res["verify"] = [httpx.get(f"{b}/verify", headers={"Authorization": f"Bearer {KEY}"},
                                           timeout=600).json() for b in (base1, base2)]
            finally:
                two.terminate()
                two.wait(60)
        finally:
            one.terminate()
            one.wait(60)
    res["summary"] = {f"{r['nodes']} node(s)": {"dense p95 ms": r["dense"]["p95_ms"], "hybrid p95 ms": r["hybrid"]["p95_ms"],
                                               "adds/s": r["add"]["adds_per_second"],
                                               "dense searches/s": r["dense"]["queries_per_second"]}
                      for r in res["runs"]}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_result(a.out, res, config={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
                 seeds=[a.seed])
    plot(res, a.out.with_suffix(".png"))
    print(json.dumps({k: v for k, v in res.items() if k != "runs"}, indent=1))


if __name__ == "__main__":
    main()
