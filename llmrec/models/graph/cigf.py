"""CIGF (Guo et al., WWW 2023): multi-behaviour recommendation over a compressed interaction graph.

**Encoder (CIGCN)**, per behaviour b, over the left-normalized behaviour adjacencies A_k = D_k^-1 A_k:
layer 1 E_b^(1) = A_b E^(0) + E^(0); layers l >= 2 E_b^(l) = sum_k alpha_bk A_k E_b^(l-1) + E_b^(l-1), with
node-level weights alpha_b = LeakyReLU(FC_b(E^(0))) in R^|B| (a compressed multi-behaviour hop: paths that
switch behaviour, instance by instance); the behaviour's vector is sum_l E_b^(l), l = 0..L.
**Decoder (MESI, multi-expert with separate inputs)**: for task b the experts are every behaviour's product
e_u^(k) . e_i^(k); a gate g_b = softmax(FC_b([e_u^(b); e_i^(b)])) mixes them, score_b = sum_k g_bk e_u^(k) . e_i^(k).
``decoder: bilinear`` scores e_u^(b) . e_i^(b) alone (the paper's ablation).
**Loss**: BPR on every behaviour's rows (the view's ``train_on: all``; each row is scored by its own
behaviour's task), per-batch L2. Evaluation and ``full_scores`` score the target behaviour (the last).

From the authors' TensorFlow code as papers.md §26 describes it (``base_framework_origin_final.py``); the
score multiplier (``mult`` = 300) is left out: it only rescales the BPR logits."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from llmrec.data.views import ItemSpace, PairBatch
from llmrec.errors import ConfigError
from llmrec.models.graph.base import GraphScorer, graph_of, spmm, transpose_csr, xavier_init
from llmrec.models.registry import ModelConfigBase, register_model


class CIGFConfig(ModelConfigBase):
    """CIGF hyperparameters: width, CIGCN layers, decoder (MESI or the bilinear ablation), per-batch L2."""
    embedding_dim: int = Field(64, ge=1)
    n_layers: int = Field(2, ge=1)
    decoder: Literal["mesi", "bilinear"] = "mesi"
    reg_weight: float = Field(1e-5, ge=0)


class CIGF(GraphScorer):
    """Per-behaviour CIGCN encoders sharing id embeddings, and a gated multi-expert decoder per behaviour."""
    def __init__(self, space: ItemSpace, c: CIGFConfig) -> None:
        super().__init__(space, c.embedding_dim)
        g = graph_of(space)
        if not g.behaviours:
            raise ConfigError("model: cigf needs behaviour graphs (set graph.behaviours in the job)")
        self.names = list(g.behaviours)
        nb, d = len(self.names), c.embedding_dim
        self.adj = [g.adjacency("left", behaviour=b) for b in self.names]
        self.adj_t = [transpose_csr(a) for a in self.adj]
        self.n_layers, self.decoder, self.reg_weight = c.n_layers, c.decoder, c.reg_weight
        self.attention = nn.ModuleList(nn.Linear(d, nb) for _ in range(nb))
        self.gate_user = nn.ModuleList(nn.Linear(d, nb) for _ in range(nb))
        self.gate_item = nn.ModuleList(nn.Linear(d, nb, bias=False) for _ in range(nb))
        xavier_init(self)

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """[behaviours, U, d] and [behaviours, I, d]: every behaviour's user and item vectors."""
        e0 = torch.cat([self.user.weight, self.item.weight])
        adj = [self.on_device(a) for a in self.adj]
        adj_t = [self.on_device(a) for a in self.adj_t]
        out = []
        for b in range(len(self.names)):
            h = spmm(adj[b], e0, adj_t[b]) + e0
            total = e0 + h
            if self.n_layers > 1:
                alpha = nn.functional.leaky_relu(self.attention[b](e0))  # [N, behaviours]
                for _ in range(self.n_layers - 1):
                    h = sum(alpha[:, k:k + 1] * spmm(adj[k], h, adj_t[k]) for k in range(len(adj))) + h
                    total = total + h
            out.append(total)
        final = torch.stack(out)
        return final[:, : self.n_users], final[:, self.n_users:]

    def _mix(self, experts: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return (torch.softmax(gate, -1) * experts).sum(-1)

    def forward(self, batch: PairBatch) -> torch.Tensor:
        """Scores of ``batch.items`` ([B] or [B, C]) for ``batch.users``, each row by its behaviour's task."""
        users, items = self._final()
        nb = len(self.names)
        beh = batch.behaviour if batch.behaviour is not None else torch.full_like(batch.users, nb - 1)
        u = users[:, batch.users]  # [behaviours, B, d]
        v = items[:, batch.items]  # [behaviours, B(, C), d]
        if v.ndim == 3:
            v = v.unsqueeze(2)
        experts = (u.unsqueeze(2) * v).sum(-1).permute(1, 2, 0)  # [B, C, behaviours]
        rows = torch.arange(len(beh), device=beh.device)
        if self.decoder == "bilinear":
            out = experts[rows, :, beh]
        else:
            ub, vb = u[beh, rows], v[beh, rows]  # each row's own behaviour's vectors
            gu = torch.stack([g(ub) for g in self.gate_user], 1)[rows, beh]  # [B, behaviours]
            gi = torch.stack([g(vb) for g in self.gate_item], 1)[rows, beh]  # [B, C, behaviours]
            out = self._mix(experts, gu.unsqueeze(1) + gi)
        return out.squeeze(1) if batch.items.ndim == 1 else out

    def full_scores(self, users: torch.Tensor) -> torch.Tensor:
        """[U, n_items] target-behaviour scores over every item (column 0 is padding)."""
        u, i = self._final()
        t = len(self.names) - 1
        experts = torch.stack([u[k, users] @ i[k].T for k in range(len(self.names))], -1)  # [U, I, behaviours]
        if self.decoder == "bilinear":
            return experts[..., t]
        gate = self.gate_user[t](u[t, users]).unsqueeze(1) + self.gate_item[t](i[t]).unsqueeze(0)
        return self._mix(experts, gate)


@register_model("cigf", family="graph", config=CIGFConfig, onnx=False)
def build_cigf(space: ItemSpace, config: CIGFConfig) -> CIGF:
    """CIGF: compressed multi-behaviour graph encoder and a gated multi-expert decoder (target = last behaviour)."""
    return CIGF(space, config)
