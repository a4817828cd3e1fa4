"""The diversity view (MDP-DIV, papers.md §33): queries with candidate documents, document features and
subtopic judgments, for search-result diversification.

**MovieLens proxy** (papers.md's proposal; TREC's ClueWeb documents are not freely available): a query is a
genre; its candidates are ``candidates`` movies of that genre with at least ``min_ratings`` ratings, drawn
``samples_per_genre`` times (one query per draw); a movie is relevant when its mean rating is at least
``relevant_mean``; the **subtopics** of the query are the other genres of its candidates and their release
decades, and a relevant movie covers its own (a movie that is not relevant covers nothing). Document features
are given by the caller (PMF item vectors). Genres are split between training, validation and test queries
(``split``), so test queries are unseen genres.

**TREC diversity qrels** (``read_trec_qrels``): lines ``topic subtopic docid judgment``; judgment > 0 covers.

A query whose relevant candidates cover no subtopic cannot be scored by alpha-NDCG: ``DiversityQuery`` raises
a ``DiversityError`` naming it, and the MovieLens builder skips and counts such draws."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.data.schema import DataFormatError, RecData
from llmrec.errors import LLMRecError


class DiversityError(LLMRecError):
    """A diversity query that cannot be used (no subtopics, shapes that do not match)."""


@dataclass
class DiversityQuery:
    """One query: its id, query vector, candidates (ids, feature rows) and the docs x subtopics judgments."""
    qid: str
    vector: np.ndarray
    doc_ids: np.ndarray
    features: np.ndarray
    judgments: np.ndarray
    subtopics: list[str]

    def __post_init__(self) -> None:
        if self.judgments.shape != (len(self.doc_ids), len(self.subtopics)):
            raise DiversityError(f"query {self.qid!r}: judgments of shape {self.judgments.shape} for "
                                 f"{len(self.doc_ids)} docs x {len(self.subtopics)} subtopics")
        if len(self.features) != len(self.doc_ids):
            raise DiversityError(f"query {self.qid!r}: {len(self.features)} feature rows for {len(self.doc_ids)} docs")
        if not self.subtopics or not self.judgments.any():
            raise DiversityError(f"query {self.qid!r}: no candidate covers a subtopic (a diversity query needs "
                                 f"subtopics to score alpha-NDCG)")


class MovieLensDiversityConfig(StrictConfig):
    """How MovieLens (or any rated data with an item column of groups) becomes diversity queries: a query is a
    value of ``query_column`` (genres), its subtopics the candidates' other values of it, their values of
    ``subtopic_columns`` and, with ``decades``, the release decades read from the item descriptions."""
    query_column: str = "genres"
    subtopic_columns: list[str] = []
    decades: bool = True
    candidates: int = Field(40, ge=10)
    samples_per_genre: int = Field(4, ge=1)
    min_ratings: int = Field(10, ge=1)
    relevant_mean: float = 3.5
    split: tuple[int, int] = (8, 3)  # genres for training, validation; the rest for test
    seed: int = 0


@dataclass
class DiversitySet:
    """Queries by split, and how many draws were skipped for having no subtopic."""
    train: list[DiversityQuery]
    valid: list[DiversityQuery]
    test: list[DiversityQuery]
    skipped: int = 0


def movielens_diversity(data: RecData, item_vectors: dict[str, np.ndarray], c: MovieLensDiversityConfig
                        ) -> DiversitySet:
    """Genre queries over MovieLens (see the module doc); ``item_vectors``: item id -> feature vector."""
    items = np.asarray(data.columns[data.item_col]).astype(str)
    rating = np.asarray(data.columns["rating"], np.float64)
    ids, inv, counts = np.unique(items, return_inverse=True, return_counts=True)
    mean = np.bincount(inv, weights=rating) / counts
    first = {i: n for n, i in reversed(list(enumerate(items)))}
    for col in (c.query_column, *c.subtopic_columns):
        if col not in data.columns:
            raise DataFormatError(data.name, None, col, f"no such item column (have {sorted(data.columns)})")
    genres = {i: _values(data.columns[c.query_column][first[i]]) for i in ids}
    decade = {i: _decade(data.item_info.get(i, {}).get("description", "")) if c.decades else "" for i in ids}
    extra = {i: tuple(v for col in c.subtopic_columns for v in _values(data.columns[col][first[i]])) for i in ids}
    ok = [n for n, i in enumerate(ids) if counts[n] >= c.min_ratings and i in item_vectors]
    by_genre: dict[str, list[int]] = {}
    for n in ok:
        for g in genres[ids[n]]:
            if g != "unknown":
                by_genre.setdefault(g, []).append(n)
    usable = sorted(g for g, v in by_genre.items() if len(v) >= c.candidates)
    rng = np.random.default_rng(c.seed)
    order = [usable[k] for k in rng.permutation(len(usable))]
    parts = {"train": order[: c.split[0]], "valid": order[c.split[0]: sum(c.split)], "test": order[sum(c.split):]}
    out, skipped = {}, 0
    for part, gs in parts.items():
        qs = []
        for g in gs:
            for s in range(c.samples_per_genre):
                pick = rng.choice(by_genre[g], c.candidates, replace=False)
                doc = ids[pick]
                topics = sorted({t for d in doc for t in (*genres[d], *extra[d], decade[d]) if t != g and t})
                judg = np.array([[float(mean[n] >= c.relevant_mean and (t in genres[d] or t in extra[d]
                                                                        or t == decade[d]))
                                  for t in topics] for n, d in zip(pick, doc)]).reshape(len(doc), len(topics))
                feats = np.stack([item_vectors[d] for d in doc]).astype(np.float32)
                try:
                    qs.append(DiversityQuery(f"{g}#{s}", feats.mean(0), doc, feats, judg, topics))
                except DiversityError:
                    skipped += 1
        out[part] = qs
    return DiversitySet(out["train"], out["valid"], out["test"], skipped)


def _values(value) -> tuple[str, ...]:
    """A multi-value cell's values, or a single value as a one-value tuple."""
    return tuple(str(v) for v in value) if isinstance(value, (tuple, list)) else (str(value),)


def _decade(description: str) -> str:
    """'1990s' from a MovieLens description '... (1995), a ... movie.'; '' when there is no year."""
    m = re.search(r"\((\d{4})\)", description)
    return f"{m.group(1)[:3]}0s" if m else ""


def read_trec_qrels(path: str | Path) -> dict[str, dict[str, set[str]]]:
    """TREC Web Track diversity qrels: topic -> doc id -> the subtopics it covers (judgment > 0)."""
    out: dict[str, dict[str, set[str]]] = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise DataFormatError(str(path), n, "row", f"expected 'topic subtopic docid judgment', got {line!r}")
            topic, sub, doc, j = parts
            try:
                covered = float(j) > 0
            except ValueError:
                raise DataFormatError(str(path), n, "judgment", f"not a number: {j!r}") from None
            docs = out.setdefault(topic, {})
            docs.setdefault(doc, set())
            if covered:
                docs[doc].add(sub)
    return out
