"""MMR (Carbonell & Goldstein, SIGIR 1998), the diversification baseline: select
argmax_d lam * rel(d) - (1 - lam) * max_(d' selected) cos(x_d, x_d'), with rel(d) a ridge regression of
"the document covers a subtopic" on its features, fitted on the training queries (``fit``)."""
from __future__ import annotations

import numpy as np
from pydantic import Field

from llmrec.models.registry import ModelConfigBase, register_model


class MMRConfig(ModelConfigBase):
    """Relevance / novelty trade-off and the ridge strength of the relevance model."""
    lam: float = Field(0.7, ge=0.0, le=1.0)
    ridge: float = Field(1.0, ge=0.0)


class MMR:
    """Greedy maximal marginal relevance over a query's candidates."""

    def __init__(self, config: MMRConfig) -> None:
        self.config = config
        self.w: np.ndarray | None = None

    def fit(self, queries: list) -> "MMR":
        """Ridge regression of each candidate's relevance (covers any subtopic) on [features; 1]."""
        x = np.vstack([np.hstack([q.features, np.ones((len(q.features), 1))]) for q in queries])
        y = np.concatenate([q.judgments.any(1).astype(float) for q in queries])
        self.w = np.linalg.solve(x.T @ x + self.config.ridge * np.eye(x.shape[1]), x.T @ y)
        return self

    def rank(self, query, k: int) -> list[int]:
        """The MMR ranking of the query's candidates (indices), k long."""
        if self.w is None:
            raise ValueError("mmr: call fit(train_queries) before rank")
        x = query.features
        rel = np.hstack([x, np.ones((len(x), 1))]) @ self.w
        unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        sim = unit @ unit.T
        chosen: list[int] = []
        left = list(range(len(x)))
        lam = self.config.lam
        for _ in range(min(k, len(x))):
            nov = sim[np.ix_(left, chosen)].max(1) if chosen else np.zeros(len(left))
            best = left[int(np.argmax(lam * rel[left] - (1 - lam) * nov))]
            chosen.append(best)
            left.remove(best)
        return chosen


@register_model("mmr", family="diversify", config=MMRConfig, onnx=False, task="fit")
def build_mmr(context: int, config: MMRConfig) -> MMR:
    """Maximal marginal relevance with a ridge relevance model (no policy training)."""
    return MMR(config)
