"""The reranking job (``llmrec rerank train|eval`` and ``eval/rerank_benchmark.py``): a QA corpus ->
dense first stage (llmrec store, top 20) -> training groups (RADIO fused labels, retrieval-only labels,
or gold labels) -> fine-tuned cross-encoder -> ranking metrics and RAG answers on held-out queries."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from llmrec.config import StrictConfig, llmrec_home
from llmrec.data.qa import QACorpus, QAQuery, load_ares_nq, load_mtrag
from llmrec.embed import Embedder
from llmrec.lexical import exact_match, token_f1
from llmrec.metrics import mrr, ndcg_at, recall_at
from llmrec.io import write_json_atomic
from llmrec.llm.base import LLM, GenerationParams
from llmrec.prompts import load_prompt
from llmrec.rerank.base import Candidate, Reranker
from llmrec.rerank.cross_encoder import CrossEncoderConfig, CrossEncoderReranker
from llmrec.rerank.radio import (Group, GroupTrainConfig, RADIOConfig, TrainingQuery, build_groups, extract_rationales,
                                 likelihood_rationale_scores, save_groups, train_reranker)
from llmrec.store import StoreConfig, VectorStore

Labels = Literal["radio", "retrieval", "gold"]


class QADataConfig(StrictConfig):
    """Which QA corpora to load (ARES NQ, MT-RAG) and how to split their queries."""
    ares_path: str | None = None  # folder of nq_synthetic_queries.tsv
    mtrag_path: str | None = None  # folder of reference_subset_with_human_evaluations.json
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    seed: int = 0


def load_qa(config: QADataConfig) -> QACorpus:
    """The configured QA corpora, merged."""
    parts = []
    if config.ares_path:
        parts.append(load_ares_nq(config.ares_path))
    if config.mtrag_path:
        parts.append(load_mtrag(config.mtrag_path))
    if not parts:
        raise ValueError("data: give ares_path and/or mtrag_path")
    corpus = parts[0]
    for p in parts[1:]:
        corpus = corpus.merge(p)
    return corpus


class DenseFirstStage:
    """Every passage in an llmrec ``VectorStore`` (flat index, one namespace); ``retrieve`` = top-k by cosine."""

    def __init__(self, passages: dict[str, str], embedder: Embedder, path: str | Path | None = None) -> None:
        self.passages, self.embedder = passages, embedder
        self._tmp = None if path else tempfile.TemporaryDirectory(prefix="llmrec-first-stage-")
        self.store = VectorStore(path or self._tmp.name, StoreConfig(dim=embedder.dim))
        have = set(self.store.ids("passages")) if self.store.count("passages") else set()
        todo = [i for i in passages if i not in have]
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="first stage: embed passages", unit="passage", disable=not todo)
        for s in range(0, len(todo), 512):
            ids = todo[s : s + 512]
            self.store.add("passages", ids, [passages[i] for i in ids], embedder.encode([passages[i] for i in ids]))
            bar.update(len(ids))
        bar.close()

    def retrieve(self, queries: Sequence[str], k: int = 20) -> list[list[Candidate]]:
        vecs = self.embedder.encode(list(queries))
        return [[Candidate(h.id, h.text, h.score) for h in self.store.search("passages", v, k=k)] for v in vecs]


def training_queries(queries: Sequence[QAQuery], candidates: Sequence[list[Candidate]]) -> list[TrainingQuery]:
    """Training queries (id, question, first answer, candidates) from QA queries and their candidates."""
    return [TrainingQuery(q.id, q.question, q.answers[0] if q.answers else "", c) for q, c in zip(queries, candidates)]


def gold_groups(queries: Sequence[QAQuery], candidates: Sequence[list[Candidate]], passages: dict[str, str],
                config: RADIOConfig) -> list[Group]:
    """Reference labels: the gold passage as positive, the same negative ranks among the non-gold candidates."""
    out = []
    for q, cands in zip(queries, candidates):
        gold = set(q.gold)
        negs_pool = [c for c in cands if c.id not in gold]
        negs = [negs_pool[r - 2] for r in config.negative_ranks if 0 <= r - 2 < len(negs_pool)]
        if negs:
            out.append(Group(q.id, q.question, Candidate(q.gold[0], passages[q.gold[0]]), negs))
    return out


def make_groups(labels: Labels, queries: Sequence[QAQuery], candidates: Sequence[list[Candidate]], corpus: QACorpus,
                config: RADIOConfig, embedder: Embedder, llm: LLM | None = None, cache_dir: str | Path | None = None,
                progress: bool = True) -> list[Group]:
    """Training groups (a positive and negatives per query) under the chosen labels: RADIO rationales, retrieval
    scores or gold passages."""
    if labels == "gold":
        return gold_groups(queries, candidates, corpus.passages, config)
    tq = training_queries(queries, candidates)
    if labels == "retrieval":
        return build_groups(tq, config.model_copy(update={"alpha": 0.0}))
    if llm is None:
        raise ValueError("labels='radio': rationale extraction needs an LLM")
    where = cache_dir or llmrec_home() / "rationales"
    rationales = extract_rationales(llm, tq, where, config, progress)
    likelihoods = (likelihood_rationale_scores(llm, tq, rationales, where, config, progress=progress)
                   if config.rationale_scoring == "likelihood" else None)
    return build_groups(tq, config, embedder, rationales, likelihoods)


def ranking_metrics(ranked_ids: Sequence[list[str]], queries: Sequence[QAQuery]) -> dict[str, float]:
    """Recall@1/5, NDCG@5 and MRR of ranked passage ids against each query's gold passages."""
    rows = [(r, set(q.gold)) for r, q in zip(ranked_ids, queries)]
    return {"recall@1": float(np.mean([recall_at(r, g, 1) for r, g in rows])),
            "recall@5": float(np.mean([recall_at(r, g, 5) for r, g in rows])),
            "ndcg@5": float(np.mean([ndcg_at(r, g, 5) for r, g in rows])),
            "mrr": float(np.mean([mrr(r, g) for r, g in rows])), "n": len(rows)}


