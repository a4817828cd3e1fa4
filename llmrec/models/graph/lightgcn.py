"""LightGCN (He et al., SIGIR 2020): id embeddings propagated over the symmetric-normalized user-item graph
without transforms or non-linearities, E^(l+1) = D^-1/2 A D^-1/2 E^(l); the final vector of a node is the
mean of E^(0..L) (RecBole's implementation; the paper's 1/(L+1) weights); score = inner product, BPR loss
with RecBole's per-batch L2 on the ego embeddings (``reg_weight``)."""
from __future__ import annotations

import torch
from pydantic import Field

from llmrec.data.views import ItemSpace
from llmrec.models.graph.base import GraphScorer, graph_of, layer_mean
from llmrec.models.registry import ModelConfigBase, register_model


class LightGCNConfig(ModelConfigBase):
    """LightGCN hyperparameters (RecBole's defaults): width, propagation layers, per-batch L2."""
    embedding_dim: int = Field(64, ge=1)
    n_layers: int = Field(2, ge=0)
    reg_weight: float = Field(1e-5, ge=0)
    require_pow: bool = False


class LightGCN(GraphScorer):
    """Mean of the id embeddings propagated 0..L hops over the normalized graph."""
    def __init__(self, space: ItemSpace, c: LightGCNConfig) -> None:
        super().__init__(space, c.embedding_dim)
        self.adj = graph_of(space).adjacency("sym")
        self.n_layers, self.reg_weight, self.require_pow = c.n_layers, c.reg_weight, c.require_pow
        torch.nn.init.xavier_uniform_(self.user.weight)
        torch.nn.init.xavier_uniform_(self.item.weight)

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer mean of the propagated id embeddings, split into users and item ids."""
        final = layer_mean(self.on_device(self.adj), torch.cat([self.user.weight, self.item.weight]), self.n_layers)
        return final[: self.n_users], final[self.n_users:]


@register_model("lightgcn", family="graph", config=LightGCNConfig, onnx=False)
def build_lightgcn(space: ItemSpace, config: LightGCNConfig) -> LightGCN:
    """LightGCN: linear propagation over the normalized user-item graph, layer mean, inner product."""
    return LightGCN(space, config)
