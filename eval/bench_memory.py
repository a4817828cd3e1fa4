"""Memory latency and throughput with 10,000 stored units for one user (no LLM calls).

    python eval/bench_memory.py [--units 10000 --queries 300]

Messages are added (in batches of 10, sessions of 100 turns) until the store holds ``--units`` units
(turns, their pair units and session units). Add throughput: stored units/s through Memory.add, embedding
included. Search latency p50/p95 (top-10, through the Retriever protocol) for dense, BM25 and hybrid search,
MemGAS (dense and hybrid views) and RF-Mem (turns; turns + pairs), with the settings of
configs/experiments/memory_locomo.yaml. Writes eval/results/bench_memory.json. Target: p95 < 50 ms."""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from llmrec.embed import default_embedder
from llmrec.experiments.memory import build_retrievers, load_memory_experiment
from llmrec.memory import Memory
from llmrec.results import write_result
from llmrec.retrieval import make_retriever
from llmrec.store import VectorStore

BENCHED = ["memgas_dense", "memgas_hybrid", "rfmem", "rfmem_pairs"]  # besides plain dense / bm25 / hybrid
SUBJECTS = ["my sister", "the dentist", "our neighbour", "my manager", "the yoga teacher", "grandma", "Tom", "Aiko"]
VERBS = ["recommended", "cooked", "complained about", "bought", "forgot", "painted", "read", "visited"]
OBJECTS = ["a ramen shop in Osaka", "the blue bicycle", "a jazz album", "the hiking trail", "a sourdough recipe",
           "the museum pass", "a chess set", "the garden shed", "a sci-fi novel", "the budget spreadsheet"]
WHEN = ["last Monday", "in March", "yesterday", "two weeks ago", "at the weekend", "on her birthday"]


def sentence(rng: random.Random) -> str:
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(WHEN)} (note {rng.randrange(10**6)})."


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--units", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--out", default=str(Path("eval") / "results" / "bench_memory.json"))
    a = ap.parse_args()
    rng = random.Random(0)
    emb = default_embedder()
    with tempfile.TemporaryDirectory() as tmp:
        mem = Memory(VectorStore(Path(tmp) / "s"), emb)
        t = time.perf_counter()
        n = 0
        while mem.store.count("user:bench-user") < a.units:
            msgs = [{"role": "user", "content": sentence(rng)} for _ in range(10)]
            mem.add("bench-user", msgs, session_id=f"s{n // 100}")
            n += len(msgs)
        add_s = time.perf_counter() - t
        units = mem.store.count("user:bench-user")
        queries = [f"what did {rng.choice(SUBJECTS)} say about {rng.choice(OBJECTS)}?" for _ in range(a.queries)]
        retrievers = {m: make_retriever(m, mem) for m in ("dense", "bm25", "hybrid")}
        retrievers.update(build_retrievers(mem, load_memory_experiment("memory_locomo"), only=BENCHED))
        res = {}
        for name, retriever in retrievers.items():
            t = time.perf_counter()
            retriever.retrieve("bench-user", queries[0], 10)  # first query: MemGAS builds its graph here
            first_ms = (time.perf_counter() - t) * 1000
            lat = []
            for q in queries:
                t = time.perf_counter()
                retriever.retrieve("bench-user", q, 10)
                lat.append((time.perf_counter() - t) * 1000)
            res[name] = {"p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
                         "first_query_ms": first_ms}
            print(name, {k: round(v, 2) for k, v in res[name].items()}, flush=True)
    payload = {"settings": vars(a), "stored_units": units, "turns": n, "add_units_per_second": units / add_s,
               "search_latency": res, "target": "p95 < 50 ms on 2 CPU cores"}
    print("add units/s", round(units / add_s, 1), "stored", units)
    print("wrote", write_result(Path(a.out), payload, config=vars(a)))


if __name__ == "__main__":
    main()
