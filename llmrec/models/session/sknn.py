"""SKNN (Jannach & Ludewig, RecSys 2017): session-based KNN with binary cosine similarity over the M most
recent past sessions that share an item with the current session; the K most similar vote for their items."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from llmrec.models.registry import ModelConfigBase, register_model
from llmrec.models.session.base import SessionKNN, recent_candidates


class SKNNConfig(ModelConfigBase):
    """Neighbours K and sampled candidates M."""
    k: int = Field(100, ge=1)
    m: int = Field(500, ge=1)


class SKNN(SessionKNN):
    """cos(s, t) = |s & t| / sqrt(|s| |t|) over the M most recent sessions sharing an item."""

    def candidates(self, session: np.ndarray) -> np.ndarray:
        """The M most recent sessions holding any item of the current session."""
        return recent_candidates(self.fitted(), session, self.config.m)

    def similarity(self, session: np.ndarray, cand: sp.csr_matrix, cand_ids: np.ndarray) -> np.ndarray:
        """Binary cosine."""
        q = np.zeros(self.fitted().n_items)
        q[np.unique(session)] = 1.0
        return (cand @ q) / np.sqrt(q.sum() * self.fitted().length[cand_ids])


@register_model("sknn", family="session", config=SKNNConfig, onnx=False)
def build_sknn(context: None, config: SKNNConfig) -> SKNN:
    """Session KNN, binary cosine, M most recent candidate sessions."""
    return SKNN(config)
