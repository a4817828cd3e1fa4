"""RADIO: rationale-distilled reranker training (Jia et al., ACL Findings 2025).

1. ``extract_rationales``: the LLM explains why the gold answer answers the question (training-time only:
   it sees the gold answer), through the shared cached, resumable extraction job.
2. ``rationale_scores``: cosine between embed(question + answer + rationale) and each candidate; or, with
   ``rationale_scoring: likelihood``, ``likelihood_rationale_scores``: the LLM's mean log-probability of
   "answer. rationale" as its reply to each candidate passage and the question (nothing embedded: the
   candidate that makes the rationale most likely is the one that supports it).
3. ``fuse``: per-query min-max of rationale and retrieval scores, mixed ``alpha`` / ``1 - alpha`` (0.5).
4. ``sample_group``: the top fused candidate is the positive; candidates at ranks 4, 5, 7, 10, 14, 19 of the
   top 20 are the negatives (ranks 2-3 skipped as a false-negative margin).
5. ``train_reranker``: group-wise softmax cross-entropy (InfoNCE, positive at index 0) over 1 + 6 pairs,
   AdamW, checkpointed so a killed run resumes where it stopped.
Inference (``Reranker.rerank``) sees only the query and candidates: no rationale, no answer."""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, Sequence

import numpy as np
import torch
from pydantic import Field
from tqdm.auto import tqdm

from llmrec.config import StrictConfig
from llmrec.embed import Embedder
from llmrec.io import load_checkpoint, save_checkpoint
from llmrec.jobs import KnowledgeRequest, extract, load_knowledge
from llmrec.llm.base import LLM, GenerationParams
from llmrec.metrics import minmax
from llmrec.prompts import load_prompt
from llmrec.rerank.base import Candidate, check_candidates
from llmrec.io import atomic_open


class RADIOConfig(StrictConfig):
    """RADIO settings: rationale generation, fusion weight alpha, rank-pattern sampling of negatives."""
    alpha: float = 0.5  # weight of the rationale score in the fusion (0 = retrieval scores only)
    truncate: int = 20  # candidates kept after fusion
    negative_ranks: list[int] = [4, 5, 7, 10, 14, 19]  # 1-based ranks of the negatives in the fused top list
    rationale_tokens: int = 96
    rationale_prompt: str = "rationale"
    rationale_scoring: Literal["embedding", "likelihood"] = "embedding"
    likelihood_prompt: str = "rationale_likelihood"
    passage_words: int = Field(default=100, ge=10)  # passages clipped for likelihood scoring


@dataclass(frozen=True)
class TrainingQuery:
    """A query with its answer and first-stage candidates, as RADIO trains on it."""
    id: str
    question: str
    answer: str
    candidates: list[Candidate]  # first-stage candidates with retrieval scores


@dataclass(frozen=True)
class Group:
    """One training group: a query, its positive passage and its negatives."""
    query_id: str
    query: str
    positive: Candidate
    negatives: list[Candidate]


def check_training_queries(queries: Sequence[TrainingQuery]) -> None:
    """Validate training queries (ids present and unique, candidates well formed); errors name the query."""
    seen: set[str] = set()
    for n, q in enumerate(queries):
        if not q.id:
            raise ValueError(f"queries[{n}].id: missing id")
        if q.id in seen:
            raise ValueError(f"queries[{n}].id: duplicated query id {q.id!r}")
        seen.add(q.id)
        if not isinstance(q.answer, str) or not q.answer.strip():
            raise ValueError(f"queries[{n}] (id {q.id!r}).answer: missing gold answer (RADIO needs one per "
                             "training query)")
        check_candidates(q.question, q.candidates, where=f"queries[{n}] (id {q.id!r}).candidates")


def extract_rationales(llm: LLM, queries: Sequence[TrainingQuery], cache_dir: str | Path,
                       config: RADIOConfig | None = None, progress: bool = True) -> dict[str, str]:
    """Query id -> rationale text (cached JSONL shard ``cache_dir/rationale.jsonl``; a re-run costs nothing)."""

    c = config or RADIOConfig()
    check_training_queries(queries)
    reqs = [KnowledgeRequest(q.id, {"question": q.question, "answer": q.answer}) for q in queries]
    extract(llm, "rationale", c.rationale_prompt, reqs, cache_dir, GenerationParams(max_new_tokens=c.rationale_tokens),
            progress=progress)
    texts = load_knowledge(cache_dir, "rationale")
    return {q.id: texts.get(q.id, "") for q in queries}


