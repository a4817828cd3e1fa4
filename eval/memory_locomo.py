"""LoCoMo session retrieval: random, BM25, dense, hybrid, MemGAS and RF-Mem over the llmrec memory API.

    python eval/memory_locomo.py [--split dev|heldout|all] [--no-digest] [--methods NAME ...] [--llm-dtype bfloat16]

Every method is a registered retriever (``llmrec.retrieval``) with the settings in
configs/experiments/memory_locomo.yaml; this script only adds the conversations, calls ``retrieve`` and scores
the session rankings.

Each conversation is one user; each session is added as its turns (speaker: text, image captions appended)
with a session unit, timestamped with the session's date; then ``Memory.consolidate`` has the LLM (bundled
SmolLM2 by default, generations cached in LLMREC_HOME/generations.sqlite) write each session's summary and
keywords units, which the MemGAS settings with "summary" / "keywords" views use. Gold = the sessions named in a question's evidence ids (malformed ids are counted and
reported, questions left with no gold session are excluded and counted). Metrics: session-level
recall_all@k (every gold session in the top k, as MemGAS scores it), recall_any@k and NDCG@k, overall and
per category (1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop, 5 adversarial), with the random floor
computed on the same questions. Tune on the dev conversations only; the held-out ones are reported as is.
Writes eval/results/memory_locomo_<split>.json and a plot next to it. Its add throughput and latencies come
from a warm embedding cache (LLMREC_HOME/embeddings.sqlite) and rank every session of a conversation;
eval/bench_memory.py measures cold adds and top-10 searches over 10,000 units."""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from llmrec.config import data_root, llmrec_home
from llmrec.data.locomo import CATEGORIES, DEV_CONVERSATIONS, HELDOUT_CONVERSATIONS, load_locomo
from llmrec.embed import default_embedder
from llmrec.experiments.memory import build_retrievers, load_memory_experiment, rank_sessions
from llmrec.llm import LLMConfig, make_llm
from llmrec.llm.cache import CachedLLM
from llmrec.memory import Memory
from llmrec.memory.api import namespace
from llmrec.memory.locomo import add_conversation
from llmrec.memory.units import SessionDigester
from llmrec.metrics import ndcg_at, recall_all_at, recall_any_at
from llmrec.results import pyplot, write_result
from llmrec.store import VectorStore

KS = (1, 3, 5, 10)


def score(ranked: list[str], gold: set[str]) -> dict[str, float]:
    out = {}
    for k in KS:
        out[f"recall_all@{k}"] = recall_all_at(ranked, gold, k)
        out[f"recall_any@{k}"] = recall_any_at(ranked, gold, k)
    for k in (5, 10):
        out[f"ndcg@{k}"] = ndcg_at(ranked, gold, k)
    return out


def aggregate(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if k not in ("category",)]
    overall = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    per_cat = {}
    for c, name in CATEGORIES.items():
        sub = [r for r in rows if r["category"] == c]
        if sub:
            per_cat[name] = {"n": len(sub), **{k: float(np.mean([r[k] for r in sub])) for k in keys}}
    return {"n": len(rows), "overall": overall, "per_category": per_cat}


