"""BPR-MF (Rendle et al., UAI 2009): user and item vectors, score = their dot product, trained with BPR.
The graph family's zero-layer baseline (LightGCN with no propagation is exactly this model)."""
from __future__ import annotations

import torch
from torch import nn

from llmrec.data.views import ItemSpace, PairBatch
from llmrec.models.registry import ModelConfigBase, register_model


class MFConfig(ModelConfigBase):
    """BPR matrix-factorization hyperparameters (embedding size)."""
    embedding_dim: int = 64


class MF(nn.Module):
    """Matrix factorization scoring user-item pairs by the inner product of their embeddings."""
    def __init__(self, space: ItemSpace, c: MFConfig) -> None:
        super().__init__()
        self.user = nn.Embedding(max(1, space.n_users), c.embedding_dim)
        self.item = nn.Embedding(space.n_items, c.embedding_dim, padding_idx=0)
        nn.init.xavier_normal_(self.user.weight)
        nn.init.xavier_normal_(self.item.weight)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def embedding_tables(self) -> list[torch.Tensor]:
        """The embedding tables the trainer's embedding L2 applies to."""
        return [self.user.weight, self.item.weight]

    def forward(self, batch: PairBatch) -> torch.Tensor:
        """Scores of ``batch.items`` ([B] or [B, C]) for ``batch.users``."""
        u = self.user(batch.users)
        v = self.item(batch.items)
        return (u * v).sum(-1) if v.ndim == 2 else torch.einsum("bd,bcd->bc", u, v)

    def full_scores(self, users: torch.Tensor) -> torch.Tensor:
        """[U, n_items] scores over every item (column 0 is padding)."""
        return self.user(users) @ self.item.weight.T


@register_model("mf", family="graph", config=MFConfig, onnx=False)
def build_mf(space: ItemSpace, config: MFConfig) -> MF:
    """BPR-MF: dot product of user and item vectors (LightGCN with zero layers)."""
    return MF(space, config)
