"""Multi-GCCF (Sun et al., ICDM 2019): three views of every user and item, concatenated, scored by inner product.

1. **Bipartite GCN** with separate user-side and item-side weights (GraphSAGE-style, mean aggregator, full
   neighbourhoods instead of sampled ones): h_u^(l) = tanh(W_u^(l) [h_u^(l-1); mean_{i in N(u)} h_i^(l-1)]),
   the item side symmetric with W_i^(l); ``layers`` sets the widths (2 hops of 64 by default).
2. **Multi-graph encoding**: one GCN layer over the user-user and item-item graphs (top-``similarity_k``
   cosine neighbours from the training matrix, symmetric-normalized): z = tanh(S E W_s).
3. **Skip connection**: the id embedding through a linear layer, s = E W_k.
Final vector [h; z; s]; BPR with per-batch L2 (``reg_weight``). ``sample`` (training only): per hop, at most
that many neighbours drawn for each node's mean, as GraphSAGE / the paper (S1 = 10, S2 = 5); evaluation
reads full neighbourhoods (the sampled mean's expectation). ``multi_graph: false`` drops z (the paper's
ablation without MGE); ``skip: false`` drops s; ``bipartite: false`` drops h (the parts alone are measured in
``graph_multigccf_parts``). ``message: transform`` builds the neighbours' message as the paper's message
construction reads, tanh(mean_{i in N(u)} h_i Q_u^(l)), before the concatenation with h_u. The layer formulas
follow the commonly cited description of the paper (no public code; see papers.md §27)."""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from llmrec.data.views import ItemSpace
from llmrec.models.graph.base import GraphScorer, graph_of, spmm, transpose_csr, xavier_init
from llmrec.models.registry import ModelConfigBase, register_model


class MultiGCCFConfig(ModelConfigBase):
    """Multi-GCCF hyperparameters: id width, bipartite GCN widths, similarity graph size, parts, L2."""
    embedding_dim: int = Field(64, ge=1)
    layers: list[int] = Field([64, 64], min_length=1)  # bipartite GCN output width per hop
    similarity_k: int = Field(10, ge=1)  # neighbours per node in the user-user / item-item graphs
    # training: per hop (the nearest first), at most this many neighbours sampled for each node's mean, as
    # GraphSAGE and the paper (S1 = 10, S2 = 5); None: full neighbourhoods. Evaluation uses full ones.
    sample: list[int] | None = None
    # the three parts concatenated into the final vector; each can be left out (the parts alone are measured
    # in graph_multigccf_parts); at least one stays
    bipartite: bool = True
    multi_graph: bool = True
    skip: bool = True
    # a neighbour's message: "mean", the plain mean of the neighbours' vectors (what ran first); "transform", the
    # paper's message construction, sigma(mean(h Q)) with a per-side, per-hop weight Q, before the concatenation
    message: Literal["mean", "transform"] = "mean"
    reg_weight: float = Field(1e-5, ge=0)
    # the paper's sigma after each GCN layer; identity: linear layers (LightGCN's ablation of nonlinearity)
    activation: Literal["tanh", "identity"] = "tanh"


class MultiGCCF(GraphScorer):
    """Bipartite GCN + user-user / item-item GCN + skip connection, concatenated."""
    def __init__(self, space: ItemSpace, c: MultiGCCFConfig) -> None:
        super().__init__(space, c.embedding_dim)
        g = graph_of(space)
        if not (c.bipartite or c.multi_graph or c.skip):
            raise ValueError("bipartite, multi_graph, skip: at least one part must stay")
        self.reg_weight, self.bipartite, self.multi_graph, self.skip = c.reg_weight, c.bipartite, c.multi_graph, c.skip
        self.act = torch.tanh if c.activation == "tanh" else (lambda x: x)
        if c.sample is not None and len(c.sample) != len(c.layers):
            raise ValueError(f"sample: one size per hop, {len(c.layers)} (layers), not {len(c.sample)}")
        self.graph, self.sample = g, c.sample
        self.u_mean, self.i_mean = g.neighbours("user"), g.neighbours("item")  # [U, I], [I, U]
        self.u_mean_t, self.i_mean_t = transpose_csr(self.u_mean), transpose_csr(self.i_mean)
        dims = [c.embedding_dim, *c.layers] if c.bipartite else [c.embedding_dim]  # no bipartite part: no layers
        self.user_layers = nn.ModuleList(nn.Linear(2 * a, b) for a, b in zip(dims, dims[1:]))
        self.item_layers = nn.ModuleList(nn.Linear(2 * a, b) for a, b in zip(dims, dims[1:]))
        self.message = c.message
        if c.message == "transform":  # Q: the user side's messages come from items and the other way round
            self.user_messages = nn.ModuleList(nn.Linear(a, a, bias=False) for a in dims[:-1])
            self.item_messages = nn.ModuleList(nn.Linear(a, a, bias=False) for a in dims[:-1])
        if c.multi_graph:
            self.u_sim, self.i_sim = g.similarity("user", c.similarity_k), g.similarity("item", c.similarity_k)
            self.user_graph = nn.Linear(c.embedding_dim, c.embedding_dim, bias=False)
            self.item_graph = nn.Linear(c.embedding_dim, c.embedding_dim, bias=False)
        if c.skip:
            self.user_skip = nn.Linear(c.embedding_dim, c.embedding_dim, bias=False)
            self.item_skip = nn.Linear(c.embedding_dim, c.embedding_dim, bias=False)
        xavier_init(self)

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """[bipartite GCN; multi-graph GCN; skip] of every user and item, as configured."""
        eu, ei = self.user.weight, self.item.weight
        hu, hi = eu, ei
        full = [(self.u_mean, self.u_mean_t, self.i_mean, self.i_mean_t)] * len(self.user_layers)
        if self.training and self.sample is not None:  # hop l of the output = layer L - l of the stack
            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,))))
            full = [(*self.graph.sampled_neighbours("user", cap, rng), *self.graph.sampled_neighbours("item", cap, rng))
                    for cap in reversed(self.sample)]
        for hop, ((um, ut, im, it), wu, wi) in enumerate(zip(full, self.user_layers, self.item_layers)):
            if self.message == "transform":
                agg_u = self.act(spmm(self.on_device(um), self.user_messages[hop](hi), self.on_device(ut)))
                agg_i = self.act(spmm(self.on_device(im), self.item_messages[hop](hu), self.on_device(it)))
            else:
                agg_u = spmm(self.on_device(um), hi, self.on_device(ut))
                agg_i = spmm(self.on_device(im), hu, self.on_device(it))
            hu, hi = self.act(wu(torch.cat([hu, agg_u], 1))), self.act(wi(torch.cat([hi, agg_i], 1)))
        users, items = ([hu], [hi]) if self.bipartite else ([], [])  # no layers ran without the bipartite part
        if self.multi_graph:
            users.append(self.act(spmm(self.on_device(self.u_sim), self.user_graph(eu))))
            items.append(self.act(spmm(self.on_device(self.i_sim), self.item_graph(ei))))
        if self.skip:
            users.append(self.user_skip(eu))
            items.append(self.item_skip(ei))
        return torch.cat(users, 1), torch.cat(items, 1)


@register_model("multigccf", family="graph", config=MultiGCCFConfig, onnx=False)
def build_multigccf(space: ItemSpace, config: MultiGCCFConfig) -> MultiGCCF:
    """Multi-GCCF: bipartite GCN with user / item weights, user-user and item-item graphs, skip connection."""
    return MultiGCCF(space, config)
