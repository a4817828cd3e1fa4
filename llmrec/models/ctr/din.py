"""DIN (Zhou et al., KDD 2018): Deep Interest Network. For each behaviour-sequence feature (type
``behavior``: the user's earlier items, ids of a categorical field such as ``item_id``), a local activation
unit scores every behaviour against the candidate (MLP over [target, behaviour, target - behaviour,
target * behaviour]); the behaviours' embeddings, weighted by those scores (not normalized by default, as
in the paper: the sum keeps the strength of the interest), pool into one user-interest vector. The tower is
an MLP over every field embedding plus the pooled vectors, with Dice activations (the paper's
data-adaptive PReLU) by default.

Behaviours use the rows of their target field in the shared categorical table (one embedding per item,
whether it is the candidate or in a history); padding positions are masked out. With ``miss`` set, MISS's
multi-interest contrastive loss (``llmrec.ctr.miss``) trains the behaviour embeddings alongside."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from llmrec.ctr.features import Batch, FeatureEncoder
from llmrec.ctr.layers import FastDropout
from llmrec.ctr.miss import MISS, MISSConfig
from llmrec.errors import ConfigError
from llmrec.models.ctr.base import DeepCTRConfig, field_embedding
from llmrec.models.registry import register_model


class DINConfig(DeepCTRConfig):
    """DIN hyperparameters: the attention unit's hidden sizes, the activation, softmax or raw weights."""
    hidden_units: list[int] = [200, 80]
    attention_units: list[int] = Field(default_factory=lambda: [80, 40])
    activation: Literal["dice", "relu"] = "dice"
    attention_softmax: bool = False  # normalize the weights over the sequence (the paper does not)
    miss: MISSConfig | None = None  # MISS's multi-interest contrastive loss on the behaviour embeddings


class Dice(nn.Module):
    """Dice (DIN's activation): p(x) x + (1 - p(x)) alpha x, p = sigmoid of the batch-normalized input
    (running statistics at evaluation), alpha learned per unit."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.bn = nn.BatchNorm1d(dim, affine=False, eps=1e-8)
        self.alpha = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:  # batch statistics over every position (and update the running ones)
            z = self.bn(x.reshape(-1, self.dim)).reshape(x.shape)
        else:  # the running statistics, broadcast over the last axis (what BatchNorm does at evaluation)
            z = (x - self.bn.running_mean) / torch.sqrt(self.bn.running_var + self.bn.eps)
        # p x + (1 - p) alpha x = x (alpha + p (1 - alpha)): two elementwise ops instead of five, forward
        # and backward (elementwise products were half of DIN's step time, over batch x history positions)
        return x * torch.addcmul(self.alpha, torch.sigmoid(z), 1 - self.alpha)


def _tower(in_dim: int, hidden: list[int], activation: str, dropout: float) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for h in hidden:
        lin = nn.Linear(in_dim, h)
        nn.init.xavier_normal_(lin.weight)
        nn.init.zeros_(lin.bias)
        layers += [lin, Dice(h) if activation == "dice" else nn.ReLU()]
        if dropout > 0:
            layers.append(FastDropout(dropout))
        in_dim = h
    return nn.Sequential(*layers), in_dim


class LocalActivation(nn.Module):
    """DIN's attention over one behaviour sequence: weights from [t, h, t - h, t * h], masked, pooled."""

    def __init__(self, dim: int, units: list[int], activation: str, softmax: bool) -> None:
        super().__init__()
        self.mlp, out = _tower(4 * dim, units, activation, 0.0)
        self.score = nn.Linear(out, 1)
        self.softmax = softmax

    def forward(self, target: torch.Tensor, hist: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """target [B, d], hist [B, L, d], mask [B, L] (True = a behaviour) -> pooled [B, d]."""
        t = target.unsqueeze(1).expand_as(hist)
        w = self.score(self.mlp(torch.cat([t, hist, t - hist, t * hist], dim=-1))).squeeze(-1)
        if self.softmax:
            w = torch.softmax(w.masked_fill(~mask, float("-inf")), dim=1).nan_to_num(0.0)
        else:
            w = w * mask
        return (w.unsqueeze(-1) * hist).sum(1)


class DIN(nn.Module):
    """DIN: field embeddings + one attention-pooled interest vector per behaviour feature -> MLP."""

    def __init__(self, encoder: FeatureEncoder, c: DINConfig) -> None:
        super().__init__()
        if not encoder.behavior:
            raise ConfigError("din: the features have no behaviour sequence (a 'behavior' feature, e.g. "
                              "data.history: 20)")
        if c.embedding_table.kind != "dense":
            raise ConfigError(f"embedding_table.kind: din reads behaviour rows from a dense table, not "
                              f"{c.embedding_table.kind!r}")
        self.embedding = field_embedding(encoder, c)
        names = [s.name for s in encoder.categorical]
        self.behaviors = [(s.name, names.index(s.target)) for s in encoder.behavior]
        d = c.embedding_dim
        self.attention = nn.ModuleList(LocalActivation(d, c.attention_units, c.activation, c.attention_softmax)
                                       for _ in self.behaviors)
        self.deep, out = _tower((self.embedding.n_fields + len(self.behaviors)) * d, c.hidden_units,
                                c.activation, c.dropout)
        self.head = nn.Linear(out, 1)
        self.miss = MISS(d, c.miss) if c.miss is not None else None

    def embedding_tables(self) -> list[torch.Tensor]:
        """The embedding tables the trainer's embedding L2 applies to."""
        return self.embedding.embedding_tables()

    def forward(self, batch: Batch) -> torch.Tensor:
        e = self.embedding(batch)
        parts = [e.flatten(1)]
        for (name, j), att in zip(self.behaviors, self.attention):
            ids = batch.seq[name]
            mask = ids > 0
            hist = self.embedding.table((ids - 1).clamp(min=0))
            if self.miss is not None:
                self.miss.observe(hist, mask)
            parts.append(att(e[:, j], hist, mask))
        return self.head(self.deep(torch.cat(parts, dim=1))).squeeze(-1)


@register_model("din", family="ctr", config=DINConfig)
def build_din(encoder: FeatureEncoder, config: DINConfig) -> DIN:
    """DIN: attention over behaviour sequences (Dice activations) + MLP."""
    return DIN(encoder, config)
