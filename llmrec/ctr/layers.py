"""Shared layers every CTR model is composed from: field embeddings, FM interaction, MLP."""
from __future__ import annotations

import torch
from torch import nn

from llmrec.ctr.features import Batch, FeatureEncoder


class FieldEmbedding(nn.Module):
    """Turns a ``Batch`` into per-field vectors ``[B, F, dim]``.

    Categorical fields share one table (offsets per field): one lookup for all of them.
    Numerical fields: value x a learned vector per field. Multi-hot: mean of token vectors.
    Dense (e.g. LLM knowledge): a linear projection to ``dim``."""

    def __init__(self, encoder: FeatureEncoder, dim: int, init_std: float = 1e-4) -> None:
        super().__init__()
        self.dim = dim
        self.table = nn.Embedding(max(1, encoder.n_categorical_rows()), dim)
        self.num_vectors = nn.Parameter(torch.empty(len(encoder.numerical), dim))
        self.seq_tables = nn.ModuleDict({
            s.name: nn.EmbeddingBag(encoder.cardinalities()[s.name], dim, mode="mean", padding_idx=0)
            for s in encoder.multi_hot
        })
        self.dense_proj = nn.ModuleDict({s.name: nn.Linear(s.dim, dim) for s in encoder.dense})
        self.n_fields = len(encoder.categorical) + len(encoder.numerical) + len(encoder.multi_hot) + len(encoder.dense)
        for p in [self.table.weight, self.num_vectors, *[t.weight for t in self.seq_tables.values()]]:
            nn.init.normal_(p, std=init_std)
        for lin in self.dense_proj.values():
            nn.init.xavier_normal_(lin.weight)
            nn.init.zeros_(lin.bias)

    def embedding_tables(self) -> list[torch.Tensor]:
        """The parameters the trainer's embedding regularizer applies to."""
        return [self.table.weight, self.num_vectors, *[t.weight for t in self.seq_tables.values()]]

    def forward(self, batch: Batch) -> torch.Tensor:
        parts = []
        if batch.cat.shape[1]:
            parts.append(self.table(batch.cat))
        if batch.num.shape[1]:
            parts.append(batch.num.unsqueeze(-1) * self.num_vectors)
        for name, bag in self.seq_tables.items():
            ids = batch.seq[name]
            parts.append(bag(ids, per_sample_weights=None).unsqueeze(1) if ids.numel() else
                         ids.new_zeros((ids.shape[0], 1, self.dim), dtype=torch.float32))
        for name, proj in self.dense_proj.items():
            parts.append(proj(batch.dense[name]).unsqueeze(1))
        return torch.cat(parts, dim=1)


class FMInteraction(nn.Module):
    """Second-order factorization machine term: sum over field pairs of <v_i, v_j>."""

    def forward(self, emb: torch.Tensor) -> torch.Tensor:  # [B, F, d] -> [B]
        square_of_sum = emb.sum(1).pow(2)
        sum_of_square = emb.pow(2).sum(1)
        return 0.5 * (square_of_sum - sum_of_square).sum(-1)


class MLP(nn.Module):
    def __init__(self, in_dim: int, hidden: list[int], dropout: float = 0.0, batch_norm: bool = False,
                 out_dim: int | None = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            layers.append(nn.Linear(d, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            d = h
        if out_dim is not None:
            layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim if out_dim is not None else d
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
