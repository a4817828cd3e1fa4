"""An incremental BM25 index (Okapi BM25, k1 = 1.5, b = 0.75) kept in memory per user.

Adds and removes touch only the affected postings, so adding a memory never rebuilds the index."""
from __future__ import annotations

import math
import re
from collections import Counter, defaultdict

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
STOPWORDS = frozenset(
    "a an and are as at be but by did do does for from had has have he her him his how i if in is it its "
    "me my of on or our she so that the their them they this to was we were what when where which who why "
    "will with you your".split()
)


def tokenize(text: str) -> list[str]:
    """Lowercased alphanumeric tokens of a text (the BM25 index's tokenizer)."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS]


class BM25Index:
    """An incremental BM25 index (add and remove documents without a rebuild), scored by granularity."""
    def __init__(self, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.postings: dict[str, dict[str, int]] = defaultdict(dict)
        self.lengths: dict[str, int] = {}
        self.doc_terms: dict[str, list[str]] = {}
        self.groups: dict[str, str | None] = {}
        self.total_len = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def add(self, doc_id: str, text: str, group: str | None = None) -> None:
        """Index a document; ``group`` (e.g. a memory granularity) lets searches keep one group only."""
        if doc_id in self.lengths:
            self.remove(doc_id)
        toks = tokenize(text)
        counts = Counter(toks)
        for term, tf in counts.items():
            self.postings[term][doc_id] = tf
        self.doc_terms[doc_id] = list(counts)
        self.groups[doc_id] = group
        self.lengths[doc_id] = len(toks)
        self.total_len += len(toks)

    def remove(self, doc_id: str) -> None:
        """Remove a document (no rebuild)."""
        n = self.lengths.pop(doc_id, None)
        if n is None:
            return
        self.total_len -= n
        self.groups.pop(doc_id, None)
        for term in self.doc_terms.pop(doc_id, []):
            docs = self.postings[term]
            docs.pop(doc_id, None)
            if not docs:
                del self.postings[term]

    def scores(self, query: str, group: str | None = None) -> dict[str, float]:
        """BM25 of every document sharing a term with ``query`` (corpus statistics over all groups)."""
        n = len(self.lengths)
        if n == 0:
            return {}
        avgdl = self.total_len / n or 1.0
        out: dict[str, float] = defaultdict(float)
        for term in set(tokenize(query)):
            docs = self.postings.get(term)
            if not docs:
                continue
            idf = math.log(1 + (n - len(docs) + 0.5) / (len(docs) + 0.5))
            for doc_id, tf in docs.items():
                if group is not None and self.groups[doc_id] != group:
                    continue
                norm = tf + self.k1 * (1 - self.b + self.b * self.lengths[doc_id] / avgdl)
                out[doc_id] += idf * tf * (self.k1 + 1) / norm
        return dict(out)

    def search(self, query: str, k: int, group: str | None = None) -> list[tuple[str, float]]:
        """The top ``k`` (id, score) for a query, optionally within one group (granularity)."""
        s = self.scores(query, group)
        return sorted(s.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
