"""An incremental BM25 index (Okapi BM25, k1 = 1.5, b = 0.75) kept in memory per user.

Adds and removes touch only the affected postings, so adding a memory never rebuilds the index. Scoring is
vectorized (``score_arrays``): each term's postings are cached as arrays of document slots and term
frequencies (remade when the term's postings change), so a query over 100,000 documents costs a few array
operations per query term, with the same floating-point operations, in the same order, as scoring one
document at a time (``scores`` returns the identical values)."""
from __future__ import annotations

import math
import re
from collections import Counter, defaultdict

import numpy as np

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
        # slots: every added document gets the next slot (a removed or re-added one leaves its old slot dead)
        self._slot: dict[str, int] = {}
        self._slot_ids: list[str] = []
        self._slot_len = np.zeros(1024, np.float64)
        self._slot_group = np.zeros(1024, np.int64)  # codes of ``_group_code``; dead slots -1
        self._group_code: dict[str | None, int] = {}
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # term -> (slots, term frequencies)

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
            self._arrays.pop(term, None)
        self.doc_terms[doc_id] = list(counts)
        slot = len(self._slot_ids)
        if slot == len(self._slot_len):
            self._slot_len = np.concatenate([self._slot_len, np.zeros_like(self._slot_len)])
            self._slot_group = np.concatenate([self._slot_group, np.full_like(self._slot_group, -1)])
        self._slot[doc_id] = slot
        self._slot_ids.append(doc_id)
        self._slot_len[slot] = len(toks)
        self._slot_group[slot] = self._group_code.setdefault(group, len(self._group_code))
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
        self._slot_group[self._slot.pop(doc_id)] = -1
        for term in self.doc_terms.pop(doc_id, []):
            docs = self.postings[term]
            docs.pop(doc_id, None)
            self._arrays.pop(term, None)
            if not docs:
                del self.postings[term]

    def _term_arrays(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        got = self._arrays.get(term)
        if got is None:
            docs = self.postings[term]
            got = self._arrays[term] = (np.fromiter((self._slot[d] for d in docs), np.int64, len(docs)),
                                        np.fromiter(docs.values(), np.float64, len(docs)))
        return got

    def score_arrays(self, query: str, group: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(slots, BM25 scores) of every document of ``group`` (None: any) sharing a term with ``query``,
        slots ascending; ``doc_id(slot)`` names them (corpus statistics over all groups)."""
        n = len(self.lengths)
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        avgdl = self.total_len / n or 1.0
        size = len(self._slot_ids)
        acc = np.zeros(size, np.float64)
        hit = np.zeros(size, bool)
        for term in set(tokenize(query)):
            docs = self.postings.get(term)
            if not docs:
                continue
            idf = math.log(1 + (n - len(docs) + 0.5) / (len(docs) + 0.5))
            slots, tf = self._term_arrays(term)
            norm = tf + self.k1 * (1 - self.b + self.b * self._slot_len[slots] / avgdl)
            acc[slots] += idf * tf * (self.k1 + 1) / norm  # a term's slots are distinct: no lost updates
            hit[slots] = True
        if group is not None:
            hit &= self._slot_group[:size] == self._group_code.get(group, -2)
        sel = np.flatnonzero(hit)
        return sel, acc[sel]

    def doc_id(self, slot: int) -> str:
        """The document in a slot of ``score_arrays``."""
        return self._slot_ids[slot]

    def slot(self, doc_id: str) -> int | None:
        """The slot of a live document (None if absent)."""
        return self._slot.get(doc_id)

    def scores(self, query: str, group: str | None = None) -> dict[str, float]:
        """BM25 of every document sharing a term with ``query`` (corpus statistics over all groups)."""
        slots, vals = self.score_arrays(query, group)
        return {self._slot_ids[s]: v for s, v in zip(slots.tolist(), vals.tolist())}

    def search(self, query: str, k: int, group: str | None = None) -> list[tuple[str, float]]:
        """The top ``k`` (id, score) for a query, optionally within one group (granularity)."""
        s = self.scores(query, group)
        return sorted(s.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
