"""Partially absorbing random walks (Wu et al., NIPS 2012) for push audiences (PSP, papers.md §34).

A walker at node i is absorbed with probability lambda_i / (lambda_i + d_i), else moves to neighbour j with
probability w_ij / (lambda_i + d_i). The absorption probabilities into the seed items solve

    (Lambda + L) f = Lambda f0,   L = D - W,

with **I mode** Lambda = alpha * I (the paper's choice: a user's score is the weighted mean of its neighbours',
so heavy users are not favoured for being heavy) or **D mode** Lambda = alpha * D (PageRank-like). ``parw``
solves the system exactly (sparse direct solve); ``a_parw`` runs PSP's truncated iteration

    f(t+1) = (Lambda + D)^-1 (W f(t) + Lambda f0),   f(0) = f0,

T times, the Jacobi iteration of the same system: it needs only sparse matrix-vector products, which is what
PSP distributes over the graph. Isolated nodes (degree 0) keep f = f0 = 0 in I mode; in D mode their row of
Lambda + L is empty, so they are taken out of the solve and score 0."""
from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from scipy.sparse.linalg import splu

from llmrec.models.push.base import FittedGraph
from llmrec.models.registry import ModelConfigBase, register_model


class PARWConfig(ModelConfigBase):
    """Absorption rate alpha, Lambda's mode, and (approximate walk) the number of iterations."""
    alpha: float = Field(0.01, gt=0)
    mode: Literal["identity", "degree"] = "identity"
    iterations: int | None = Field(None, ge=1)  # None: exact solve; T: the truncated iteration


class PARW(FittedGraph):
    """Absorption probabilities into the seed items, exactly or by T Jacobi steps."""

    def __init__(self, config: PARWConfig) -> None:
        self.config = config
        self._lu = None  # (live nodes, LU factors of Lambda + L on them): the system is seed-independent

    def fit(self, weights: sp.spmatrix) -> "PARW":
        """Build the graph; the exact walk's factorization is made on first use."""
        super().fit(weights)
        self._lu = None
        return self

    def _lambda(self) -> np.ndarray:
        g = self.fitted()
        return self.config.alpha * (np.ones_like(g.degree) if self.config.mode == "identity" else g.degree)

    def absorption(self, seed_items: np.ndarray) -> np.ndarray:
        """f over every node (users then items)."""
        g = self.fitted()
        f0, lam = g.seed_vector(seed_items), self._lambda()
        if self.config.iterations is None:
            if self._lu is None:
                live = (lam + g.degree) > 0
                self._lu = live, splu((sp.diags(lam + g.degree) - g.adjacency).tocsc()[live][:, live])
            live, lu = self._lu
            f = np.zeros_like(f0)
            f[live] = lu.solve(lam[live] * f0[live])
            return f
        denom = lam + g.degree
        inv = np.divide(1.0, denom, out=np.zeros_like(denom), where=denom > 0)
        f = f0.copy()
        for _ in range(self.config.iterations):
            f = inv * (g.adjacency @ f + lam * f0)
        return f

    def score_users(self, seed_items: np.ndarray) -> np.ndarray:
        """The users' absorption probabilities into the seeds."""
        return self.absorption(seed_items)[: self.fitted().n_users]


@register_model("parw", family="push", config=PARWConfig, onnx=False)
def build_parw(context: None, config: PARWConfig) -> PARW:
    """Partially absorbing random walk, exact: solves (Lambda + L) f = Lambda f0 (I mode: Lambda = alpha I)."""
    return PARW(config)


@register_model("a_parw", family="push", config=PARWConfig, onnx=False)
def build_a_parw(context: None, config: PARWConfig) -> PARW:
    """PSP's approximate PARW: T truncated iterations f <- (Lambda + D)^-1 (W f + Lambda f0) (default T = 10)."""
    return PARW(config)
