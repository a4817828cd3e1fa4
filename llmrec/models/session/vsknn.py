"""V-SKNN (Ludewig & Jannach, UMUAI 2018): session KNN whose current-session vector weights each click by its
position, so the latest clicks count most: linear decay w_p = p / n (p = 1..n, n = the latest) or ``div``
w_p = 1 / (n - p + 1); sim(s, t) = sum of w over the items of t (``normalize``: divided by sqrt(|s| |t|))."""
from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from llmrec.models.registry import ModelConfigBase, register_model
from llmrec.models.session.base import SessionKNN, position_weights, recent_candidates


class VSKNNConfig(ModelConfigBase):
    """Neighbours K, candidates M, the position decay and whether the similarity is length-normalized."""
    k: int = Field(100, ge=1)
    m: int = Field(500, ge=1)
    decay: Literal["linear", "div"] = "linear"
    normalize: bool = False


class VSKNN(SessionKNN):
    """Position-decayed overlap with the M most recent sessions sharing an item."""

    def candidates(self, session: np.ndarray) -> np.ndarray:
        """The M most recent sessions holding any item of the current session."""
        return recent_candidates(self.fitted(), session, self.config.m)

    def similarity(self, session: np.ndarray, cand: sp.csr_matrix, cand_ids: np.ndarray) -> np.ndarray:
        """Decayed dot product (optionally over sqrt(|s| |t|))."""
        sim = cand @ position_weights(session, self.config.decay, self.fitted().n_items)
        if self.config.normalize:
            sim = sim / np.sqrt(len(np.unique(session)) * self.fitted().length[cand_ids])
        return sim


@register_model("vsknn", family="session", config=VSKNNConfig, onnx=False)
def build_vsknn(context: None, config: VSKNNConfig) -> VSKNN:
    """Vector session KNN: position-decayed similarity, M most recent candidate sessions."""
    return VSKNN(config)
