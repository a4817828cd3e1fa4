"""DCN-V2 (Wang et al., WWW 2021): a cross network over the flattened field embeddings, with an MLP either
after it (``stacked``) or beside it (``parallel``, outputs concatenated), or alone (``crossnet_only``).
Cross layers are full-rank by default; ``low_rank`` switches to the paper's mixture of low-rank experts."""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from llmrec.ctr.features import Batch, FeatureEncoder
from llmrec.ctr.layers import MLP, CrossNetMix, CrossNetV2
from llmrec.models.ctr.base import DeepCTRConfig, field_embedding
from llmrec.models.registry import register_model


class DCNv2Config(DeepCTRConfig):
    """DCNv2 hyperparameters: cross layers, full-rank or low-rank mixture, stacked or parallel structure, DNN
    tower."""
    structure: Literal["stacked", "parallel", "crossnet_only"] = "parallel"
    cross_layers: int = 3
    low_rank: int | None = None  # None: full-rank W_l; r: mixture of rank-r experts
    experts: int = 4


class DCNv2(nn.Module):
    """DCN-V2: cross network (full or mixture-of-low-rank) with a DNN, stacked or in parallel."""
    def __init__(self, encoder: FeatureEncoder, c: DCNv2Config) -> None:
        super().__init__()
        self.structure = c.structure
        self.embedding = field_embedding(encoder, c)
        dim = self.embedding.n_fields * c.embedding_dim
        self.cross = CrossNetV2(dim, c.cross_layers) if c.low_rank is None else \
            CrossNetMix(dim, c.cross_layers, c.low_rank, c.experts)
        self.deep = None
        if c.structure != "crossnet_only":
            self.deep = MLP(dim, c.hidden_units, c.dropout, c.batch_norm, out_dim=None)
        head_in = {"stacked": c.hidden_units[-1] if c.hidden_units else dim,
                   "parallel": dim + (c.hidden_units[-1] if c.hidden_units else dim), "crossnet_only": dim}
        self.head = nn.Linear(head_in[c.structure], 1)

    def embedding_tables(self) -> list[torch.Tensor]:
        """The embedding tables the trainer's embedding L2 applies to."""
        return self.embedding.embedding_tables()

    def forward(self, batch: Batch) -> torch.Tensor:
        x0 = self.embedding(batch).flatten(1)
        if self.structure == "stacked":
            h = self.deep(self.cross(x0))
        elif self.structure == "parallel":
            h = torch.cat([self.cross(x0), self.deep(x0)], dim=1)
        else:
            h = self.cross(x0)
        return self.head(h).squeeze(-1)


@register_model("dcnv2", family="ctr", config=DCNv2Config)
def build_dcnv2(encoder: FeatureEncoder, config: DCNv2Config) -> DCNv2:
    """DCN-V2: cross network v2 + MLP, stacked or parallel (full-rank or low-rank mixture)."""
    return DCNv2(encoder, config)
