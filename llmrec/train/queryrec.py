"""QueryRec (Wang et al., CIKM 2024; papers.md §22): a user's search queries as a CTR feature.

A stage before CTR training, on the training rows only, that turns each row's search state (the user's most
recent earlier queries, ``DataConfig.search_history``; column ``query_key``) into a vector the CTR backbone
reads as a dense feature (``knowledge: {source: queries, kinds: [query]}``), so any registered CTR model
takes it.

- **Query encoder**: each query text through a frozen text encoder (MiniLM by default, or the LLM's
  hidden states), projected to ``dim``, a ``layers``-layer self-attention encoder over the sequence of
  queries (positions embedded), mean-pooled -> q.
- **Next-item prediction** (handles interest shift): q must score the item the user clicks next in the
  recommendation domain (a training row with a click, whose search state q is) above every other item:
  softmax cross-entropy over the item table, cosines / ``temperature``.
- **Diffusion positives** (``diffusion``): a denoising diffusion model over item vectors conditioned on q
  (MLP denoiser predicting the noise, cosine schedule, ``steps`` steps) learns p(item vector | q) from the
  clicked items; each step it samples, by ancestral sampling from noise, one plausible positive per row, and
  an InfoNCE term (weight ``contrastive_weight``) pulls q toward its generated positive and away from the
  other rows' — a denser positive than the one observed click, which may have nothing to do with the
  queries. Without it only next-item prediction trains q (the ablation).

Early stopping: next-item Recall@20 on the validation clicks. Layer sizes are papers.md's small faithful
setting (d = 32, 2 layers, T = 50, tau = 0.2); the paper's exact layers are not public."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from llmrec.config import StrictConfig
from llmrec.data.schema import RecData
from llmrec.embed import Embedder
from llmrec.errors import DataError
from llmrec.metrics import full_sort_metrics
from llmrec.train.loop import Trainer, TrainerConfig


class QueryRecConfig(StrictConfig):
    """QueryRec's encoder size, diffusion positives and the stage's training settings."""
    dim: int = Field(32, ge=4)
    layers: int = Field(2, ge=0)  # 0: no self-attention, q = mean of the projected queries
    heads: int = Field(2, ge=1)
    temperature: float = Field(0.2, gt=0)
    diffusion: bool = True
    steps: int = Field(50, ge=2)
    diffusion_weight: float = Field(1.0, ge=0)
    contrastive_weight: float = Field(0.5, ge=0)
    # items as their text under the same encoder as the queries plus an id embedding (False: ids only, as
    # the paper); with ids only, items with few clicks stay where they were initialized
    item_text: bool = True
    folds: int = Field(2, ge=2)  # query_match is cross-fitted over search states (see query_features)
    epochs: int = Field(20, ge=1)
    patience: int = Field(3, ge=1)
    batch_size: int = Field(256, ge=2)
    learning_rate: float = Field(1e-3, gt=0)
    seed: int = 0


@dataclass
class QueryPairs:
    """(search state, next clicked item) pairs: query ids [N, L] (0 = padding) and item ids [N]."""
    queries: torch.Tensor
    item: torch.Tensor

    def __len__(self) -> int:
        return int(self.item.shape[0])

    def slice(self, idx: torch.Tensor) -> "QueryPairs":
        """The pairs ``idx``."""
        return QueryPairs(self.queries[idx], self.item[idx])

    def to(self, device: str | torch.device) -> "QueryPairs":
        """The pairs on ``device``."""
        return QueryPairs(self.queries.to(device), self.item.to(device))


def cosine_schedule(steps: int) -> torch.Tensor:
    """alpha-bar_t for t = 1..steps (Nichol & Dhariwal's cosine schedule, clipped to keep betas < 0.999)."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    abar = f / f[0]
    beta = (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - beta, 0).float()


TIME_DIM = 32  # the diffusion step's sinusoidal embedding


class QueryEncoder(nn.Module):
    """Frozen query-text vectors -> self-attention over a search state -> q; item table; diffusion denoiser.
    Queries and items live in the text encoder's space: q is the mean of its query vectors plus a learned
    correction, an item its text vector plus a learned id vector (both zero at initialization, so training
    starts from the encoder's own query-item similarity)."""

    def __init__(self, text_vectors: np.ndarray, max_len: int, n_items: int, c: QueryRecConfig,
                 item_text: np.ndarray | None = None) -> None:
        super().__init__()
        self.c = c
        space = self.space = text_vectors.shape[1]
        self.register_buffer("text", torch.from_numpy(np.vstack([np.zeros((1, space), np.float32),
                                                                 text_vectors.astype(np.float32)])))
        self.proj = nn.Linear(space, c.dim)
        self.pos = nn.Embedding(max_len, c.dim)
        layer = nn.TransformerEncoderLayer(c.dim, c.heads, 2 * c.dim, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False) if c.layers else None
        self.out = nn.Linear(c.dim, space)
        nn.init.zeros_(self.out.weight)  # q starts as the mean of its query vectors
        nn.init.zeros_(self.out.bias)
        self.items = nn.Embedding(n_items, space)
        self.has_item_text = item_text is not None
        if item_text is not None:  # [n_items, space], row 0 (unknown item) zeros: items start as their text
            self.register_buffer("item_text", torch.from_numpy(item_text.astype(np.float32)))
            nn.init.zeros_(self.items.weight)
        else:
            nn.init.normal_(self.items.weight, std=0.1)
        self.register_buffer("abar", cosine_schedule(c.steps))
        self.denoiser = nn.Sequential(nn.Linear(2 * space + TIME_DIM, 256), nn.SiLU(), nn.Linear(256, 256), nn.SiLU(),
                                      nn.Linear(256, space))
        self.pending: list[torch.Tensor] = []

    def encode(self, queries: torch.Tensor) -> torch.Tensor:
        """Search states [B, L] of query ids -> unit vectors q [B, space] (an empty state: zeros): the mean of
        the query vectors plus the self-attention encoder's correction (zero at initialization)."""
        mask = queries > 0
        m = mask.unsqueeze(-1).float()
        n = m.sum(1).clamp(min=1)
        texts = self.text[queries]
        base = (texts * m).sum(1) / n
        empty = ~mask.any(1)
        x = self.proj(texts) + self.pos.weight[: queries.shape[1]]
        if self.encoder is not None:
            pad = ~mask
            pad[empty, 0] = False  # attention needs one key; the row is zeroed below
            x = self.encoder(x, src_key_padding_mask=pad)
        q = base + self.out((x * m).sum(1) / n)
        return F.normalize(q, dim=-1) * (~empty).unsqueeze(-1)

    def _time(self, t: torch.Tensor) -> torch.Tensor:
        half = TIME_DIM // 2
        freq = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device) / half)
        ang = t.float().unsqueeze(1) * freq
        return torch.cat([ang.sin(), ang.cos()], 1)

    def noise_pred(self, x: torch.Tensor, q: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The denoiser's noise estimate for x_t given q at steps t (0-based)."""
        return self.denoiser(torch.cat([x, q, self._time(t)], 1))

    @torch.no_grad()
    def sample(self, q: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One item vector per row of q by ancestral sampling from noise (scale: unit vectors x sqrt(space))."""
        abar = self.abar
        x = torch.randn(q.shape, generator=generator, device=q.device)
        for t in range(self.c.steps - 1, -1, -1):
            a_t = abar[t]
            a_prev = abar[t - 1] if t > 0 else torch.ones((), device=q.device)
            alpha = a_t / a_prev
            eps = self.noise_pred(x, q, torch.full((len(q),), t, device=q.device))
            mean = (x - (1 - alpha) / (1 - a_t).sqrt() * eps) / alpha.sqrt()
            if t > 0:
                var = (1 - a_prev) / (1 - a_t) * (1 - alpha)
                x = mean + var.sqrt() * torch.randn(q.shape, generator=generator, device=q.device)
            else:
                x = mean
        return x

    def item_vectors(self) -> torch.Tensor:
        """Unit item vectors [n_items, dim]: the id embedding (plus the projected item text)."""
        v = self.items.weight
        if self.has_item_text:
            v = v + self.item_text
        return F.normalize(v, dim=-1)

    def forward(self, b: QueryPairs) -> torch.Tensor:
        """Next-item logits [B, n_items] of each search state; in training, queues the diffusion losses."""
        q = self.encode(b.queries)
        items = self.item_vectors()
        logits = q @ items.T / self.c.temperature
        if self.training and self.c.diffusion:
            x0 = items[b.item].detach() * math.sqrt(self.space)
            t = torch.randint(0, self.c.steps, (len(q),), device=q.device)
            eps = torch.randn_like(x0)
            a = self.abar[t].unsqueeze(1)
            xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
            loss = self.c.diffusion_weight * F.mse_loss(self.noise_pred(xt, q.detach(), t), eps)
            if self.c.contrastive_weight > 0:
                gen = F.normalize(self.sample(q.detach()), dim=-1)
                sim = q @ gen.T / self.c.temperature
                loss = loss + self.c.contrastive_weight * F.cross_entropy(sim, torch.arange(len(q), device=q.device))
            self.pending.append(loss)
        return logits

    def auxiliary_loss(self) -> torch.Tensor:
        """The diffusion and generated-positive losses of this step's forward passes (the trainer adds them)."""
        if not self.pending:
            return torch.zeros(())
        out = torch.stack(self.pending).sum()
        self.pending = []
        return out


class NextItemQueryTask:
    """The stage's task: softmax CE of the next clicked item; Recall@20 / NDCG@20 on validation clicks."""
    name, primary = "query_next_item", "recall@20"

    def make_batch(self, data: QueryPairs, idx: torch.Tensor, generator: torch.Generator) -> QueryPairs:
        """The pairs ``idx``."""
        return data.slice(idx)

    def row_loss(self, net, batch: QueryPairs) -> torch.Tensor:
        """Cross-entropy of each pair's next item."""
        return F.cross_entropy(net(batch).float(), batch.item, reduction="none")

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: QueryPairs, ctx, groups=None) -> dict[str, float]:
        """Full-sort Recall@20 and NDCG@20 of the next item."""
        model.eval()
        parts = []
        for i in range(0, len(data), ctx.eval_batch_size):
            b = data.slice(torch.arange(i, min(len(data), i + ctx.eval_batch_size)))
            scores = model(b)
            scores[:, 0] = -float("inf")  # the unknown-item row
            gold = torch.zeros_like(scores, dtype=torch.bool)
            gold[torch.arange(len(b)), b.item] = True
            parts.append(full_sort_metrics(scores, gold, (20,)))
        return {k: float(torch.cat([p[k] for p in parts]).mean()) for k in ("recall@20", "ndcg@20")}


def query_features(data: RecData, train_rows: np.ndarray, valid_rows: np.ndarray, encoder: Embedder,
                   config: QueryRecConfig | None = None, kinds: Sequence[str] = ("query", "query_match"),
                   report: dict | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Train QueryRec's encoder on the training rows' clicks; returns the CTR features asked for in ``kinds``:
    ``query``, search state (``query_key``) -> q, and ``query_match``, (search state, item)
    (``query_item_key``) -> [cos(q, the encoder's item vector)], the relevance of the candidate to what the
    user searched, which a backbone without multiplicative interactions learns slowly from q alone. No search
    history, or an item the encoder never saw: zeros. ``report`` receives the stage's validation metrics."""
    c = config or QueryRecConfig()
    for col in ("queries", "query_key", "query_item_key"):
        if col not in data.columns:
            raise DataError(f"{col}: QueryRec needs the search history columns (data.search_history: N)")
    states: dict[str, tuple[str, ...]] = {}
    for key, qs in zip(data.columns["query_key"].tolist(), data.columns["queries"].tolist()):
        states.setdefault(str(key), tuple(qs))
    texts = sorted({t for qs in states.values() for t in qs})
    if not texts:
        raise DataError(f"{data.name}: no row has an earlier search (the search log is empty or later than "
                        "every impression)")
    tid = {t: i + 1 for i, t in enumerate(texts)}
    max_len = max(len(qs) for qs in states.values())

    def ids(qs: tuple[str, ...]) -> list[int]:
        return [tid[t] for t in qs] + [0] * (max_len - len(qs))

    items = data.columns[data.item_col]
    item_ids = {v: i + 1 for i, v in enumerate(sorted(set(items[train_rows].tolist())))}
    label = data.columns[data.label]

    def clicked(rows: np.ndarray) -> list[int]:  # clicks after a search, on items the encoder has
        return [r for r in rows.tolist() if label[r] > 0 and data.columns["queries"][r] and items[r] in item_ids]

    def pairs(keep: list[int]) -> QueryPairs:
        q = torch.tensor([ids(tuple(data.columns["queries"][r])) for r in keep], dtype=torch.long).reshape(-1, max_len)
        return QueryPairs(q, torch.tensor([item_ids[items[r]] for r in keep], dtype=torch.long))

    train_clicks = clicked(train_rows)
    train_keys = [str(data.columns["query_key"][r]) for r in train_clicks]
    train, valid = pairs(train_clicks), pairs(clicked(valid_rows))
    if len(train) < 2 or len(valid) < 1:
        raise DataError(f"{data.name}: too few clicks after a search to train QueryRec ({len(train)} training, "
                        f"{len(valid)} validation pairs)")
    query_vectors = encoder.encode(texts)
    item_text = None
    if c.item_text:
        names = sorted(item_ids, key=item_ids.get)
        item_text = np.zeros((len(item_ids) + 1, query_vectors.shape[1]), np.float32)
        info = [data.item_info.get(str(i), {}) for i in names]
        known = [k for k, d in enumerate(info) if d]
        if known:
            item_text[[k + 1 for k in known]] = encoder.encode(
                [f"{info[k].get('title', '')}. {info[k].get('description', '')}" for k in known])

    def fit(subset: torch.Tensor | None, seed: int) -> QueryEncoder:
        torch.manual_seed(seed)
        model = QueryEncoder(query_vectors, max_len, len(item_ids) + 1, c, item_text)
        trainer = Trainer(TrainerConfig(batch_size=c.batch_size, learning_rate=c.learning_rate, epochs=c.epochs,
                                        patience=c.patience, seed=seed, embedding_l2=0.0, progress=False),
                          NextItemQueryTask())
        fitted = trainer.fit(model, train if subset is None else train.slice(subset), valid)
        fits.append({"valid": fitted.best_valid, "best_epoch": fitted.best_epoch,
                     "pairs": len(train) if subset is None else int(len(subset))})
        return model.eval()

    def encode_states(model: QueryEncoder, keys: list[str]) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([model.encode(torch.tensor([ids(states[k]) for k in keys[i: i + 1024]],
                                                             dtype=torch.long).reshape(-1, max_len)).numpy()
                                   for i in range(0, len(keys), 1024)] or [np.zeros((0, query_vectors.shape[1]), np.float32)])

    fits: list[dict] = []
    keys = list(states)
    out: dict[str, dict[str, np.ndarray]] = {}
    if "query" in kinds:
        full = fit(None, c.seed)
        out["query"] = dict(zip(keys, encode_states(full, keys).astype(np.float32)))
    if "query_match" in kinds:
        # cross-fitting: the states of the training clicks are dealt to ``folds`` folds (by a hash of the
        # state); a state of fold f is scored by the model trained without fold f, so no training row's score
        # comes from a model that learned its own click (that leak made the score predictive on training rows
        # only). States never among the training clicks get the mean over the fold models.
        fold_of = {k: int(hashlib.sha1(k.encode()).hexdigest(), 16) % c.folds for k in set(train_keys)}
        pair_fold = torch.tensor([fold_of[k] for k in train_keys])
        scores = []
        for f in range(c.folds):
            model = fit((pair_fold != f).nonzero().squeeze(1), c.seed + 1 + f)
            vecs = dict(zip(keys, encode_states(model, keys)))
            with torch.no_grad():
                iv = model.item_vectors().numpy()
            iv[0] = 0.0  # items never seen in training
            scores.append((vecs, iv))
        out["query_match"] = {}
        for pair in set(data.columns["query_item_key"].tolist()):
            state, item = pair.rsplit("\t", 1)
            row = item_ids.get(item, 0)
            folds = [fold_of[state]] if state in fold_of else range(c.folds)
            out["query_match"][pair] = np.array([np.mean([scores[f][0][state] @ scores[f][1][row] for f in folds])],
                                                np.float32)
    if report is not None:
        report.update(fits=fits, train_pairs=len(train), valid_pairs=len(valid), queries=len(texts), states=len(keys))
    return out
