"""The session family's contract and the neighbourhood machinery its models share (no trainer).

A model is fitted on the training sessions (``fit(sessions, starts)``: lists of item indices and start
times) and scores every item as the next click of a current session (``scores(session)``); ``recommend`` is
the top k. A session-KNN model = a **candidate selection** (which past sessions may be neighbours) + a
**similarity** between the current session and a candidate; the K most similar candidates vote for their
items: score(i | s) = sum over neighbours t of sim(s, t) * 1[i in t].

Bad input: an empty current session is a ``SessionError``; items outside the fitted catalogue are
ignored and counted (``unknown_items``); a session with no known item gets the most popular items."""
from __future__ import annotations

from typing import Protocol

import numpy as np
import scipy.sparse as sp
from tqdm import tqdm

from llmrec.data.sessions import Sessions
from llmrec.errors import LLMRecError


class SessionError(LLMRecError):
    """Bad input to a session model (unfitted, empty session, bad training sessions)."""


class SessionModel(Protocol):
    """A session recommender: ``fit`` on past sessions, then ``scores`` / ``recommend`` for a current one."""

    def fit(self, sessions: list[np.ndarray], starts: np.ndarray, n_items: int) -> "SessionModel":
        """Index the training sessions (item indices < n_items, start times for recency)."""
        ...

    def scores(self, session: np.ndarray) -> np.ndarray:
        """A score per item for the next click after ``session``."""
        ...


class SessionIndex:
    """Training sessions as a binary session x item matrix, with postings (item -> sessions, most recent
    first), session lengths k(t), item degrees k(i) and item popularity (clicks)."""

    def __init__(self, sessions: list[np.ndarray], starts: np.ndarray, n_items: int) -> None:
        if not sessions:
            raise SessionError("sessions: no training sessions to fit on")
        if len(starts) != len(sessions):
            raise SessionError(f"starts: {len(starts)} start times for {len(sessions)} sessions")
        rows, cols = [], []
        for n, s in enumerate(sessions):
            s = np.asarray(s, np.int64)
            if len(s) and (s.min() < 0 or s.max() >= n_items):
                raise SessionError(f"sessions[{n}]: item index out of range 0..{n_items - 1}")
            u = np.unique(s)
            rows.append(np.full(len(u), n))
            cols.append(u)
        r, c = np.concatenate(rows), np.concatenate(cols)
        self.matrix = sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(sessions), n_items))
        self.by_item = self.matrix.T.tocsr()  # item -> sessions
        self.starts = np.asarray(starts, np.float64)
        self.length = np.asarray(self.matrix.sum(axis=1)).ravel()  # k(t): distinct items of the session
        self.degree = np.asarray(self.matrix.sum(axis=0)).ravel()  # k(i): sessions holding the item
        self.popularity = np.bincount(np.concatenate([np.asarray(s, np.int64) for s in sessions]),
                                      minlength=n_items).astype(np.float64)
        self.n_items = n_items
        # postings sorted most recent first, once
        self._recent = {}

    def sessions_of(self, item: int) -> np.ndarray:
        """Training sessions holding ``item``, most recent first."""
        got = self._recent.get(item)
        if got is None:
            s = self.by_item.indices[self.by_item.indptr[item]: self.by_item.indptr[item + 1]]
            got = s[np.argsort(-self.starts[s], kind="stable")]
            self._recent[item] = got
        return got

    def most_recent(self, sessions: np.ndarray, m: int) -> np.ndarray:
        """The ``m`` most recent of ``sessions``."""
        if len(sessions) <= m:
            return sessions
        return sessions[np.argsort(-self.starts[sessions], kind="stable")[:m]]


