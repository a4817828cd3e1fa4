"""The push family's contract: a ranker is fitted on the user x item weights of the graph period (no trainer)
and scores every user for a set of seed items; ``PushGraph`` is the bipartite graph they walk on.

Nodes are the users (0..U-1) followed by the items (U..U+I-1); W is symmetric with the user x item weights
off the diagonal, D its degrees, L = D - W its Laplacian."""
from __future__ import annotations

from typing import Protocol

import numpy as np
import scipy.sparse as sp

from llmrec.errors import LLMRecError


class PushError(LLMRecError):
    """Bad input to a push ranker (unfitted, seeds out of range or without edges)."""


class PushGraph:
    """The bipartite user-item graph as one symmetric (U + I) x (U + I) sparse matrix with its degrees."""

    def __init__(self, weights: sp.spmatrix) -> None:
        w = sp.csr_matrix(weights, dtype=np.float64)
        if w.nnz and (w.data < 0).any():
            raise PushError("weights: edge weights must be >= 0")
        self.n_users, self.n_items = w.shape
        self.adjacency = sp.bmat([[None, w], [w.T, None]], format="csr")
        self.degree = np.asarray(self.adjacency.sum(axis=1)).ravel()

    @property
    def isolated(self) -> dict[str, int]:
        """Users and items without an edge (they score 0 under every method)."""
        zero = self.degree == 0
        return {"users": int(zero[: self.n_users].sum()), "items": int(zero[self.n_users:].sum())}

    def seed_vector(self, seed_items: np.ndarray) -> np.ndarray:
        """f0: 1 on the seed items' nodes, 0 elsewhere; a seed out of range or without edges is an error."""
        seeds = np.asarray(seed_items, np.int64)
        if not len(seeds):
            raise PushError("seed_items: a campaign needs at least one seed item")
        bad = seeds[(seeds < 0) | (seeds >= self.n_items)]
        if len(bad):
            raise PushError(f"seed_items: item index {int(bad[0])} is outside the graph's {self.n_items} items")
        lonely = seeds[self.degree[self.n_users + seeds] == 0]
        if len(lonely):
            raise PushError(f"seed_items: item index {int(lonely[0])} has no edge in the graph (an isolated "
                            f"node cannot spread a campaign)")
        f0 = np.zeros(self.n_users + self.n_items)
        f0[self.n_users + seeds] = 1.0
        return f0


class PushRanker(Protocol):
    """A push method: ``fit`` on the graph period's weights, then ``score_users`` for a campaign's seeds."""

    def fit(self, weights: sp.spmatrix) -> "PushRanker":
        """Build the graph (and whatever the method precomputes)."""
        ...

    def score_users(self, seed_items: np.ndarray) -> np.ndarray:
        """A score per user (higher: push first)."""
        ...


class FittedGraph:
    """Holds the ``PushGraph`` a ranker was fitted on; an unfitted ranker's call is a named error."""
    graph: PushGraph | None = None

    def fit(self, weights: sp.spmatrix) -> "FittedGraph":
        """Build the bipartite graph of ``weights``."""
        self.graph = PushGraph(weights)
        return self

    def fitted(self) -> PushGraph:
        """The graph, or a ``PushError`` when ``fit`` was not called."""
        if self.graph is None:
            raise PushError(f"{type(self).__name__}: call fit(weights) before scoring")
        return self.graph
