"""How dense knowledge vectors become field embeddings.

- ``linear``: one projection per dense feature (FuxiCTR's ``embedding`` feature type).
- ``hea``: KAR's hybrid-expert adaptor — shared experts plus experts specific to each knowledge type;
  each type's gate (softmax over its shared + specific experts, computed from that type's vector) mixes
  the expert outputs into one augmented vector per type. Experts are MLPs ``hidden -> dim``
  (KAR: 2 shared, 6 specific, [128, 32] with 32 = embedding width).
- ``moe``: the same experts, all shared, one gate per type (KAR's MoE alternative).
- ``mlp``: one MLP per type (KAR's MLP alternative).
Every variant returns ``[B, n_dense, dim]`` so any backbone treats knowledge as extra fields."""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from pydantic import Field

from llmrec.config import StrictConfig


class AdaptorConfig(StrictConfig):
    """Settings of the KAR hybrid-expert adaptor: experts, their width, the gate and dropout."""
    kind: Literal["linear", "hea", "moe", "mlp"] = "linear"
    shared_experts: int = 2
    specific_experts: int = 6
    hidden_units: list[int] = [128]
    dropout: float = 0.0
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False)  # L2 on the adaptor's own weights (Adam's
    # coupled weight decay): with ~400k adaptor parameters against a few 10k rows, the knowledge path overfits


def _expert(in_dim: int, hidden: list[int], out_dim: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU(), nn.Dropout(dropout)]
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class KnowledgeAdaptor(nn.Module):
    """KAR's hybrid-expert adaptor: shared and per-knowledge-type experts with gates turn knowledge vectors into
    extra feature fields for any CTR backbone."""
    def __init__(self, in_dims: dict[str, int], out_dim: int, config: AdaptorConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or AdaptorConfig()
        self.weight_decay = c.weight_decay  # read by the trainer (its own optimizer parameter group)
        self.names = list(in_dims)
        if c.kind in ("hea", "moe") and len({*in_dims.values()}) > 1:
            raise ValueError(f"knowledge_adaptor: {c.kind} shares experts, so every knowledge vector needs one "
                             f"dimension (got {in_dims})")
        if c.kind == "linear":
            self.proj = nn.ModuleDict({n: nn.Linear(d, out_dim) for n, d in in_dims.items()})
            for lin in self.proj.values():
                nn.init.xavier_normal_(lin.weight)
                nn.init.zeros_(lin.bias)
        elif c.kind == "mlp":
            self.proj = nn.ModuleDict({n: _expert(d, c.hidden_units, out_dim, c.dropout) for n, d in in_dims.items()})
        else:
            d = next(iter(in_dims.values())) if in_dims else 1
            n_shared = c.shared_experts if c.kind == "hea" else c.shared_experts + c.specific_experts
            n_specific = c.specific_experts if c.kind == "hea" else 0
            if n_shared + n_specific < 1:
                raise ValueError("knowledge_adaptor: needs at least one expert")
            self.shared = nn.ModuleList([_expert(d, c.hidden_units, out_dim, c.dropout) for _ in range(n_shared)])
            self.specific = nn.ModuleDict({n: nn.ModuleList([_expert(d, c.hidden_units, out_dim, c.dropout)
                                                             for _ in range(n_specific)]) for n in in_dims})
            self.gates = nn.ModuleDict({n: nn.Linear(d, n_shared + n_specific) for n in in_dims})

    def forward(self, dense: dict[str, torch.Tensor]) -> torch.Tensor:
        kind = self.config.kind
        if kind in ("linear", "mlp"):
            return torch.stack([self.proj[n](dense[n]) for n in self.names], dim=1)
        outs = []
        for n in self.names:
            x = dense[n]
            shared = [e(x) for e in self.shared]  # shared experts see each type's vector (PLE/CGC style)
            experts = torch.stack(shared + [e(x) for e in self.specific[n]], dim=1)  # [B, E, dim]
            gate = torch.softmax(self.gates[n](x), dim=-1).unsqueeze(-1)  # [B, E, 1]
            outs.append((gate * experts).sum(1))
        return torch.stack(outs, dim=1)
