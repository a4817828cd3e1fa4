"""The campaign-blind baseline of the push family: rank users by their weighted degree in the graph period
(push the most active users first, whatever the campaign)."""
from __future__ import annotations

import numpy as np

from llmrec.models.push.base import FittedGraph
from llmrec.models.registry import ModelConfigBase, register_model


class ActivityConfig(ModelConfigBase):
    """No hyperparameters."""


class MostActive(FittedGraph):
    """Score = the user's weighted degree; the seeds are checked but not used."""

    def __init__(self, config: ActivityConfig) -> None:
        self.config = config

    def score_users(self, seed_items: np.ndarray) -> np.ndarray:
        """The users' weighted degrees."""
        g = self.fitted()
        g.seed_vector(seed_items)
        return g.degree[: g.n_users].copy()


@register_model("most_active", family="push", config=ActivityConfig, onnx=False)
def build_most_active(context: None, config: ActivityConfig) -> MostActive:
    """Most active users first, campaign-blind (a sanity baseline)."""
    return MostActive(config)
