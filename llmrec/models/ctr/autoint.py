"""AutoInt / AutoInt+ (Song et al., CIKM 2019): stacked multi-head self-attention ("interacting") layers
over the field embeddings, flattened into a logit; AutoInt+ adds an MLP over the embeddings whose logit is
summed with the attention logit. ``hidden_units: []`` gives plain AutoInt."""
from __future__ import annotations

import torch
from torch import nn

from llmrec.ctr.features import Batch, FeatureEncoder
from llmrec.ctr.layers import MLP, InteractingLayer
from llmrec.models.ctr.base import DeepCTRConfig, field_embedding
from llmrec.models.registry import register_model


class AutoIntConfig(DeepCTRConfig):
    """AutoInt+ hyperparameters: attention layers and heads, attention size, residual, plus the DNN tower."""
    attention_layers: int = 3
    heads: int = 2
    head_dim: int = 16
    residual: bool = True
    scale: bool = False  # the paper uses unscaled dot products


class AutoIntPlus(nn.Module):
    """AutoInt+: multi-head self-attention over field embeddings, in parallel with a DNN."""
    def __init__(self, encoder: FeatureEncoder, c: AutoIntConfig) -> None:
        super().__init__()
        self.embedding = field_embedding(encoder, c)
        n, d = self.embedding.n_fields, c.embedding_dim
        layers = []
        for _ in range(c.attention_layers):
            layers.append(InteractingLayer(d, c.head_dim, c.heads, c.residual, c.scale))
            d = layers[-1].out_dim
        self.attention = nn.Sequential(*layers)
        self.attention_head = nn.Linear(n * d, 1)
        self.deep = MLP(n * c.embedding_dim, c.hidden_units, c.dropout, c.batch_norm) if c.hidden_units else None

    def embedding_tables(self) -> list[torch.Tensor]:
        """The embedding tables the trainer's embedding L2 applies to."""
        return self.embedding.embedding_tables()

    def forward(self, batch: Batch) -> torch.Tensor:
        emb = self.embedding(batch)
        logit = self.attention_head(self.attention(emb).flatten(1)).squeeze(-1)
        if self.deep is not None:
            logit = logit + self.deep(emb.flatten(1)).squeeze(-1)
        return logit


@register_model("autoint_plus", family="ctr", config=AutoIntConfig)
def build_autoint_plus(encoder: FeatureEncoder, config: AutoIntConfig) -> AutoIntPlus:
    """AutoInt+: multi-head self-attention over fields + a parallel MLP."""
    return AutoIntPlus(encoder, config)
