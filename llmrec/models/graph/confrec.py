"""ConFRec (Gao et al., arXiv 2110.12681): a content-filtering branch beside a graph recommender.

Graph branch: LightGCN over the user-item graph (mean of 0..L propagated id embeddings). Content branch: every
item's fixed text vector t_i (``ItemSpace.item_vectors``: MiniLM over the item text, or ``llmrec extract``
knowledge; the job's ``knowledge`` block) through a two-layer MLP, c_i = W2 tanh(W1 t_i); a user's content
vector is the mean of the content vectors of the items it trained on (NRMS's user encoder without its
attention). The two are concatenated, [e; c], and scored by inner product, so an item the graph has
barely seen still carries its text. ``branches: content`` keeps only the content branch (the text-only
baseline), ``graph`` only LightGCN. The paper wraps a news GNN and an NRMS-style text encoder; here the text
encoder is the frozen sentence encoder (papers.md §30)."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from llmrec.data.views import ItemSpace
from llmrec.errors import ConfigError
from llmrec.models.graph.base import GraphScorer, graph_of, layer_mean, spmm, transpose_csr, xavier_init
from llmrec.models.registry import ModelConfigBase, register_model


class ConFRecConfig(ModelConfigBase):
    """ConFRec hyperparameters: width, LightGCN layers, branches, L2; ``text_dim`` is read from the vectors."""
    embedding_dim: int = Field(64, ge=1)
    n_layers: int = Field(2, ge=0)
    branches: Literal["both", "graph", "content"] = "both"
    reg_weight: float = Field(1e-5, ge=0)
    text_dim: int = Field(0, ge=0)  # set from the item vectors when the model is built


class ConFRec(GraphScorer):
    """LightGCN vectors concatenated with content vectors of the item text and of the user's items."""
    def __init__(self, space: ItemSpace, c: ConFRecConfig) -> None:
        super().__init__(space, c.embedding_dim)
        g = graph_of(space)
        self.adj = g.adjacency("sym")
        self.u_mean = g.neighbours("user")
        self.u_mean_t = transpose_csr(self.u_mean)
        self.n_layers, self.branches, self.reg_weight = c.n_layers, c.branches, c.reg_weight
        if c.branches != "graph":
            if not c.text_dim:
                raise ConfigError("model: confrec's content branch needs item vectors (set knowledge in the job)")
            vectors = torch.zeros(space.n_items, c.text_dim)
            if space.item_vectors is not None:
                vectors = torch.as_tensor(space.item_vectors, dtype=torch.float32)
            self.register_buffer("item_text", vectors)
            self.content = nn.Sequential(nn.Linear(c.text_dim, c.embedding_dim), nn.Tanh(),
                                         nn.Linear(c.embedding_dim, c.embedding_dim))
        xavier_init(self)

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """[LightGCN vector; content vector] of every user and item (one branch with ``branches``)."""
        users, items = [], []
        if self.branches != "content":
            e = layer_mean(self.on_device(self.adj), torch.cat([self.user.weight, self.item.weight]), self.n_layers)
            users.append(e[: self.n_users])
            items.append(e[self.n_users:])
        if self.branches != "graph":
            ci = self.content(self.item_text)
            users.append(spmm(self.on_device(self.u_mean), ci, self.on_device(self.u_mean_t)))
            items.append(ci)
        return torch.cat(users, 1), torch.cat(items, 1)


@register_model("confrec", family="graph", config=ConFRecConfig, onnx=False)
def build_confrec(space: ItemSpace, config: ConFRecConfig) -> ConFRec:
    """ConFRec: LightGCN with a content-filtering branch over item text / LLM knowledge vectors."""
    width = int(space.item_vectors.shape[1]) if space.item_vectors is not None else config.text_dim
    config = config.model_copy(update={"text_dim": width})
    model = ConFRec(space, config)
    model.config = config
    return model
