"""OptInter (Lyu et al., ICDE 2022): for each field pair choose how to model the interaction:
memorize (its own embedding for the hashed cross id), factorize (e_i * e_j) or naive (nothing).

Search: architecture weights alpha [P, 3] mix the three operations with softmax(alpha / t), the
temperature annealed t = max(0.01, 1 - tau * step); alpha is updated on validation batches and the
model on training batches, alternately (first-order bi-level). Retrain: the argmax operation per pair
is fixed and a fresh model is trained with the ordinary training loop. Registered as ``optinter``: when its
config has no ``choices``, ``llmrec train`` runs the search stage first (the registry's ``prepare`` hook) and
trains the model with the choices found.

Inputs: categorical fields plus numerical fields as equal-frequency buckets (so every field has ids)."""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from llmrec.ctr.features import Batch, FeatureEncoder
from llmrec.ctr.layers import MLP, pair_indices
from llmrec.errors import ConfigError
from llmrec.models.registry import ModelConfigBase, register_model

OPS = ("memorize", "factorize", "naive")


class OptInterConfig(ModelConfigBase):
    """OptInter: per-pair choice among memorize / factorize / naive (searched, or fixed), search and retrain
    settings."""
    name: str = "optinter"
    embedding_dim: int = 10
    hidden_units: list[int] = [400, 400]
    dropout: float = 0.2
    hash_buckets: int = 20_000  # per pair, for memorized cross ids
    tau: float = 5e-5
    arch_lr: float = 1e-3
    search_epochs: int = 3
    search_embedding_l2: float = 0.0  # embedding L2 during the search stage (the retrain uses the trainer's)
    # fixed operations (retrain stage): one per field pair, or one name for every pair; None = search them
    choices: list[Literal["memorize", "factorize", "naive"]] | Literal["memorize", "factorize", "naive"] | None = None


class OptInterModel(nn.Module):
    """OptInter: each feature pair modelled by the searched interaction method, then a DNN."""
    def __init__(self, encoder: FeatureEncoder, config: OptInterConfig) -> None:
        super().__init__()
        self.config = c = config
        self.n_cat = len(encoder.categorical)
        bucket_sizes = [s.buckets + 1 for s in encoder.numerical]
        self.register_buffer("bucket_offsets", torch.tensor(
            [encoder.n_categorical_rows() + sum(bucket_sizes[:i]) for i in range(len(bucket_sizes))],
            dtype=torch.long), persistent=False)
        rows = encoder.n_categorical_rows() + sum(bucket_sizes)
        n_fields = self.n_cat + len(bucket_sizes)
        if n_fields < 2:
            raise ValueError("OptInter needs at least two categorical or numerical fields")
        self.emb = nn.Embedding(rows, c.embedding_dim)  # original embeddings (also used by factorize)
        i, j = pair_indices(n_fields)
        self.register_buffer("pi", i, persistent=False)
        self.register_buffer("pj", j, persistent=False)
        self.n_pairs = len(i)
        fixed = [c.choices] * self.n_pairs if isinstance(c.choices, str) else c.choices
        if fixed is not None and len(fixed) != self.n_pairs:
            raise ConfigError(f"model.choices: expected {self.n_pairs} entries (one per field pair), got {len(fixed)}")
        self.fixed = fixed
        self.searching = fixed is None
        mem_pairs = list(range(self.n_pairs)) if self.searching else [p for p, o in enumerate(fixed) if o == "memorize"]
        fac_pairs = list(range(self.n_pairs)) if self.searching else [p for p, o in enumerate(fixed) if o == "factorize"]
        self.register_buffer("mem_pairs", torch.tensor(mem_pairs, dtype=torch.long), persistent=False)
        self.register_buffer("fac_pairs", torch.tensor(fac_pairs, dtype=torch.long), persistent=False)
        self.cross = nn.Embedding(max(1, len(mem_pairs) * c.hash_buckets), c.embedding_dim)
        self.alpha = nn.Parameter(torch.zeros(self.n_pairs, 3)) if self.searching else None
        self.temperature = 1.0
        for t in (self.emb.weight, self.cross.weight):
            nn.init.normal_(t, std=1e-4)
        inter = self.n_pairs if self.searching else len(mem_pairs) + len(fac_pairs)
        self.mlp = MLP((n_fields + inter) * c.embedding_dim, c.hidden_units, c.dropout)
        self.norm = nn.LayerNorm((n_fields + inter) * c.embedding_dim)

    def embedding_tables(self) -> list[torch.Tensor]:
        """The embedding tables the trainer's embedding L2 applies to."""
        return [self.emb.weight, self.cross.weight]

    def model_parameters(self) -> list[nn.Parameter]:
        """The model weights (without the architecture weights of the search stage)."""
        return [p for n, p in self.named_parameters() if n != "alpha"]

    def _ids(self, batch: Batch) -> torch.Tensor:
        return torch.cat([batch.cat, batch.num_bucket + self.bucket_offsets], dim=1)

    def forward(self, batch: Batch) -> torch.Tensor:
        ids = self._ids(batch)
        e = self.emb(ids)  # [B, F, d]
        hb = self.config.hash_buckets
        mem_i, mem_j = ids[:, self.pi[self.mem_pairs]], ids[:, self.pj[self.mem_pairs]]
        slot = torch.arange(len(self.mem_pairs), device=ids.device) * hb
        mem = self.cross((mem_i * 1_000_003 + mem_j) % hb + slot)  # [B, Pm, d]
        fac = e[:, self.pi[self.fac_pairs]] * e[:, self.pj[self.fac_pairs]]  # [B, Pf, d]
        if self.searching:
            w = torch.softmax(self.alpha / self.temperature, dim=-1)  # [P, 3]; naive contributes zero
            inter = w[:, 0, None] * mem + w[:, 1, None] * fac
        else:
            inter = torch.cat([mem, fac], dim=1)
        x = torch.cat([e, inter], dim=1).flatten(1)
        return self.mlp(torch.relu(self.norm(x))).squeeze(-1)

    def choices(self) -> list[str]:
        """The interaction method chosen for each feature pair."""
        if not self.searching:
            return list(self.fixed)
        return [OPS[k] for k in self.alpha.argmax(-1).tolist()]


