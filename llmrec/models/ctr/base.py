"""What CTR model files share: the base config fields and ``FieldNet``, the composition most of the
family is made of::

    field embeddings -> [linear term] + [FM term] + MLP(flattened embeddings [++ generated fields] [++ products])

Each model file picks the parts (``linear``, ``fm``, a product layer, a field generator); models with their
own structure (DCNv2, AutoInt+, OptInter) compose the same ``FieldEmbedding`` and ``MLP`` differently."""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from llmrec.ctr.adaptor import AdaptorConfig
from llmrec.ctr.features import Batch, FeatureEncoder
from llmrec.ctr.layers import MLP, FieldEmbedding, FMInteraction, TableConfig
from llmrec.models.registry import ModelConfigBase


class CTRConfig(ModelConfigBase):
    """Every CTR model embeds fields the same way."""
    embedding_dim: int = 10
    numeric_embedding: Literal["scalar", "bucket", "autodis"] = "scalar"
    autodis_buckets: int = 20
    autodis_temperature: float = 1.0
    knowledge_adaptor: AdaptorConfig = AdaptorConfig()  # how dense (LLM knowledge) features become fields
    embedding_table: TableConfig = TableConfig()  # dense nn.Embedding, or host table + hot-row cache


class DeepCTRConfig(CTRConfig):
    """CTR models with an MLP."""
    hidden_units: list[int] = [400, 400, 400]
    dropout: float = 0.2
    batch_norm: bool = False


def field_embedding(encoder: FeatureEncoder, c: CTRConfig, exclude_dense: frozenset[str] = frozenset()) -> FieldEmbedding:
    """The field-embedding layer of a CTR model for an encoder's features (dense knowledge fields can be
    excluded)."""
    return FieldEmbedding(encoder, c.embedding_dim, numeric=c.numeric_embedding, autodis_buckets=c.autodis_buckets,
                          autodis_temperature=c.autodis_temperature, adaptor=c.knowledge_adaptor,
                          exclude_dense=exclude_dense, table=c.embedding_table)


class LinearTerm(nn.Module):
    """First-order term: a 1-d embedding per field value, summed, plus a bias."""

    def __init__(self, encoder: FeatureEncoder, numeric: str, table: TableConfig | None = None) -> None:
        super().__init__()
        if table is not None and table.kind == "torchrec":  # FBGEMM's kernels need dims divisible by 4: the
            table = None  # 1-d first-order table stays a plain (data-parallel) table
        self.emb = FieldEmbedding(encoder, 1, numeric="scalar" if numeric == "autodis" else numeric, table=table)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.emb(batch).sum(dim=(1, 2)) + self.bias


class FieldNet(nn.Module):
    """``linear`` + ``fm`` + MLP over [embeddings ++ generator(embeddings)] ++ product(...); any part optional.
    ``product`` / ``generator`` are factories ``(n_fields, dim) -> module`` so the file of each model says
    which layer it uses; a generator module exposes ``n_new`` (fields it adds)."""

    def __init__(self, encoder: FeatureEncoder, c: CTRConfig, linear: bool = False, fm: bool = False,
                 deep: bool = True, product=None, generator=None) -> None:
        super().__init__()
        self.linear = LinearTerm(encoder, c.numeric_embedding, c.embedding_table) if linear else None
        self.embedding = self.fm = self.product = self.generator = self.deep = None
        if not (fm or deep):
            return
        self.embedding = field_embedding(encoder, c)
        n_fields, d = self.embedding.n_fields, c.embedding_dim
        if fm:
            self.fm = FMInteraction()
        if generator is not None:
            self.generator = generator(n_fields, d)
            n_fields += self.generator.n_new
        if product is not None:
            self.product = product(n_fields, d)
        if deep:
            assert isinstance(c, DeepCTRConfig)
            in_dim = n_fields * d + (self.product.out_dim if self.product is not None else 0)
            self.deep = MLP(in_dim, c.hidden_units, c.dropout, c.batch_norm)

    def embedding_tables(self) -> list[torch.Tensor]:
        """The embedding tables the trainer's embedding L2 applies to."""
        tables = self.linear.emb.embedding_tables() if self.linear is not None else []
        if self.embedding is not None:
            tables += self.embedding.embedding_tables()
        return tables

    def forward(self, batch: Batch) -> torch.Tensor:
        logit = self.linear(batch) if self.linear is not None else 0.0
        if self.embedding is None:
            return logit
        emb = self.embedding(batch)
        if self.fm is not None:
            logit = logit + self.fm(emb)
        if self.deep is not None:
            if self.generator is not None:
                emb = torch.cat([emb, self.generator(emb)], dim=1)
            x = emb.flatten(1)
            if self.product is not None:
                x = torch.cat([x, self.product(emb)], dim=1)
            logit = logit + self.deep(x).squeeze(-1)
        return logit
