"""The RADIO reranking experiment (kind ``rerank``; ``configs/experiments/rerank_radio.yaml``).

Corpus: every ARES NQ-synthetic document and MT-RAG passage (one closed corpus). Queries with a gold passage
are split by query (``data.split``, ``data.seed``) into train / dev / test. First stage: MiniLM dense retrieval
over all passages (llmrec store, top ``first_stage_k``). Rerankers (cross-encoders initialised from the bundled
MiniLM weights): base (no fine-tuning) | retrieval-labels (fine-tuned, labels = first-stage scores, same
sampler) | RADIO (labels = alpha * rationale + (1 - alpha) * retrieval, rationales by ``llm``) | gold-labels
(fine-tuned on the human relevance labels: a reference, not a baseline RADIO must beat). Reports Recall@1/5,
NDCG@5, MRR (test, and dev with ``dev: true``), token F1 / EM of answers ``llm`` writes from each system's top 5
(first ``answer_queries`` test queries), and reranking latency for the candidates of one query."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from llmrec.config import StrictConfig, llmrec_home
from llmrec.embed import default_embedder
from llmrec.errors import DataError
from llmrec.experiments.kinds import ExperimentKind, validate
from llmrec.experiments.runner import Runner
from llmrec.io import settings_key
from llmrec.llm import LLMConfig, make_llm
from llmrec.rerank.base import BiEncoderReranker
from llmrec.rerank.cross_encoder import CrossEncoderConfig, CrossEncoderReranker
from llmrec.rerank.pipeline import (DenseFirstStage, QADataConfig, answer_metrics, answer_questions, load_qa,
                                    make_groups, ranking_metrics, rerank_all)
from llmrec.rerank.radio import GroupTrainConfig, RADIOConfig, train_reranker
from llmrec.results import grouped_bars, pyplot

LabelSource = Literal["retrieval", "radio", "radio_likelihood", "gold"]
SYSTEM_NAMES = {"retrieval": "retrieval-labels fine-tuned", "radio": "RADIO fine-tuned",
                "radio_likelihood": "RADIO (likelihood rationales) fine-tuned",
                "gold": "gold-labels fine-tuned (reference)"}


class RerankExperiment(StrictConfig):
    """The RADIO experiment: QA data, first stage, LLM for rationales, the label variants and training settings."""
    name: str
    output: str | None = None  # default eval/results/<name>.json
    data: QADataConfig = QADataConfig()
    first_stage_k: int = 20
    train_queries: int | None = None  # the first N training queries (None: all)
    test_queries: int | None = None  # evaluate on the first N test queries (None: all)
    dev: bool = False  # also evaluate every system on the dev split
    answer_queries: int = 120
    variants: list[LabelSource] = ["retrieval", "radio", "gold"]
    training: GroupTrainConfig = GroupTrainConfig()
    max_length: int = 160
    seeds: list[int] = Field([0], min_length=1)  # torch seeds of the cross-encoders' initialisation and
    # training order: every fine-tuned system is trained once per seed; test metrics are the mean over seeds
    # (per seed kept); answers are written from the first seed's rankings only
    llm: LLMConfig = LLMConfig(dtype="bfloat16")
    radio: RADIOConfig = RADIOConfig()
    work_dir: str | None = None  # rationales + checkpoints; default LLMREC_HOME/rerank_benchmark


def _load(raw: dict, path: Path) -> RerankExperiment:
    return validate(RerankExperiment, raw, path)


def run_rerank(cfg: RerankExperiment, out: str | Path | None = None) -> dict:
    """Train every label variant and evaluate it on the held-out queries; writes the result JSON and plot."""
    for field, where in (("data.ares_path", cfg.data.ares_path), ("data.mtrag_path", cfg.data.mtrag_path)):
        if where and not Path(where).exists():
            raise DataError(f"{field}: {where} is missing (set LLMREC_DATA or the path)")
    t_start = time.perf_counter()
    corpus = load_qa(cfg.data)
    train, dev, test = corpus.split(cfg.data.split, seed=cfg.data.seed)
    train, test = train[: cfg.train_queries], test[: cfg.test_queries]
    print(f"{len(corpus.passages)} passages; queries train {len(train)} / dev {len(dev)} / test {len(test)}", flush=True)
    embedder = default_embedder(cache_path=str(llmrec_home() / "embeddings.sqlite"))
    first = DenseFirstStage(corpus.passages, embedder)
    splits = [("dev", dev), ("test", test)] if cfg.dev else [("test", test)]
    cands = {name: first.retrieve([q.question for q in qs], k=cfg.first_stage_k) for name, qs in [("train", train), *splits]}
    llm = make_llm(cfg.llm)
    work = Path(cfg.work_dir).expanduser() if cfg.work_dir else llmrec_home() / "rerank_benchmark"
    fixed = {"retriever only": None, "bi-encoder (MiniLM)": BiEncoderReranker(embedder)}
    torch.manual_seed(cfg.seeds[0])
    fixed["base cross-encoder (untrained head)"] = CrossEncoderReranker(CrossEncoderConfig(max_length=cfg.max_length))
    training: dict = {}
    t = cfg.training
    groups_by = {}
    for labels in cfg.variants:
        radio_cfg = (cfg.radio.model_copy(update={"rationale_scoring": "likelihood"}) if labels == "radio_likelihood"
                     else cfg.radio)
        groups = make_groups("radio" if labels.startswith("radio") else labels, train, cands["train"], corpus,
                             radio_cfg, embedder, llm, cache_dir=work / "rationales" / llm.model_id.replace("/", "_"))
        in_groups = {g.query_id for g in groups}
        pos_is_gold = float(np.mean([g.positive.id in set(q.gold) for g, q in
                                     zip(groups, [q for q in train if q.id in in_groups])]))
        groups_by[labels] = groups
        training[labels] = {"groups": len(groups), "positive_is_gold": pos_is_gold, "per_seed": {}}
        print(labels, "positive is a gold passage in", f"{pos_is_gold:.3f}", "of the groups", flush=True)
    results: dict = {}

    def evaluate(name: str, rr, seed: int | None, answers: bool) -> dict:
        res = {}
        for split, qs in splits:
            ranked, lat = rerank_all(rr, qs, cands[split])
            res[split] = ranking_metrics([[c.id for c in r] for r in ranked], qs)
            if split == "test":
                res[f"latency_ms_{cfg.first_stage_k}_candidates"] = {"p50": 1000 * float(np.percentile(lat, 50)),
                                                                     "p95": 1000 * float(np.percentile(lat, 95))}
                if answers:
                    n = cfg.answer_queries
                    texts = answer_questions(llm, qs[:n], ranked[:n])
                    res["answers"] = answer_metrics(texts, qs[:n])
                    res["answer_examples"] = [{"question": q.question, "answer": x, "gold": q.answers[:1]}
                                              for q, x in zip(qs[:3], texts[:3])]
        print(f"{name:38s} {'' if seed is None else f'seed {seed} '}test R@1 {res['test']['recall@1']:.3f} "
              f"R@5 {res['test']['recall@5']:.3f} NDCG@5 {res['test']['ndcg@5']:.3f} MRR {res['test']['mrr']:.3f}"
              + (f" | answers F1 {res['answers']['token_f1']:.3f} EM {res['answers']['exact_match']:.3f}"
                 if "answers" in res else ""), flush=True)
        return res

    # every system (and every fine-tuned one per seed) is one item of the runner: a killed run resumes
    runner = Runner(cfg, settings_key(cfg, exclude=("name", "output", "seeds", "variants", "work_dir")), out)
    for name, rr in fixed.items():
        results[name] = runner.cached({"label": name}, lambda name=name, rr=rr: evaluate(name, rr, None, answers=True))
    for labels in cfg.variants:
        runs = []
        for i, seed in enumerate(cfg.seeds):
            def fine_tuned(labels=labels, seed=seed, first=i == 0) -> dict:
                torch.manual_seed(seed)
                rr = CrossEncoderReranker(CrossEncoderConfig(max_length=cfg.max_length))
                ckpt = work / f"ckpt-{labels}-{t.epochs}-{t.learning_rate}-{len(train)}-s{seed}"
                info = train_reranker(rr, groups_by[labels], t.model_copy(update={"seed": seed}), checkpoint_dir=ckpt)
                return {"training": info, "metrics": evaluate(SYSTEM_NAMES[labels], rr, seed, answers=first)}

            got = runner.cached({"label": SYSTEM_NAMES[labels], "seed": seed, "answers": i == 0}, fine_tuned)
            training[labels]["per_seed"][seed] = got["training"]
            runs.append(got["metrics"])
        results[SYSTEM_NAMES[labels]] = seed_summary(runs, cfg.seeds)
    payload = {"passages": len(corpus.passages), "queries": {"train": len(train), "dev": len(dev), "test": len(test)},
               "first_stage": f"all-MiniLM-L6-v2 dense top {cfg.first_stage_k} (llmrec VectorStore, flat)",
               "llm": llm.model_id, "training": training, "results": results, "seconds": time.perf_counter() - t_start}
    path = runner.write(payload, plot=lambda png: plot(results, png), config=cfg.model_dump(mode="json"))
    return {"output": str(path), "results": results}


def seed_summary(runs: list[dict], seeds: list[int]) -> dict:
    """Mean of each split's ranking metrics over the seeds, their standard deviation, the first seed's answers
    and latency, and every seed's own metrics."""
    out: dict = {"seeds": list(seeds), "per_seed": runs}
    for split in [k for k in runs[0] if isinstance(runs[0][k], dict) and "ndcg@5" in runs[0][k]]:
        keys = [k for k in runs[0][split] if k != "n"]
        out[split] = {**{k: float(np.mean([r[split][k] for r in runs])) for k in keys}, "n": runs[0][split]["n"]}
        out[f"{split}_std"] = {k: float(np.std([r[split][k] for r in runs])) for k in keys}
    for k in runs[0]:
        if k not in out and not (isinstance(runs[0][k], dict) and "ndcg@5" in runs[0][k]):
            out[k] = runs[0][k]
    return out


def plot(results: dict, path: Path) -> None:
    """Grouped bars of recall@1/5, NDCG@5 and MRR per reranker (0-1 axis)."""
    plt = pyplot()
    metrics = ["recall@1", "recall@5", "ndcg@5", "mrr"]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    grouped_bars(ax, metrics, {n: [r["test"][m] for m in metrics] for n, r in results.items()},
                 ylabel="score on test queries (0-1)")
    ax.set_ylim(0, 1)
    ax.set_title("Reranking on held-out queries (ARES NQ + MT-RAG passages, dense first-stage candidates)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")


KIND = ExperimentKind(load=_load, run=run_rerank)