def optinter_search_stage(encoder: FeatureEncoder, config: OptInterConfig, train: Batch, valid: Batch,
                          trainer) -> OptInterConfig:
    """The registry's ``prepare`` hook: with no fixed ``choices``, search them (with the trainer's batch size,
    learning rate and seed, and ``search_embedding_l2``) and return the config to retrain with."""
    if config.choices is not None:
        return config
    choices, _ = search_optinter(encoder, config, train, valid, batch_size=trainer.batch_size,
                                 lr=trainer.learning_rate, embedding_l2=config.search_embedding_l2, seed=trainer.seed,
                                 progress=trainer.progress)
    return config.model_copy(update={"choices": choices})


@register_model("optinter", family="ctr", config=OptInterConfig, prepare=optinter_search_stage)
def build_optinter(encoder: FeatureEncoder, config: OptInterConfig) -> OptInterModel:
    """OptInter: per field pair, memorize / factorize / naive, searched then retrained."""
    return OptInterModel(encoder, config)


def search_optinter(encoder: FeatureEncoder, config: OptInterConfig, train: Batch, valid: Batch,
                    batch_size: int = 1024, lr: float = 1e-3, embedding_l2: float = 0.0, seed: int = 2021,
                    progress: bool = True) -> tuple[list[str], list[list[float]]]:
    """Search stage. Returns the chosen operation per pair and the final softmax weights."""
    torch.manual_seed(seed)
    model = OptInterModel(encoder, config.model_copy(update={"choices": None}))
    opt = torch.optim.Adam(model.model_parameters(), lr=lr)
    arch_opt = torch.optim.Adam([model.alpha], lr=config.arch_lr, weight_decay=3e-8)
    loss_fn = nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(seed)
    step = 0
    for epoch in range(config.search_epochs):
        model.train()
        perm = torch.randperm(len(train), generator=gen)
        vperm = torch.randperm(len(valid), generator=gen)
        n_steps = (len(train) + batch_size - 1) // batch_size
        for s in tqdm(range(n_steps), desc=f"optinter search {epoch + 1}", disable=not progress, leave=False):
            model.temperature = max(0.01, 1.0 - config.tau * step)
            mb = train.slice(perm[s * batch_size:(s + 1) * batch_size])
            loss = loss_fn(model(mb), mb.label)
            if embedding_l2:
                loss = loss + (embedding_l2 / 2) * sum(t.pow(2).sum() for t in model.embedding_tables())
            opt.zero_grad(set_to_none=True)
            arch_opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            vb = valid.slice(vperm[(s * batch_size) % len(valid):][:batch_size])
            if len(vb):
                arch_opt.zero_grad(set_to_none=True)
                opt.zero_grad(set_to_none=True)
                loss_fn(model(vb), vb.label).backward()
                arch_opt.step()
            step += 1
    weights = torch.softmax(model.alpha.detach() / model.temperature, -1).tolist()
    return model.choices(), weights
