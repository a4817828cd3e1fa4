"""MemGAS's optional LLM filtering stage on LoCoMo: how much context it removes and how much of the gold
answer survives.

    python eval/memory_filter.py [--questions 80] [--llm-dtype bfloat16]

Dev conversations only. For a seeded sample of answerable questions (categories 1-4), MemGAS (the hybrid
setting of eval/memory_locomo.py) retrieves the top-3 sessions; their text (summary, keywords when present,
turns; 1,500 characters per session) is the unfiltered context, and one LLM call per question (batched,
bundled SmolLM2 by default, generations cached in LLMREC_HOME/generations.sqlite) writes the filtered
context. Reported for both: context words, answer-token recall (share of the normalized gold answer's
tokens found in the context) and answer coverage (every answer token found). Writes
eval/results/memory_filter.json."""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from llmrec.config import data_root, llmrec_home
from llmrec.data.locomo import DEV_CONVERSATIONS, load_locomo
from llmrec.embed import default_embedder
from llmrec.experiments.memory import load_memory_experiment
from llmrec.lexical import normalize
from llmrec.llm import LLMConfig, make_llm
from llmrec.llm.cache import CachedLLM
from llmrec.memory import Memory
from llmrec.memory.locomo import add_conversation
from llmrec.memory.memgas import filter_memories
from llmrec.results import write_result
from llmrec.retrieval import make_retriever
from llmrec.store import VectorStore


def answer_recall(context: str, answer: str) -> float:
    ans = normalize(answer).split()
    ctx = set(normalize(context).split())
    return sum(t in ctx for t in ans) / len(ans) if ans else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(data_root() / "locomo"))
    ap.add_argument("--questions", type=int, default=80)
    ap.add_argument("--llm-dtype", choices=["float32", "bfloat16"], default="bfloat16")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path("eval") / "results" / "memory_filter.json"))
    a = ap.parse_args()
    convs = load_locomo(a.data, DEV_CONVERSATIONS)
    embedder = default_embedder(cache_path=str(llmrec_home() / "embeddings.sqlite"))
    llm = CachedLLM(make_llm(LLMConfig(dtype=a.llm_dtype)), llmrec_home() / "generations.sqlite")
    pool = [(c.sample_id, qa) for c in convs for qa in c.qa if qa.category in (1, 2, 3, 4) and qa.answer
            and qa.gold_sessions]
    sample = random.Random(a.seed).sample(pool, min(a.questions, len(pool)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        memory = Memory(VectorStore(Path(tmp) / "store"), embedder)
        for conv in tqdm(convs, desc="add"):
            add_conversation(memory, conv)
        setting = load_memory_experiment("memory_locomo").methods["memgas_hybrid"]
        mg = make_retriever("memgas", memory, {**setting.config, "with_text": True, "max_session_chars": 1500})
        hits = [mg.retrieve(user, qa.question, 3) for user, qa in sample]
        got = [("\n\n".join(h.text for h in hs), {h.session_id for h in hs}) for hs in hits]
        t = time.perf_counter()
        filtered = []
        for i in tqdm(range(0, len(sample), a.batch), desc="filter"):
            part = range(i, min(i + a.batch, len(sample)))
            filtered += filter_memories(llm, [sample[j][1].question for j in part], [got[j][0] for j in part])
        seconds = time.perf_counter() - t
    for (user, qa), (context, top), f in zip(sample, got, filtered):
        gold = {str(s) for s in qa.gold_sessions}
        rows.append({"conversation": user, "category": qa.category, "gold_in_top3": gold <= top,
                     "words": len(context.split()), "filtered_words": len(f.split()),
                     "answer_recall": answer_recall(context, qa.answer),
                     "filtered_answer_recall": answer_recall(f, qa.answer),
                     "covered": answer_recall(context, qa.answer) == 1.0,
                     "filtered_covered": answer_recall(f, qa.answer) == 1.0})
    summary = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k not in ("conversation", "category")}
    for k, v in summary.items():
        print(f"{k:24s} {v:.3f}")
    print("wrote", write_result(Path(a.out), {
        "conversations": list(DEV_CONVERSATIONS), "questions": len(rows), "seed": a.seed, "llm": llm.model_id,
        "dtype": a.llm_dtype, "filter_seconds": seconds, "cache_hits": llm.hits, "cache_misses": llm.misses,
        "summary": summary, "examples": [{"question": qa.question, "answer": qa.answer, "filtered": f}
                                         for (_, qa), f in list(zip(sample, filtered))[:5]]},
        config={**vars(a), "memgas": setting.model_dump()}, seeds=[a.seed]))


if __name__ == "__main__":
    main()
