"""BPR-MF (Rendle et al., UAI 2009): user and item vectors, score = their dot product, trained with BPR.
The graph family's zero-layer baseline (LightGCN with no propagation is exactly this model)."""
from __future__ import annotations

from pydantic import Field
from torch import nn

from llmrec.data.views import ItemSpace
from llmrec.models.graph.base import GraphScorer
from llmrec.models.registry import ModelConfigBase, register_model


class MFConfig(ModelConfigBase):
    """BPR matrix-factorization hyperparameters (embedding size; optional per-batch L2 as RecBole's)."""
    embedding_dim: int = Field(64, ge=1)
    reg_weight: float = Field(0.0, ge=0)  # RecBole's BPR has none


class MF(GraphScorer):
    """Matrix factorization scoring user-item pairs by the inner product of their embeddings."""
    def __init__(self, space: ItemSpace, c: MFConfig) -> None:
        super().__init__(space, c.embedding_dim)
        self.reg_weight = c.reg_weight
        nn.init.xavier_normal_(self.user.weight)
        nn.init.xavier_normal_(self.item.weight)


@register_model("mf", family="graph", config=MFConfig, onnx=False)
def build_mf(space: ItemSpace, config: MFConfig) -> MF:
    """BPR-MF: dot product of user and item vectors (LightGCN with zero layers)."""
    return MF(space, config)