def fuse(rationale: np.ndarray, retrieval: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Rationale and retrieval scores min-max scaled and mixed: ``alpha * rationale + (1 - alpha) * retrieval``."""
    if len(rationale) != len(retrieval):
        raise ValueError(f"scores: {len(rationale)} rationale scores vs {len(retrieval)} retrieval scores")
    return alpha * minmax(rationale) + (1 - alpha) * minmax(retrieval)


def rationale_text(question: str, answer: str, rationale: str) -> str:
    """The text a rationale is embedded as (question, answer and the LLM's rationale)."""
    return f"{question}. {answer}. {rationale}".strip()


def rationale_scores(embedder: Embedder, question: str, answer: str, rationale: str,
                     texts: Sequence[str]) -> np.ndarray:
    """Cosine similarity of each passage to the rationale text."""
    vecs = embedder.encode([rationale_text(question, answer, rationale), *texts])
    return vecs[1:] @ vecs[0]


def likelihood_rationale_scores(llm: LLM, queries: Sequence[TrainingQuery], rationales: dict[str, str],
                                cache_dir: str | Path, config: RADIOConfig | None = None,
                                batch_size: int = 8, progress: bool = True) -> dict[str, np.ndarray]:
    """Query id -> the LLM's log-probability of " answer. rationale" after each candidate passage
    (clipped to ``passage_words``) and the question (``likelihood_prompt``; needs ``llm.score_options``).
    Cached per query in ``cache_dir/rationale_likelihood.jsonl`` (appended as batches finish, keyed by a hash
    of the model, prompt, texts and candidates), so a killed run resumes and a re-run costs nothing."""
    import hashlib

    c = config or RADIOConfig()
    if getattr(llm, "option_scoring", None) != "sequence":
        raise TypeError(f"{llm.model_id}: likelihood rationale scoring needs the log-probability of a whole "
                        "sequence (score_options over full sequences: the transformers backend)")
    template = load_prompt(c.likelihood_prompt)
    path = Path(cache_dir) / "rationale_likelihood.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    cached: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill: that query is scored again
                continue
            cached[row["key"]] = row
    out: dict[str, np.ndarray] = {}
    todo = []
    for q in queries:
        target = f" {q.answer.strip()}. {rationales.get(q.id, '').strip()}".rstrip(". ") + "."
        key = hashlib.sha256(json.dumps([llm.model_id, c.likelihood_prompt, c.passage_words, q.question, target,
                                         [x.id for x in q.candidates]]).encode()).hexdigest()[:20]
        if key in cached:
            out[q.id] = np.array(cached[key]["scores"])
        else:
            todo.append((q, target, key))
    with open(path, "a", encoding="utf-8") as f:
        for q, target, key in tqdm(todo, desc="rationale likelihood", unit="query", disable=not progress):
            prompts = [template.messages({"passage": " ".join(x.text.split()[: c.passage_words]),
                                          "question": q.question}) for x in q.candidates]
            # the target is the same for every candidate of the query, so its summed log-probability orders
            # them as the per-token mean would (fuse() min-max scales per query)
            lp = llm.score_options(prompts, [target], prefix="Answer:", batch_size=batch_size)[:, 0]
            out[q.id] = lp
            f.write(json.dumps({"key": key, "id": q.id, "scores": [float(v) for v in lp]}) + "\n")
            f.flush()
    return out


def sample_group(ranked: Sequence[Candidate], negative_ranks: Sequence[int], truncate: int = 20) -> tuple[Candidate, list[Candidate]]:
    """Rank 1 is the positive; the negatives are the candidates at the given 1-based ranks (ranks past the
    end of a short list are skipped)."""
    top = list(ranked[:truncate])
    if len(top) < 2:
        raise ValueError(f"candidates: need at least 2 to form a group, got {len(top)}")
    negs = [top[r - 1] for r in negative_ranks if 1 < r <= len(top)]
    if not negs:
        raise ValueError(f"negative_ranks: none of {list(negative_ranks)} falls inside a list of {len(top)}")
    return top[0], negs


def build_groups(queries: Sequence[TrainingQuery], config: RADIOConfig, embedder: Embedder | None = None,
                 rationales: dict[str, str] | None = None,
                 likelihoods: dict[str, np.ndarray] | None = None) -> list[Group]:
    """Training groups from fused scores (``alpha > 0`` needs rationales and an embedder, or with
    ``rationale_scoring: likelihood`` the ``likelihood_rationale_scores``) or, with ``alpha == 0``, from the
    retrieval scores alone (the relevance-only baseline, same sampler)."""
    check_training_queries(queries)
    groups = []
    for q in queries:
        ret = np.array([c.score for c in q.candidates])
        if config.alpha > 0:
            if config.rationale_scoring == "likelihood":
                if likelihoods is None or q.id not in likelihoods:
                    raise ValueError(f"rationale_scoring=likelihood: no likelihood scores for query {q.id!r}")
                rat = np.asarray(likelihoods[q.id])
            else:
                if embedder is None or rationales is None:
                    raise ValueError("alpha > 0: rationale scores need an embedder and rationales")
                rat = rationale_scores(embedder, q.question, q.answer, rationales.get(q.id, ""),
                                       [c.text for c in q.candidates])
            fused = fuse(rat, ret, config.alpha)
        else:
            fused = minmax(ret)
        order = np.argsort(-fused, kind="stable")
        pos, negs = sample_group([q.candidates[i] for i in order], config.negative_ranks, config.truncate)
        groups.append(Group(q.id, q.question, pos, negs))
    return groups


class PairScorer(Protocol):
    """What group training needs from a reranker: its trainable module and (query, text) logits."""
    def trainable(self) -> torch.nn.Module:
        """The module whose parameters group training updates."""

    def pair_logits(self, queries: Sequence[str], texts: Sequence[str]) -> torch.Tensor:
        """A differentiable logit per (query, text) pair."""


class GroupTrainConfig(StrictConfig):
    """Group InfoNCE training settings: epochs, learning rate, batch, temperature, checkpointing."""
    epochs: int = 2
    groups_per_step: int = 4
    group_size: int = 7  # 1 positive + 6 negatives (negatives repeat when a group has fewer)
    learning_rate: float = 6e-5
    weight_decay: float = 0.01
    temperature: float = 1.0
    seed: int = 0
    checkpoint_every: int = 20  # optimizer steps
    progress: bool = True


def _group_texts(g: Group, size: int, rng: random.Random) -> list[str]:
    negs = list(g.negatives)
    while len(negs) < size - 1:
        negs.append(rng.choice(g.negatives))
    if len(negs) > size - 1:
        negs = rng.sample(negs, size - 1)
    return [g.positive.text] + [n.text for n in negs]


def train_reranker(scorer: PairScorer, groups: Sequence[Group], config: GroupTrainConfig | None = None,
                   checkpoint_dir: str | Path | None = None) -> dict:
    """Listwise InfoNCE over groups; with ``checkpoint_dir`` the run saves every ``checkpoint_every`` steps
    (model, optimizer, step) and a restarted run continues from the last checkpoint with the same order."""
    c = config or GroupTrainConfig()
    if not groups:
        raise ValueError("groups: no training groups")
    model = scorer.trainable()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=c.learning_rate,
                            weight_decay=c.weight_decay)
    steps_per_epoch = -(-len(groups) // c.groups_per_step)
    total = steps_per_epoch * c.epochs
    step, losses, resumed = 0, [], None
    ckpt = Path(checkpoint_dir) / "reranker.pt" if checkpoint_dir else None
    if ckpt is not None:
        saved = load_checkpoint(ckpt, model, opt)
        if saved is not None:
            step, losses, resumed = saved["step"], saved["losses"], saved["step"]
    t0 = time.perf_counter()
    bar = tqdm(total=total, initial=step, desc="rerank train", unit="step", disable=not c.progress)
    model.train()
    while step < total:
        epoch, k = divmod(step, steps_per_epoch)
        order = list(range(len(groups)))
        random.Random(c.seed * 1000 + epoch).shuffle(order)
        batch = [groups[i] for i in order[k * c.groups_per_step : (k + 1) * c.groups_per_step]]
        rng = random.Random(c.seed * 1_000_003 + step)
        queries, texts = [], []
        for g in batch:
            queries += [g.query] * c.group_size
            texts += _group_texts(g, c.group_size, rng)
        logits = scorer.pair_logits(queries, texts).view(len(batch), c.group_size) / c.temperature
        loss = torch.nn.functional.cross_entropy(logits, torch.zeros(len(batch), dtype=torch.long,
                                                                     device=logits.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        if ckpt is not None and (step % c.checkpoint_every == 0 or step == total):
            save_checkpoint(ckpt, model, opt, {"step": step, "losses": losses})
    bar.close()
    model.eval()
    w = max(1, min(20, len(losses) // 4))  # loss averaged over the first / last quarter (at most 20 steps)
    return {"steps": step, "resumed_from_step": resumed, "final_loss": float(np.mean(losses[-w:])),
            "first_loss": float(np.mean(losses[:w])), "seconds": time.perf_counter() - t0}


def save_groups(path: str | Path, groups: Sequence[Group]) -> None:
    """Groups in FlagEmbedding's reranker format, one JSON object per line: {query, pos: [...], neg: [...]}."""
    with atomic_open(path, "w") as f:
        for g in groups:
            f.write(json.dumps({"query_id": g.query_id, "query": g.query, "pos": [g.positive.text],
                                "pos_id": [g.positive.id], "neg": [n.text for n in g.negatives],
                                "neg_id": [n.id for n in g.negatives]}) + "\n")