def rerank_all(reranker: Reranker | None, queries: Sequence[QAQuery], candidates: Sequence[list[Candidate]],
               progress: bool = False) -> tuple[list[list[Candidate]], list[float]]:
    """Reranked candidate lists (the first stage's order when ``reranker`` is None) and per-query latency (s)."""
    out, lat = [], []
    for q, c in zip(queries, candidates):
        t = time.perf_counter()
        out.append(list(c) if reranker is None else reranker.rerank(q.question, c))
        lat.append(time.perf_counter() - t)
    return out, lat


def answer_questions(llm: LLM, queries: Sequence[QAQuery], ranked: Sequence[list[Candidate]], top: int = 5,
                     words_per_passage: int = 60, max_new_tokens: int = 24) -> list[str]:
    """RAG answers from the top passages of each ranking, by the LLM."""
    tpl = load_prompt("rag_answer")
    msgs = []
    for q, r in zip(queries, ranked):
        docs = "\n".join(f"Doc {i + 1}: " + " ".join(c.text.split()[:words_per_passage]) for i, c in enumerate(r[:top]))
        msgs.append(tpl.messages({"documents": docs, "question": q.question}))
    return [g.text.strip() for g in llm.generate(msgs, GenerationParams(max_new_tokens=max_new_tokens))]


def answer_metrics(answers: Sequence[str], queries: Sequence[QAQuery]) -> dict[str, float]:
    """Token F1 and exact match of answers against the reference answers."""
    pairs = [(a, q.answers) for a, q in zip(answers, queries) if q.answers]
    return {"token_f1": float(np.mean([token_f1(a, refs) for a, refs in pairs])),
            "exact_match": float(np.mean([exact_match(a, refs) for a, refs in pairs])), "n": len(pairs)}



class RerankTrainJob(StrictConfig):
    """A reranker training job: data, labels, reranker, training settings and output folder."""
    data: QADataConfig
    labels: Labels = "radio"
    train_queries: int | None = None  # the first N training queries (None = all)
    first_stage_k: int = 20
    radio: RADIOConfig = RADIOConfig()
    train: GroupTrainConfig = GroupTrainConfig()
    reranker: CrossEncoderConfig = CrossEncoderConfig()
    out_dir: str = "runs/rerank"


def run_rerank_training(job: RerankTrainJob, embedder: Embedder, llm: LLM | None = None) -> dict:
    """Train one reranker; ``out_dir`` gets groups.jsonl, checkpoint/ (resume after a kill), model/, training.json."""
    out = Path(job.out_dir)
    corpus = load_qa(job.data)
    train = corpus.split(job.data.split, job.data.seed)[0][: job.train_queries]
    cands = DenseFirstStage(corpus.passages, embedder).retrieve([q.question for q in train], job.first_stage_k)
    groups = make_groups(job.labels, train, cands, corpus, job.radio, embedder, llm, cache_dir=out / "rationales",
                         progress=job.train.progress)
    out.mkdir(parents=True, exist_ok=True)
    save_groups(out / "groups.jsonl", groups)
    reranker = CrossEncoderReranker(job.reranker)
    info = train_reranker(reranker, groups, job.train, checkpoint_dir=out / "checkpoint")
    reranker.save(out / "model")
    result = {"labels": job.labels, "groups": len(groups), **info, "model_dir": str(out / "model")}
    write_json_atomic(out / "training.json", result)
    return result


def run_rerank_eval(reranker: Reranker | None, data: QADataConfig, embedder: Embedder, split: str = "test",
                    k: int = 20, limit: int | None = None) -> dict:
    """Recall / NDCG / MRR and latency of a reranker (or the first stage alone) on a split of the QA data."""
    corpus = load_qa(data)
    parts = dict(zip(("train", "dev", "test"), corpus.split(data.split, data.seed)))
    if split not in parts:
        raise ValueError(f"split: one of train, dev, test (got {split!r})")
    qs = parts[split][:limit]
    cands = DenseFirstStage(corpus.passages, embedder).retrieve([q.question for q in qs], k)
    ranked, lat = rerank_all(reranker, qs, cands)
    out = {"split": split, "queries": len(qs), **ranking_metrics([[c.id for c in r] for r in ranked], qs)}
    if reranker is None:  # the first stage's order: there is no reranking latency to report
        return {**out, "latency_ms_p50": None, "latency_ms_p95": None,
                "latency_note": "no reranker (--model-dir): first-stage order only"}
    return {**out, "latency_ms_p50": 1000 * float(np.percentile(lat, 50)),
            "latency_ms_p95": 1000 * float(np.percentile(lat, 95))}