class SessionKNN:
    """Shared fit / scoring of the session-KNN models; subclasses give ``candidates`` and ``similarity``."""
    index: SessionIndex | None = None
    unknown_items: int = 0

    def __init__(self, config) -> None:
        self.config = config

    def fit(self, sessions: list[np.ndarray], starts: np.ndarray, n_items: int) -> "SessionKNN":
        """Index the training sessions."""
        self.index = SessionIndex(sessions, starts, n_items)
        self.unknown_items = 0
        return self

    def fitted(self) -> SessionIndex:
        """The index, or a named error when ``fit`` was not called."""
        if self.index is None:
            raise SessionError(f"{type(self).__name__}: call fit(sessions, starts, n_items) first")
        return self.index

    def known(self, session: np.ndarray) -> np.ndarray:
        """The session's items inside the catalogue (others counted in ``unknown_items``)."""
        ix = self.fitted()
        s = np.asarray(session, np.int64)
        if not len(s):
            raise SessionError("session: an empty session has no click to recommend from")
        ok = (s >= 0) & (s < ix.n_items)
        self.unknown_items += int((~ok).sum())
        return s[ok]

    def candidates(self, session: np.ndarray) -> np.ndarray:
        """Training sessions that may be neighbours."""
        raise NotImplementedError

    def similarity(self, session: np.ndarray, cand: sp.csr_matrix, cand_ids: np.ndarray) -> np.ndarray:
        """sim(s, t) for every candidate t (rows of ``cand``)."""
        raise NotImplementedError

    def scores(self, session: np.ndarray) -> np.ndarray:
        """score(i | s) = sum of sim(s, t) over the K nearest candidates t holding i."""
        ix = self.fitted()
        s = self.known(session)
        if not len(s):
            return ix.popularity.copy()
        cand = self.candidates(s)
        if not len(cand):
            return np.zeros(ix.n_items)
        rows = ix.matrix[cand]
        sim = self.similarity(s, rows, cand)
        k = self.config.k
        # a stable sort, not argpartition: among tied similarities the earlier candidate wins on every CPU
        # (argpartition's order of ties depends on the SIMD kernel numpy picks for the machine)
        top = np.argsort(-sim, kind="stable")[:k]
        top = top[sim[top] > 0]
        return np.asarray(rows[top].T @ sim[top]).ravel()

    def recommend(self, session: np.ndarray, k: int = 20) -> np.ndarray:
        """The top ``k`` item indices for the next click."""
        sc = self.scores(session)
        return np.argsort(-sc, kind="stable")[:k]  # ties: the lower item index first, on every CPU


def position_weights(session: np.ndarray, decay: str, n_items: int) -> np.ndarray:
    """Per item, the weight of its latest position p (1..n, n = the latest click) in the session: ``none`` 1,
    ``linear`` p / n, ``div`` 1 / (n - p + 1); items not in the session 0."""
    n = len(session)
    pos = np.arange(1, n + 1, dtype=np.float64)
    w = {"none": np.ones(n), "linear": pos / n, "div": 1.0 / (n - pos + 1)}[decay]
    q = np.zeros(n_items)
    q[session] = w  # a repeated item keeps its latest (largest) weight: later positions overwrite
    return q


def recent_candidates(ix: SessionIndex, session: np.ndarray, m: int) -> np.ndarray:
    """SKNN's candidates: the ``m`` most recent training sessions holding any item of the session."""
    pool = np.unique(np.concatenate([ix.sessions_of(int(i)) for i in np.unique(session)]))
    return ix.most_recent(pool, m)


def per_item_candidates(ix: SessionIndex, session: np.ndarray, m: int) -> np.ndarray:
    """AHC-KNN's candidates: for each distinct item of the session, its ceil(m / n) most recent sessions, so
    that sessions co-occurring with *different* clicked items all get a place (not only the latest item's)."""
    items = np.unique(session)
    per = int(np.ceil(m / len(items)))
    return np.unique(np.concatenate([ix.sessions_of(int(i))[:per] for i in items]))


def next_click_metrics(model, sessions: Sessions, split: str, k: int, progress: bool = False) -> dict:
    """HR@k and MRR@k of ``model`` over every prefix of the split's sessions."""
    prefixes, nxt = sessions.prefixes(split)
    ranks = np.full(len(nxt), np.inf)
    for n, (p, y) in enumerate(tqdm(list(zip(prefixes, nxt)), desc=split, disable=not progress, leave=False)):
        top = model.recommend(p, k)
        hit = np.flatnonzero(top == y)
        if len(hit):
            ranks[n] = hit[0] + 1
    return {f"hr@{k}": float(np.isfinite(ranks).mean()), f"mrr@{k}": float((1.0 / ranks).mean()),
            "predictions": int(len(nxt))}
