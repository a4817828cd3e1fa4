"""Multi-scenario CTR: a STAR-style backbone, and LLM4MSR's knowledge-driven meta layers on top of it.

Backbone (``star``): field embeddings -> shared MLP -> a star-topology FC per scenario (weights
``W_shared * W_s``, bias ``b_shared + b_s``, as in STAR) -> logit, plus a per-scenario bias.

LLM4MSR (``meta.enabled``): two hierarchical meta-networks turn LLM knowledge into layer parameters.
- The *user-level* meta net maps the user's cross-scenario knowledge vector k_u to (W_u, b_u) of a layer
  at the **bottom**: x <- x + ReLU(W_u x + b_u) on the flattened embeddings.
- The *scenario-level* meta net maps the scenario's knowledge vector k_s to (W_s, b_s) of a layer **in
  parallel** with the scenario tower: h_s <- STAR_s(h) + ReLU(W_s h + b_s).
Generated matrices are low-rank (W = A B with A, B from the meta net, rank ``meta.rank``) so the meta
nets stay small; the residual form at the bottom keeps training stable (both are our choices, the paper
does not fix them). The knowledge vectors are dense features excluded from the field embeddings."""
from __future__ import annotations

import torch
from torch import nn

from llmrec.config import StrictConfig
from llmrec.ctr.features import Batch, FeatureEncoder
from llmrec.ctr.layers import MLP
from llmrec.errors import ConfigError
from llmrec.models.ctr.base import DeepCTRConfig, field_embedding
from llmrec.models.registry import register_model


class MetaConfig(StrictConfig):
    """LLM4MSR meta-network settings: scenario-level and user-level meta layers generated from knowledge."""
    enabled: bool = False
    user_knowledge: str | None = "user_scenario_knowledge"  # dense feature: per-user vector
    scenario_knowledge: str | None = "scenario_knowledge"  # dense feature: per-scenario vector
    rank: int = 8
    hidden: int = 64


class StarConfig(DeepCTRConfig):
    """STAR multi-scenario settings: the scenario field, shared and per-scenario towers, meta layers."""
    scenario_field: str = "scenario"  # a categorical feature
    tower_units: int = 64
    meta: MetaConfig = MetaConfig()


class MetaLayer(nn.Module):
    """Hypernetwork: knowledge vector k -> a low-rank linear layer (A [out x r], B [r x in], b [out]) applied
    per sample: y = ReLU(A (B x) + b)."""

    def __init__(self, k_dim: int, in_dim: int, out_dim: int, rank: int, hidden: int) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.rank = in_dim, out_dim, rank
        self.net = nn.Sequential(nn.Linear(k_dim, hidden), nn.ReLU())
        self.a = nn.Linear(hidden, out_dim * rank)
        self.b = nn.Linear(hidden, rank * in_dim)
        self.bias = nn.Linear(hidden, out_dim)
        for lin in (self.a, self.b):
            nn.init.normal_(lin.weight, std=0.01)
            nn.init.zeros_(lin.bias)
        nn.init.zeros_(self.bias.weight)
        nn.init.zeros_(self.bias.bias)

    def forward(self, k: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        z = self.net(k)
        a = self.a(z).view(-1, self.out_dim, self.rank)
        b = self.b(z).view(-1, self.rank, self.in_dim)
        y = torch.bmm(a, torch.bmm(b, x.unsqueeze(-1))).squeeze(-1) + self.bias(z)
        return torch.relu(y)


class MultiScenarioModel(nn.Module):
    """STAR-style multi-scenario model (shared x per-scenario weights) with optional LLM4MSR meta layers."""
    def __init__(self, encoder: FeatureEncoder, config: StarConfig) -> None:
        super().__init__()
        self.config = ms = c = config
        cats = [s.name for s in encoder.categorical]
        if ms.scenario_field not in cats:
            raise ConfigError(f"model.scenario_field: {ms.scenario_field!r} is not a categorical feature "
                             f"(have {cats})")
        self.scenario_pos = cats.index(ms.scenario_field)
        self.scenario_offset = encoder.offsets()[ms.scenario_field]
        n_scen = len(encoder.vocab[ms.scenario_field]) + 1  # + OOV
        dense = {s.name: s.dim for s in encoder.dense}
        meta = ms.meta
        self.user_k = self.scen_k = None
        if meta.enabled:
            for field_name, value in (("user_knowledge", meta.user_knowledge),
                                      ("scenario_knowledge", meta.scenario_knowledge)):
                if value is not None and value not in dense:
                    raise ConfigError(f"model.meta.{field_name}: {value!r} is not a dense feature "
                                     f"(have {sorted(dense)})")
            self.user_k, self.scen_k = meta.user_knowledge, meta.scenario_knowledge
        excluded = frozenset(n for n in (self.user_k, self.scen_k) if n)
        self.embedding = field_embedding(encoder, c, exclude_dense=excluded)
        in_dim = self.embedding.n_fields * c.embedding_dim
        self.user_meta = MetaLayer(dense[self.user_k], in_dim, in_dim, meta.rank, meta.hidden) if self.user_k else None
        if not c.hidden_units:
            raise ConfigError("model.hidden_units: the multi-scenario backbone needs a shared MLP (at least one layer)")
        self.shared = MLP(in_dim, c.hidden_units, c.dropout, c.batch_norm, out_dim=None)
        h, t = c.hidden_units[-1], ms.tower_units
        self.w_shared = nn.Parameter(torch.empty(h, t))
        nn.init.xavier_normal_(self.w_shared)
        self.b_shared = nn.Parameter(torch.zeros(t))
        self.w_scen = nn.Parameter(torch.ones(n_scen, h, t))
        self.b_scen = nn.Parameter(torch.zeros(n_scen, t))
        self.scen_meta = MetaLayer(dense[self.scen_k], h, t, meta.rank, meta.hidden) if self.scen_k else None
        self.out = nn.Linear(t, 1)
        self.scen_bias = nn.Embedding(n_scen, 1)
        nn.init.zeros_(self.scen_bias.weight)

    def embedding_tables(self) -> list[torch.Tensor]:
        """The embedding tables the trainer's embedding L2 applies to."""
        return self.embedding.embedding_tables()

    def scenario_index(self, batch: Batch) -> torch.Tensor:
        """The scenario id of every row of a batch."""
        return batch.cat[:, self.scenario_pos] - self.scenario_offset

    def forward(self, batch: Batch) -> torch.Tensor:
        s = self.scenario_index(batch)
        x = self.embedding(batch).flatten(1)
        if self.user_meta is not None:
            x = x + self.user_meta(batch.dense[self.user_k], x)
        h = self.shared(x)
        z_all = torch.einsum("bh,sht->bst", h, self.w_scen * self.w_shared)  # star topology, every scenario
        z = z_all[torch.arange(len(s), device=s.device), s] + self.b_shared + self.b_scen[s]
        z = torch.relu(z)
        if self.scen_meta is not None:
            z = z + self.scen_meta(batch.dense[self.scen_k], h)
        return self.out(z).squeeze(-1) + self.scen_bias(s).squeeze(-1)


@register_model("star", family="multitask", config=StarConfig, task="pointwise")
def build_star(encoder: FeatureEncoder, config: StarConfig) -> MultiScenarioModel:
    """STAR multi-scenario backbone; ``meta.enabled`` adds LLM4MSR's knowledge-generated meta layers."""
    return MultiScenarioModel(encoder, config)
