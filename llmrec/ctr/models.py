"""CTR models, each a small composition of the shared layers. ``forward(batch) -> logits [B]``."""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from llmrec.config import StrictConfig
from llmrec.ctr.features import Batch, FeatureEncoder
from llmrec.ctr.layers import MLP, FieldEmbedding, FMInteraction


class ModelConfig(StrictConfig):
    name: Literal["lr", "fm", "deepfm"] = "deepfm"
    embedding_dim: int = 10
    hidden_units: list[int] = [400, 400, 400]
    dropout: float = 0.2
    batch_norm: bool = False


class LinearTerm(nn.Module):
    """First-order term: a 1-d embedding per field value, summed, plus a bias."""

    def __init__(self, encoder: FeatureEncoder) -> None:
        super().__init__()
        self.emb = FieldEmbedding(encoder, 1)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.emb(batch).sum(dim=(1, 2)) + self.bias


class CTRModel(nn.Module):
    """LR, FM and DeepFM share one structure: linear term + optional FM + optional deep part."""

    def __init__(self, encoder: FeatureEncoder, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.linear = LinearTerm(encoder)
        self.embedding = FieldEmbedding(encoder, config.embedding_dim) if config.name != "lr" else None
        self.fm = FMInteraction() if config.name in ("fm", "deepfm") else None
        self.deep = None
        if config.name == "deepfm":
            self.deep = MLP(self.embedding.n_fields * config.embedding_dim, config.hidden_units,
                            config.dropout, config.batch_norm)

    def embedding_tables(self) -> list[torch.Tensor]:
        tables = self.linear.emb.embedding_tables()
        if self.embedding is not None:
            tables += self.embedding.embedding_tables()
        return tables

    def forward(self, batch: Batch) -> torch.Tensor:
        logit = self.linear(batch)
        if self.embedding is not None:
            emb = self.embedding(batch)
            if self.fm is not None:
                logit = logit + self.fm(emb)
            if self.deep is not None:
                logit = logit + self.deep(emb.flatten(1)).squeeze(-1)
        return logit


def build_model(encoder: FeatureEncoder, config: ModelConfig) -> CTRModel:
    return CTRModel(encoder, config)
