"""Probabilistic matrix factorization (Salakhutdinov & Mnih, NIPS 2007) with biases: r_ui ~ mu + b_u + b_i +
u . v with Gaussian priors, i.e. squared error + ``l2`` * (|u|^2 + b_u^2) per user and likewise per item. The
MAP estimate is found by alternating least squares (each user's [u; b_u] is a ridge regression on its items'
[v; 1], then each item's): exact per step, deterministic, seconds on MovieLens. DRR's pretrained embeddings,
its simulator's fallback ratings (papers.md §32), and a baseline ranker."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.data.simulator import RatingLog


class PMFConfig(StrictConfig):
    """Factor width, prior strength (ridge per user / item), sweeps of alternating least squares, seed."""
    dim: int = Field(32, ge=1)
    l2: float = Field(10.0, ge=0)
    sweeps: int = Field(15, ge=1)
    seed: int = 0


@dataclass
class PMF:
    """Fitted factors: user / item vectors, biases and the global mean; its training and validation RMSE."""
    U: np.ndarray
    V: np.ndarray
    bu: np.ndarray
    bi: np.ndarray
    mean: float
    rmse: dict[str, float]

    def predict(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        """Predicted ratings of (user, item) index pairs (not clipped)."""
        return self.mean + self.bu[user] + self.bi[item] + np.einsum("nd,nd->n", self.U[user], self.V[item])


def _ridge_rows(rows_of: list[np.ndarray], other: np.ndarray, target: np.ndarray, l2: float) -> np.ndarray:
    """For each entity, argmin_x |A x - y|^2 + l2 |x|^2 over its ratings (A = the other side's [vector; 1])."""
    d = other.shape[1]
    out = np.zeros((len(rows_of), d))
    for n, (cols, y) in enumerate(zip(rows_of, target)):
        if len(cols):
            a = other[cols]
            out[n] = np.linalg.solve(a.T @ a + l2 * np.eye(d), a.T @ y)
    return out


def fit_pmf(train: RatingLog, config: PMFConfig = PMFConfig(), valid: RatingLog | None = None) -> PMF:
    """PMF on the training ratings by alternating least squares (validation RMSE when ``valid`` is given)."""
    rng = np.random.default_rng(config.seed)
    nu, ni, d = train.n_users, train.n_items, config.dim
    mean = float(train.rating.mean())
    U, V = 0.1 * rng.normal(size=(nu, d)), 0.1 * rng.normal(size=(ni, d))
    bu, bi = np.zeros(nu), np.zeros(ni)
    order_u = np.argsort(train.user, kind="stable")
    order_i = np.argsort(train.item, kind="stable")
    u_rows = np.split(order_u, np.searchsorted(train.user[order_u], np.arange(1, nu)))
    i_rows = np.split(order_i, np.searchsorted(train.item[order_i], np.arange(1, ni)))
    for _ in range(config.sweeps):
        # users: [u; b_u] against items' [v; 1] on r - mu - b_i
        x = _ridge_rows([train.item[r] for r in u_rows], np.hstack([V, np.ones((ni, 1))]),
                        [train.rating[r] - mean - bi[train.item[r]] for r in u_rows], config.l2)
        U, bu = x[:, :d], x[:, d]
        x = _ridge_rows([train.user[r] for r in i_rows], np.hstack([U, np.ones((nu, 1))]),
                        [train.rating[r] - mean - bu[train.user[r]] for r in i_rows], config.l2)
        V, bi = x[:, :d], x[:, d]
    out = PMF(U, V, bu, bi, mean, {})
    out.rmse["train"] = float(np.sqrt(np.mean((out.predict(train.user, train.item) - train.rating) ** 2)))
    if valid is not None and len(valid.user):
        out.rmse["valid"] = float(np.sqrt(np.mean((np.clip(out.predict(valid.user, valid.item), 1, 5)
                                                   - valid.rating) ** 2)))
    return out


def pmf_vectors(pmf: PMF) -> tuple[np.ndarray, np.ndarray]:
    """Frozen feature vectors from PMF: users [u; 1], items [v; b_i] (so a . e_i can carry the item bias):
    DRR's embeddings and the diversifiers' document features."""
    return (np.hstack([pmf.U, np.ones((len(pmf.U), 1))]).astype(np.float32),
            np.hstack([pmf.V, pmf.bi[:, None]]).astype(np.float32))
