"""Personalized PageRank from the seed items (PSP's baseline, papers.md §34): the stationary distribution of
a walk that follows an edge with probability 1 - restart (by weight) and jumps back to a uniformly chosen seed
with probability restart, found by power iteration to ``tolerance`` (L1). A walker on an isolated node has
nowhere to go; its mass returns to the seeds (the usual dangling-node rule)."""
from __future__ import annotations

import numpy as np
from pydantic import Field

from llmrec.models.push.base import FittedGraph, PushError
from llmrec.models.registry import ModelConfigBase, register_model


class PPRConfig(ModelConfigBase):
    """Restart probability, power-iteration tolerance and cap."""
    restart: float = Field(0.15, gt=0, lt=1)
    tolerance: float = Field(1e-10, gt=0)
    max_iterations: int = Field(1000, ge=1)


class PersonalizedPageRank(FittedGraph):
    """Stationary visiting probabilities of the restarting walk, per user."""

    def __init__(self, config: PPRConfig) -> None:
        self.config = config

    def stationary(self, seed_items: np.ndarray) -> np.ndarray:
        """The walk's stationary distribution over every node (sums to 1)."""
        g, c = self.fitted(), self.config
        f0 = g.seed_vector(seed_items)
        jump = f0 / f0.sum()
        inv = np.divide(1.0, g.degree, out=np.zeros_like(g.degree), where=g.degree > 0)
        dangling = g.degree == 0
        x = jump.copy()
        for _ in range(c.max_iterations):
            nxt = (1 - c.restart) * (g.adjacency @ (inv * x)) + (c.restart + (1 - c.restart) * x[dangling].sum()) * jump
            if np.abs(nxt - x).sum() < c.tolerance:
                return nxt
            x = nxt
        raise PushError(f"ppr: no convergence to {c.tolerance} in {c.max_iterations} iterations")

    def score_users(self, seed_items: np.ndarray) -> np.ndarray:
        """The users' visiting probabilities."""
        return self.stationary(seed_items)[: self.fitted().n_users]


@register_model("ppr", family="push", config=PPRConfig, onnx=False)
def build_ppr(context: None, config: PPRConfig) -> PersonalizedPageRank:
    """Personalized PageRank from the seed items (restart 0.15), power iteration."""
    return PersonalizedPageRank(config)
