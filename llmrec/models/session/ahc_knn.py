"""AHC-KNN (Guo et al., arXiv 1807.05739 / PAKDD 2019; papers.md §31): session KNN with an **adjustable heat
conduction** similarity on the session-item bipartite network,

    sim(s, t) = 1 / (k(s)^lambda * k(t)^(1 - lambda)) * sum_i a_si a_ti / k(i),

k = degree (distinct items of a session, sessions holding an item): an item shared by many sessions says
little (1 / k(i)), and lambda moves the length penalty between the current session (lambda = 1, heat
conduction) and the candidate (lambda = 0, mass diffusion). **Candidate selection**: every distinct item of
the current session contributes its ceil(M / n) most recent sessions, so neighbours co-occurring with
*different* clicked items are all considered (``candidates: recent`` is SKNN's selection, for ablation).
The paper's optional position decay (``decay``: ``linear`` / ``div`` as V-SKNN's) weights a_si by the click's
position, so the latest clicks count most; ``none`` is the plain formula."""
from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from llmrec.models.registry import ModelConfigBase, register_model
from llmrec.models.session.base import SessionKNN, per_item_candidates, position_weights, recent_candidates


class AHCKNNConfig(ModelConfigBase):
    """Neighbours K, candidates M, lambda, the candidate selection and the position decay."""
    k: int = Field(100, ge=1)
    m: int = Field(500, ge=1)
    lam: float = Field(0.5, ge=0.0, le=1.0)
    candidates: Literal["per_item", "recent"] = "per_item"
    decay: Literal["none", "linear", "div"] = "none"


class AHCKNN(SessionKNN):
    """Adjustable heat-conduction similarity over per-item candidate sessions."""

    def candidates(self, session: np.ndarray) -> np.ndarray:
        """Per-item recent sessions (or SKNN's M most recent overall)."""
        pick = per_item_candidates if self.config.candidates == "per_item" else recent_candidates
        return pick(self.fitted(), session, self.config.m)

    def similarity(self, session: np.ndarray, cand: sp.csr_matrix, cand_ids: np.ndarray) -> np.ndarray:
        """sum_i a_si a_ti / k(i), over k(s)^lambda k(t)^(1 - lambda)."""
        ix = self.fitted()
        items = np.unique(session)
        q = position_weights(session, self.config.decay, ix.n_items)
        q[items] /= np.maximum(ix.degree[items], 1.0)  # an item of the session unseen in training: k = 1
        lam = self.config.lam
        return (cand @ q) / (len(items) ** lam * ix.length[cand_ids] ** (1.0 - lam))


@register_model("ahc_knn", family="session", config=AHCKNNConfig, onnx=False)
def build_ahc_knn(context: None, config: AHCKNNConfig) -> AHCKNN:
    """Adjustable heat-conduction session KNN (lambda), candidates chosen per clicked item."""
    return AHCKNN(config)
