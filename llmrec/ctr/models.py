"""CTR models, each a small composition of the shared layers. ``forward(batch) -> logits [B]``.

One structure covers the family: field embeddings -> [linear term] + [FM term] + deep part, where the
deep part is an MLP over the flattened embeddings plus an optional product layer:

| name      | linear+FM | product layer into the MLP                      |
|-----------|-----------|-------------------------------------------------|
| lr        | linear    | (no embeddings)                                 |
| fm        | yes       | (no MLP)                                        |
| dnn       | no        | none                                            |
| deepfm    | yes       | none (DeepFM-D)                                 |
| deepfm_p  | yes       | inner products (DeepFM-P)                       |
| ipnn      | no        | inner products                                  |
| kpnn      | no        | kernel products                                 |
| pin       | no        | per-pair micro-networks                         |
| fgcnn     | no        | inner products over raw + FGCNN-generated fields |
| star      | multi-scenario backbone (STAR-style), optional LLM4MSR meta layers: ``llmrec.ctr.multiscenario`` |

Numerical fields are embedded by ``numeric_embedding`` (scalar, bucket, autodis) in every model.
OptInter lives in ``llmrec.ctr.optinter`` (it has a search and a retrain stage)."""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from llmrec.config import StrictConfig
from llmrec.ctr.adaptor import AdaptorConfig
from llmrec.ctr.multiscenario import MultiScenarioConfig
from llmrec.ctr.features import Batch, FeatureEncoder
from llmrec.ctr.layers import (MLP, FGCNNGenerator, FieldEmbedding, FMInteraction, InnerProduct, KernelProduct,
                               PINMicroNet)

ModelName = Literal["lr", "fm", "dnn", "deepfm", "deepfm_p", "ipnn", "kpnn", "pin", "fgcnn", "star"]


class ModelConfig(StrictConfig):
    name: ModelName = "deepfm"
    embedding_dim: int = 10
    hidden_units: list[int] = [400, 400, 400]
    dropout: float = 0.2
    batch_norm: bool = False
    numeric_embedding: Literal["scalar", "bucket", "autodis"] = "scalar"
    autodis_buckets: int = 20
    autodis_temperature: float = 1.0
    kpnn_kernel: Literal["vector", "matrix", "number"] = "vector"
    pin_hidden: int = 40
    pin_out: int = 5
    fgcnn_channels: list[int] = [14, 16]
    fgcnn_kernel: int = 7
    fgcnn_pool: int = 2
    fgcnn_recombine: int = 2
    knowledge_adaptor: AdaptorConfig = AdaptorConfig()  # how dense (LLM knowledge) features become fields
    multi_scenario: MultiScenarioConfig = MultiScenarioConfig()  # name "star" (+ LLM4MSR meta layers)


_LINEAR_FM = {"lr", "fm", "deepfm", "deepfm_p"}
_DEEP = {"dnn", "deepfm", "deepfm_p", "ipnn", "kpnn", "pin", "fgcnn"}


class LinearTerm(nn.Module):
    """First-order term: a 1-d embedding per field value, summed, plus a bias."""

    def __init__(self, encoder: FeatureEncoder, numeric: str) -> None:
        super().__init__()
        self.emb = FieldEmbedding(encoder, 1, numeric="scalar" if numeric == "autodis" else numeric)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.emb(batch).sum(dim=(1, 2)) + self.bias


class CTRModel(nn.Module):
    def __init__(self, encoder: FeatureEncoder, config: ModelConfig) -> None:
        super().__init__()
        self.config = c = config
        self.linear = LinearTerm(encoder, c.numeric_embedding) if c.name in _LINEAR_FM else None
        self.embedding = None
        self.fm = self.product = self.generator = self.deep = None
        if c.name == "lr":
            return
        self.embedding = FieldEmbedding(encoder, c.embedding_dim, numeric=c.numeric_embedding,
                                        autodis_buckets=c.autodis_buckets,
                                        autodis_temperature=c.autodis_temperature, adaptor=c.knowledge_adaptor)
        n_fields, d = self.embedding.n_fields, c.embedding_dim
        if c.name in ("fm", "deepfm", "deepfm_p"):
            self.fm = FMInteraction()
        if c.name == "fgcnn":
            self.generator = FGCNNGenerator(n_fields, d, c.fgcnn_channels, c.fgcnn_kernel, c.fgcnn_pool,
                                            c.fgcnn_recombine)
            n_fields += self.generator.n_new
        if c.name in ("deepfm_p", "ipnn", "fgcnn"):
            self.product = InnerProduct(n_fields)
        elif c.name == "kpnn":
            self.product = KernelProduct(n_fields, d, c.kpnn_kernel)
        elif c.name == "pin":
            self.product = PINMicroNet(n_fields, d, c.pin_hidden, c.pin_out)
        if c.name in _DEEP:
            in_dim = n_fields * d + (self.product.out_dim if self.product is not None else 0)
            self.deep = MLP(in_dim, c.hidden_units, c.dropout, c.batch_norm)

    def embedding_tables(self) -> list[torch.Tensor]:
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


def build_model(encoder: FeatureEncoder, config: ModelConfig) -> nn.Module:
    if config.name == "star":
        from llmrec.ctr.multiscenario import MultiScenarioModel

        return MultiScenarioModel(encoder, config)
    return CTRModel(encoder, config)
