"""LoCoMo session retrieval through the memory service equals the embedded store's: the dev conversations
added and searched twice, once through ``Memory`` over the embedded store (what ``llmrec experiment
memory_locomo`` measures) and once through ``MemoryClient`` against ``llmrec memory serve`` on PostgreSQL.

    python eval/memory_service_locomo.py [--split dev] [--methods hybrid_pair dense_pair]
    -> eval/results/memory_service_locomo.json

For each question, each method ranks every session (hits of every unit, sessions by their best hit, then the
rest in order, as the experiment does); recall_all@5 / recall_any@5 over the questions, and how many
questions' rankings differ between the two paths (0 when the service serves exactly what the store does)."""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from llmrec.config import llmrec_home
from llmrec.data.locomo import DEV_CONVERSATIONS, HELDOUT_CONVERSATIONS, load_locomo
from llmrec.embed import default_embedder
from llmrec.experiments.memory import load_memory_experiment, rank_sessions, score
from llmrec.memory import Memory
from llmrec.memory.api import namespace
from llmrec.memory.client import MemoryClient, launch_service
from llmrec.memory.locomo import add_conversation, session_time
from llmrec.results import write_result
from llmrec.store import VectorStore
from llmrec.store.pgcluster import ThrowawayCluster

KEY = "locomo-service-key-" + "x" * 8


def rankings(add, search, count, convs, methods: dict) -> dict[str, list[list[str]]]:
    """Every question's session ranking per method, through ``add`` / ``search`` / ``count``."""
    out: dict[str, list[list[str]]] = {m: [] for m in methods}
    for conv in convs:
        add(conv)
        sessions = [str(s.index) for s in conv.sessions]
        for qa in conv.qa:
            if not qa.gold_sessions:
                continue
            for m, cfg in methods.items():
                hits = search(conv.sample_id, qa.question, count(conv.sample_id), cfg)
                out[m].append(rank_sessions(hits, sessions))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=["dev", "heldout"], default="dev")
    ap.add_argument("--methods", nargs="+", default=["hybrid_pair", "dense_pair", "hybrid_turn"])
    ap.add_argument("--out", type=Path, default=Path("eval/results/memory_service_locomo.json"))
    a = ap.parse_args()
    exp = load_memory_experiment("memory_locomo")
    methods = {m: exp.methods[m] for m in a.methods}
    for m, spec in methods.items():
        if spec.retriever not in ("dense", "bm25", "hybrid"):
            raise SystemExit(f"{m}: only the dense / bm25 / hybrid methods are compared here")
    convs = load_locomo(exp.data, DEV_CONVERSATIONS if a.split == "dev" else HELDOUT_CONVERSATIONS)
    embedder = default_embedder(cache_path=str(llmrec_home() / "embeddings.sqlite"))
    golds = [{str(s) for s in qa.gold_sessions} for c in convs for qa in c.qa if qa.gold_sessions]

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        mem = Memory(VectorStore(Path(tmp) / "s"), embedder)
        embedded = rankings(lambda c: add_conversation(mem, c),
                            lambda u, q, k, spec: mem.search(u, q, k=k, method=spec.retriever,
                                                             granularity=spec.config.get("granularity", "turn")),
                            lambda u: mem.store.count(namespace(u)), convs, methods)
    t_embedded = time.perf_counter() - t0

    with ThrowawayCluster() as pg:
        node, base = launch_service(f"{pg.url}&schema=locomo", {KEY: "locomo"},
                                    ["--max-k", "100000", "--burst", "1000000", "--rate", "100000"],
                                    env={"HF_HUB_OFFLINE": "1"})
        try:
            client = MemoryClient(base, KEY, timeout=600)
            t0 = time.perf_counter()

            def add(conv) -> None:
                for sess in conv.sessions:
                    msgs = [{"role": "user", "name": t.speaker, "content": t.text} for t in sess.turns]
                    client.add(conv.sample_id, msgs, session_id=str(sess.index), timestamp=session_time(sess.date_time))

            served = rankings(add, lambda u, q, k, spec: client.search(
                u, q, k=k, method=spec.retriever, granularity=spec.config.get("granularity", "turn")),
                lambda u: len(client.get_all(u)), convs, methods)
            t_service = time.perf_counter() - t0
        finally:
            node.terminate()
            node.wait(30)

    res = {"split": a.split, "conversations": [c.sample_id for c in convs], "questions": len(golds),
           "seconds": {"embedded": t_embedded, "service": t_service}, "methods": {}}
    for m in methods:
        e = [score(r, g) for r, g in zip(embedded[m], golds)]
        s = [score(r, g) for r, g in zip(served[m], golds)]
        res["methods"][m] = {
            "embedded": {k: sum(x[k] for x in e) / len(e) for k in ("recall_all@5", "recall_any@5")},
            "service": {k: sum(x[k] for x in s) / len(s) for k in ("recall_all@5", "recall_any@5")},
            "rankings_differ": sum(x != y for x, y in zip(embedded[m], served[m]))}
        print(m, res["methods"][m], flush=True)
    res["summary"] = {m: {"embedded recall_all@5": r["embedded"]["recall_all@5"],
                          "service recall_all@5": r["service"]["recall_all@5"], "rankings differ": r["rankings_differ"]}
                      for m, r in res["methods"].items()}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_result(a.out, res, config={"split": a.split, "methods": a.methods})


if __name__ == "__main__":
    main()
