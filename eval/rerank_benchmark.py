"""RADIO reranking benchmark on ARES NQ-synthetic + MT-RAG passages (../shared/data).

    python eval/rerank_benchmark.py [--train-queries 600] [--epochs 2] [--answer-queries 120]
        [--backend openai --base-url URL --model NAME]   # rationales and answers from another LLM

Corpus: all ARES documents and MT-RAG passages (one closed corpus). Queries with a gold passage are split by
query 60/20/20 (seed 0) into train/dev/test. First stage: MiniLM dense retrieval over all passages (llmrec
store, top 20). Rerankers (cross-encoder initialised from the bundled MiniLM weights):
  base (no fine-tuning) | retrieval-labels (fine-tuned, labels = first-stage scores, same sampler) |
  RADIO (fine-tuned, labels = 0.5 rationale + 0.5 retrieval, rationales by the default LLM) |
  gold-labels (fine-tuned on the human relevance labels: a reference, not a baseline RADIO must beat).
Reports Recall@1/5, NDCG@5, MRR on dev and test, token F1 / EM of answers the default LLM writes from each
system's top 5 (first --answer-queries test queries), and reranking latency for 20 candidates.
Writes eval/results/rerank_benchmark.json and .png."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch


from llmrec.config import data_root
from llmrec.config import llmrec_home
from llmrec.embed import default_embedder
from llmrec.results import grouped_bars, pyplot, write_result
from llmrec.llm import LLMConfig, make_llm
from llmrec.rerank.base import BiEncoderReranker
from llmrec.rerank.cross_encoder import CrossEncoderConfig, CrossEncoderReranker
from llmrec.rerank.pipeline import (DenseFirstStage, QADataConfig, answer_metrics, answer_questions,
                                    load_qa, make_groups, ranking_metrics, rerank_all)
from llmrec.rerank.radio import GroupTrainConfig, RADIOConfig, train_reranker

SHARED = data_root()  # $LLMREC_DATA, else shared/data beside the checkout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-queries", type=int, default=600)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=6e-5)
    ap.add_argument("--max-length", type=int, default=160)
    ap.add_argument("--test-queries", type=int, default=None, help="evaluate on the first N test queries (default all)")
    ap.add_argument("--dev", action="store_true", help="also evaluate every system on the dev split")
    ap.add_argument("--answer-queries", type=int, default=120)
    ap.add_argument("--variants", nargs="+", default=["retrieval", "radio", "gold"])
    ap.add_argument("--backend", default="transformers")
    ap.add_argument("--model", default=None)
    ap.add_argument("--base-url", default=None)
    ap.add_argument("--work", default=str(llmrec_home() / "rerank_benchmark"))
    ap.add_argument("--out", default="eval/results/rerank_benchmark.json")
    a = ap.parse_args()
    for name in ("ares_nq_synthetic", "mtrag_human_eval"):
        if not (SHARED / name).exists():
            sys.exit(f"{SHARED / name} is missing: this benchmark needs the shared data")
    t_start = time.perf_counter()
    corpus = load_qa(QADataConfig(ares_path=str(SHARED / "ares_nq_synthetic"), mtrag_path=str(SHARED / "mtrag_human_eval")))
    train, dev, test = corpus.split((0.6, 0.2, 0.2), seed=0)
    train, test = train[: a.train_queries], test[: a.test_queries]
    print(f"{len(corpus.passages)} passages; queries train {len(train)} / dev {len(dev)} / test {len(test)}", flush=True)
    embedder = default_embedder(cache_path=str(llmrec_home() / "embeddings.sqlite"))
    first = DenseFirstStage(corpus.passages, embedder)
    splits = [("dev", dev), ("test", test)] if a.dev else [("test", test)]
    cands = {name: first.retrieve([q.question for q in qs], k=20) for name, qs in [("train", train), *splits]}
    llm = make_llm(LLMConfig(backend=a.backend, model=a.model, base_url=a.base_url, dtype="bfloat16"))
    radio_cfg = RADIOConfig()
    work = Path(a.work)
    systems = {"retriever only": None, "bi-encoder (MiniLM)": BiEncoderReranker(embedder)}
    torch.manual_seed(0)
    systems["base cross-encoder (untrained head)"] = CrossEncoderReranker(CrossEncoderConfig(max_length=a.max_length))
    training = {}
    for labels in a.variants:
        groups = make_groups(labels, train, cands["train"], corpus, radio_cfg, embedder, llm,
                             cache_dir=work / "rationales" / llm.model_id.replace("/", "_"))
        pos_is_gold = float(np.mean([g.positive.id in set(q.gold) for g, q in
                                     zip(groups, [q for q in train if q.id in {g.query_id for g in groups}])]))
        torch.manual_seed(0)
        rr = CrossEncoderReranker(CrossEncoderConfig(max_length=a.max_length))
        info = train_reranker(rr, groups, GroupTrainConfig(epochs=a.epochs, learning_rate=a.lr),
                              checkpoint_dir=work / f"ckpt-{labels}-{a.epochs}-{a.lr}-{len(train)}")
        training[labels] = {**info, "groups": len(groups), "positive_is_gold": pos_is_gold}
        print(labels, training[labels], flush=True)
        systems[{"retrieval": "retrieval-labels fine-tuned", "radio": "RADIO fine-tuned",
                 "gold": "gold-labels fine-tuned (reference)"}[labels]] = rr
    results = {}
    for name, rr in systems.items():
        res = {}
        for split, qs in splits:
            ranked, lat = rerank_all(rr, qs, cands[split])
            res[split] = ranking_metrics([[c.id for c in r] for r in ranked], qs)
            if split == "test":
                res["latency_ms_20_candidates"] = {"p50": 1000 * float(np.percentile(lat, 50)),
                                                   "p95": 1000 * float(np.percentile(lat, 95))}
                n = a.answer_queries
                answers = answer_questions(llm, qs[:n], ranked[:n])
                res["answers"] = answer_metrics(answers, qs[:n])
                res["answer_examples"] = [{"question": q.question, "answer": x, "gold": q.answers[:1]}
                                          for q, x in zip(qs[:3], answers[:3])]
        results[name] = res
        print(f"{name:38s} test R@1 {res['test']['recall@1']:.3f} R@5 {res['test']['recall@5']:.3f} "
              f"NDCG@5 {res['test']['ndcg@5']:.3f} MRR {res['test']['mrr']:.3f} | answers F1 "
              f"{res['answers']['token_f1']:.3f} EM {res['answers']['exact_match']:.3f} | "
              f"p50 {res['latency_ms_20_candidates']['p50']:.1f} ms", flush=True)
    payload = {"passages": len(corpus.passages), "queries": {"train": len(train), "dev": len(dev), "test": len(test)},
               "first_stage": "all-MiniLM-L6-v2 dense top 20 (llmrec VectorStore, flat)", "llm": llm.model_id,
               "radio": radio_cfg.model_dump(), "settings": vars(a), "training": training, "results": results,
               "seconds": time.perf_counter() - t_start}
    out = write_result(Path(a.out), payload, config=vars(a))
    plot(results, out.with_suffix(".png"))
    print("wrote", out)


def plot(results: dict, path: Path) -> None:
    plt = pyplot()

    metrics = ["recall@1", "recall@5", "ndcg@5", "mrr"]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    grouped_bars(ax, metrics, {n: [r["test"][m] for m in metrics] for n, r in results.items()})
    ax.set_ylim(0, 1)
    ax.set_title("Reranking on held-out queries (ARES NQ + MT-RAG passages, top-20 dense candidates)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