def plot(results: dict, split: str, path: Path) -> None:
    """recall_all@5 and recall_any@5 of every method, best first."""
    plt = pyplot()

    names = sorted(results, key=lambda m: results[m]["overall"]["recall_all@5"])
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(names) + 1.2))
    ax.barh(y - 0.2, [results[m]["overall"]["recall_all@5"] for m in names], 0.4, label="recall_all@5")
    ax.barh(y + 0.2, [results[m]["overall"]["recall_any@5"] for m in names], 0.4, label="recall_any@5")
    ax.set_yticks(y, names)
    ax.set_xlim(0, 1)
    ax.set_title(f"LoCoMo session retrieval ({split} conversations, MiniLM)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(data_root() / "locomo"))
    ap.add_argument("--split", choices=["dev", "heldout", "all"], default="dev")
    ap.add_argument("--random-trials", type=int, default=50)
    ap.add_argument("--out", default=None)
    ap.add_argument("--no-digest", action="store_true", help="skip the LLM summary / keywords units")
    ap.add_argument("--methods", nargs="+", default=None, help="only these methods (and what they backfill from)")
    ap.add_argument("--llm-dtype", choices=["float32", "bfloat16"], default="bfloat16")
    a = ap.parse_args()
    exp = load_memory_experiment("memory_locomo")
    ids = {"dev": DEV_CONVERSATIONS, "heldout": HELDOUT_CONVERSATIONS, "all": None}[a.split]
    convs = load_locomo(a.data, ids)
    embedder = default_embedder(cache_path=str(llmrec_home() / "embeddings.sqlite"))
    only = None
    if a.methods:
        only = sorted(set(a.methods) | {exp.methods[m].backfill for m in a.methods if exp.methods[m].backfill})
    rng = np.random.default_rng(0)
    malformed, no_gold = 0, 0
    add_units, add_seconds, latencies = 0, 0.0, []
    digest_seconds, digested = 0.0, 0
    digester = None
    if not a.no_digest and any(m.digest for m in exp.methods.values()):
        llm = CachedLLM(make_llm(LLMConfig(dtype=a.llm_dtype)), llmrec_home() / "generations.sqlite")
        digester = SessionDigester(llm)
    with tempfile.TemporaryDirectory() as tmp:
        memory = Memory(VectorStore(Path(tmp) / "store"), embedder, digester=digester)
        retrievers = build_retrievers(memory, exp, digest=digester is not None, only=only)
        # a method is ranked after the one it backfills from
        order = sorted(retrievers, key=lambda m: exp.methods[m].backfill is not None)
        rows = {m: [] for m in [*order, "random"]}
        paths = {m: {} for m in order if exp.methods[m].retriever == "rfmem"}
        for conv in tqdm(convs, desc="conversations"):
            user = conv.sample_id
            t = time.perf_counter()
            add_units += add_conversation(memory, conv)
            add_seconds += time.perf_counter() - t
            if digester is not None:  # LLM calls: timed apart from adds and searches
                t = time.perf_counter()
                digested += memory.consolidate(user, progress=True)
                digest_seconds += time.perf_counter() - t
            sessions = [str(s.index) for s in conv.sessions]
            for qa in conv.qa:
                malformed += len(qa.bad_evidence)
                gold = {str(s) for s in qa.gold_sessions}
                if not gold:
                    no_gold += 1
                    continue
                ranked_by: dict[str, list[str]] = {}
                for name in order:
                    method = exp.methods[name]
                    t = time.perf_counter()
                    k = method.k or max(1, memory.store.count(namespace(user)))
                    hits = retrievers[name].retrieve(user, qa.question, k)
                    latencies.append(time.perf_counter() - t)
                    if name in paths and hits:
                        p = hits[0].metadata["rfmem_path"]
                        paths[name][p] = paths[name].get(p, 0) + 1
                    ranked_by[name] = rank_sessions(hits, sessions, ranked_by.get(method.backfill))
                    rows[name].append({"category": qa.category, **score(ranked_by[name], gold)})
                trials = [score(list(rng.permutation(sessions)), gold) for _ in range(a.random_trials)]
                rows["random"].append({"category": qa.category,
                                       **{k: float(np.mean([t_[k] for t_ in trials])) for k in trials[0]}})
    results = {m: aggregate(r) for m, r in rows.items()}
    for m, r in results.items():
        o = r["overall"]
        print(f"{m:15s} n={r['n']} recall_all@5={o['recall_all@5']:.3f} recall_any@5={o['recall_any@5']:.3f} "
              f"ndcg@5={o['ndcg@5']:.3f} recall_all@10={o['recall_all@10']:.3f}")
    out = Path(a.out or Path("eval") / "results" / f"memory_locomo_{a.split}.json")
    write_result(out, {
        "split": a.split, "conversations": [c.sample_id for c in convs], "embedder": embedder.model_id,
        "malformed_evidence_ids": malformed, "questions_without_gold_session_excluded": no_gold,
        "add_units_per_second": add_units / add_seconds,
        "digest": None if digester is None else {
            "llm": digester.model_id, "dtype": a.llm_dtype, "sessions": digested, "seconds": digest_seconds,
            "cache_hits": digester.llm.hits, "cache_misses": digester.llm.misses},
        "rfmem_paths": paths, "methods": {m: exp.methods[m].model_dump() for m in order},
        "search_latency_ms_p50": float(np.percentile(np.array(latencies) * 1000, 50)),
        "search_latency_ms_p95": float(np.percentile(np.array(latencies) * 1000, 95)),
        "results": results,
    }, config={**vars(a), "methods": {m: exp.methods[m].model_dump() for m in order}}, seeds=[0])
    plot(results, a.split, out.with_suffix(".png"))
    print("wrote", out, "and", out.with_suffix(".png"))


if __name__ == "__main__":
    main()
