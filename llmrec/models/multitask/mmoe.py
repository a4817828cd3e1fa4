"""MMoE (Ma et al., KDD 2018) for several labels per row, with KAML's hierarchical knowledge extraction
(papers.md §16) as a switch.

field embeddings -> ``experts`` expert MLPs -> per task, a softmax gate over the experts -> the task's tower
-> one logit per task ([N, T]). Trained by the ``multilabel`` task (``llmrec.train.tasks.MultiLabelTask``),
whose masking decides which cells train: strict (reported labels only: the baseline) or KAML's
attribution-driven masking (ADM, which adds labels implied by attribution) and its ranking loss (RLU).

**HKE** (``hke``): labels that came through attribution are a biased sample of their task (an advertiser that
does not report a conversion shows only the attributed positives and the negatives implied by the funnel). In
each task's tower a small discrepancy sub-expert learns that bias: during training its output is added to
the task's logit on the cells whose label is ``ATTRIBUTED`` only; predictions (evaluation, serving) are the
clean tower's, i.e. what a reporting advertiser's label would say. This is our reading of "model the
discrepancy between samples of advertisers that target t and those that do not inside each tower" (the
paper's formulas are not public)."""
from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from llmrec.ctr.features import Batch, FeatureEncoder
from llmrec.ctr.layers import MLP
from llmrec.data.multilabel import ATTRIBUTED
from llmrec.errors import ConfigError
from llmrec.models.ctr.base import DeepCTRConfig, field_embedding
from llmrec.models.registry import register_model


class MMoEConfig(DeepCTRConfig):
    """MMoE: experts (``hidden_units`` is each expert's MLP), task towers, the task count and KAML's HKE."""
    hidden_units: list[int] = [64]
    experts: int = Field(4, ge=1)
    tower_units: list[int] = [32]
    tasks: int | None = Field(None, ge=1)  # None: read from the data (its labels' columns) before building
    hke: bool = False
    hke_units: int = Field(16, ge=1)


class MMoE(nn.Module):
    """Multi-gate mixture of experts with a tower (and optionally an HKE discrepancy sub-expert) per task."""

    def __init__(self, encoder: FeatureEncoder, config: MMoEConfig) -> None:
        super().__init__()
        c = self.config = config
        if c.tasks is None:
            raise ConfigError("model.tasks: unknown; build MMoE through the registry (its prepare hook reads the "
                              "data's task count) or set it")
        if not c.hidden_units:
            raise ConfigError("model.hidden_units: each expert needs at least one layer")
        self.embedding = field_embedding(encoder, c)
        d = self.embedding.n_fields * c.embedding_dim
        self.experts = nn.ModuleList(MLP(d, c.hidden_units, c.dropout, c.batch_norm, out_dim=None)
                                     for _ in range(c.experts))
        h = c.hidden_units[-1]
        self.gates = nn.Linear(d, c.tasks * c.experts)
        self.towers = nn.ModuleList(MLP(h, c.tower_units, c.dropout, c.batch_norm) for _ in range(c.tasks))
        self.discrepancy = (nn.ModuleList(MLP(h, [c.hke_units]) for _ in range(c.tasks)) if c.hke else None)

    def embedding_tables(self) -> list[torch.Tensor]:
        """The embedding tables the trainer's embedding L2 applies to."""
        return self.embedding.embedding_tables()

    def forward(self, batch: Batch) -> torch.Tensor:
        c = self.config
        x = self.embedding(batch).flatten(1)
        e = torch.stack([ex(x) for ex in self.experts], 1)  # [N, E, h]
        g = torch.softmax(self.gates(x).view(-1, c.tasks, c.experts), -1)  # [N, T, E]
        ht = torch.einsum("nte,neh->nth", g, e)
        logits = torch.cat([tw(ht[:, t]) for t, tw in enumerate(self.towers)], 1)  # [N, T]
        if self.discrepancy is not None and self.training and batch.observed is not None:
            shift = torch.cat([d(ht[:, t]) for t, d in enumerate(self.discrepancy)], 1)
            logits = logits + shift * (batch.observed == ATTRIBUTED)
        return logits


def mmoe_tasks(encoder: FeatureEncoder, config: MMoEConfig, train: Batch, valid: Batch, trainer) -> MMoEConfig:
    """The registry's ``prepare`` hook: the task count from the training labels (a single-label data set: 1)."""
    n = 1 if train.labels is None else int(train.labels.shape[1])
    if config.tasks is not None and config.tasks != n:
        raise ConfigError(f"model.tasks: {config.tasks}, but the data has {n} labels")
    return config.model_copy(update={"tasks": n})


@register_model("mmoe", family="multitask", config=MMoEConfig, prepare=mmoe_tasks, task="multilabel")
def build_mmoe(encoder: FeatureEncoder, config: MMoEConfig) -> MMoE:
    """MMoE over several (incomplete) labels; ``hke`` adds KAML's per-task discrepancy sub-experts."""
    return MMoE(encoder, config)
