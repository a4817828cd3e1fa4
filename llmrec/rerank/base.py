"""The ``Reranker`` seam: ``rerank(query, candidates, k) -> candidates`` re-scored and re-sorted.

A candidate carries its first-stage (retrieval) score; a reranker replaces it by its own and keeps the
first-stage score in ``retrieval_score``. Input checks name the problem: an empty candidate list or a
duplicated id is an error, never a silent ranking."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from llmrec.embed import Embedder


@dataclass(frozen=True)
class Candidate:
    """A passage to rerank: id, text and the first-stage score."""
    id: str
    text: str
    score: float = 0.0
    retrieval_score: float | None = None


@runtime_checkable
class Reranker(Protocol):
    """The reranking protocol: ``rerank(query, candidates, k) -> candidates`` best first."""
    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """A relevance score per text (higher is better)."""

    def rerank(self, query: str, candidates: Sequence[Candidate], k: int | None = None) -> list[Candidate]:
        """The candidates best first (the top ``k``), with the reranker's scores."""


def check_candidates(query: str, candidates: Sequence[Candidate], where: str = "candidates") -> None:
    """Validate a query and its candidates (text, unique ids); errors name ``where``."""
    if not isinstance(query, str) or not query.strip():
        raise ValueError("query: empty query")
    if not candidates:
        raise ValueError(f"{where}: empty candidate list for query {query[:60]!r}")
    seen: set[str] = set()
    for n, c in enumerate(candidates):
        if c.id in seen:
            raise ValueError(f"{where}[{n}].id: duplicated id {c.id!r} for query {query[:60]!r}")
        seen.add(c.id)


def apply_scores(candidates: Sequence[Candidate], scores: np.ndarray, k: int | None) -> list[Candidate]:
    """Candidates sorted by ``scores`` (best first, stable), the top ``k`` with the new scores."""
    out = [replace(c, score=float(s), retrieval_score=c.score if c.retrieval_score is None else c.retrieval_score)
           for c, s in zip(candidates, scores)]
    out.sort(key=lambda c: -c.score)
    return out[:k] if k is not None else out


class RerankerMixin:
    """``rerank`` from ``score`` (composition helper; subclasses only implement ``score``)."""

    def rerank(self, query: str, candidates: Sequence[Candidate], k: int | None = None) -> list[Candidate]:
        check_candidates(query, candidates)
        if k is not None and k <= 0:
            raise ValueError(f"k: must be positive, got {k}")
        return apply_scores(candidates, self.score(query, [c.text for c in candidates]), k)


class BiEncoderReranker(RerankerMixin):
    """Cosine between the query and each candidate under any ``Embedder`` (default MiniLM)."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        vecs = self.embedder.encode([query, *texts])
        return vecs[1:] @ vecs[0]
