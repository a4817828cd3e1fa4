"""DiffuASR (Liu et al., CIKM 2023): diffusion-generated item prefixes for short sequences.

- x0: the embeddings of a user's first ``prefix`` items ([prefix, d], from a trained sequential model's item
  table); guide g: the mean (``guide: sum``: the sum, as the authors' code) of the embeddings of the items
  after them. DDPM forward q(x_t | x0) with a linear beta
  schedule over ``steps`` (T); the noise model (an MLP over the flattened x_t, g and a sinusoidal step
  embedding) is trained with MSE on the noise.
- Sampling: DDIM (eta = 0) over ``sample_steps`` evenly spaced steps, guided by each short user's own mean
  embedding; every generated position is rounded to the item of highest cosine similarity, excluding the
  user's items and the prefix items already chosen.
- Augmentation: the generated items are prepended to the training sequences of users with fewer than
  ``short_below`` interactions (``users: all``: of every user, as the authors' released code does); the
  recommender retrains on them. ``random_prefix`` is the ablation (the
  same number of random unused items prepended; run by ``llmrec.experiments.augment.run_diffuasr``)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from llmrec.config import StrictConfig


class DiffuASRConfig(StrictConfig):
    """Diffusion settings (prefix length, T, beta range, noise-model width, training, DDIM steps), the guide's
    pooling and which users get a prefix."""
    prefix: int = Field(10, ge=1)
    steps: int = Field(200, ge=2)  # T
    beta_start: float = Field(1e-4, gt=0)
    beta_end: float = Field(0.02, gt=0, lt=1)
    hidden: int = Field(256, ge=8)
    epochs: int = Field(200, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(128, ge=1)
    sample_steps: int = Field(20, ge=1)
    short_below: int = Field(20, ge=2)  # users with fewer interactions are the short users (reported apart)
    # who gets a generated prefix: every user (the authors' released code) or only the short users
    users: Literal["all", "short"] = "short"
    # the guide: mean of the items' embeddings, or their sum (the authors' code)
    guide: Literal["mean", "sum"] = "mean"
    seed: int = 0


@dataclass
class Schedule:
    """A linear DDPM noise schedule: betas and cumulative alpha products."""
    betas: torch.Tensor
    alpha_bar: torch.Tensor

    @classmethod
    def linear(cls, steps: int, start: float, end: float) -> "Schedule":
        """Betas evenly spaced from ``start`` to ``end`` over ``steps``."""
        betas = torch.linspace(start, end, steps, dtype=torch.float64)
        return cls(betas.float(), torch.cumprod(1 - betas, 0).float())

    def noised(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """q(x_t | x0) = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps."""
        a = self.alpha_bar[t].view(-1, *([1] * (x0.ndim - 1)))
        return a.sqrt() * x0 + (1 - a).sqrt() * eps


def step_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of diffusion steps ([B] -> [B, dim])."""
    half = dim // 2
    freq = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / max(1, half - 1))
    ang = t.float()[:, None] * freq[None]
    return torch.cat([ang.sin(), ang.cos()], dim=1)


class NoiseModel(nn.Module):
    """eps_theta(x_t, t, g): an MLP over [flattened x_t ; g ; step embedding]."""

    def __init__(self, prefix: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.prefix, self.dim, self.t_dim = prefix, dim, 32
        self.net = nn.Sequential(nn.Linear(prefix * dim + dim + self.t_dim, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, prefix * dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x.flatten(1), guide, step_embedding(t, self.t_dim)], dim=1)
        return self.net(h).view(-1, self.prefix, self.dim)


def train_diffusion(x0: torch.Tensor, guides: torch.Tensor, c: DiffuASRConfig) -> tuple[NoiseModel, Schedule, list[float]]:
    """Fit the noise model on prefixes ``x0`` [N, prefix, d] with their guides [N, d]; returns the model, the
    schedule and the mean loss per epoch."""
    g = torch.Generator().manual_seed(c.seed)
    torch.manual_seed(c.seed)
    sched = Schedule.linear(c.steps, c.beta_start, c.beta_end)
    model = NoiseModel(c.prefix, x0.shape[2], c.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=c.learning_rate)
    losses = []
    for _ in range(c.epochs):
        perm = torch.randperm(len(x0), generator=g)
        total = 0.0
        for i in range(0, len(x0), c.batch_size):
            idx = perm[i:i + c.batch_size]
            t = torch.randint(0, c.steps, (len(idx),), generator=g)
            eps = torch.randn(x0[idx].shape, generator=g)
            loss = nn.functional.mse_loss(model(sched.noised(x0[idx], t, eps), t, guides[idx]), eps)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(x0))
    return model, sched, losses


@torch.no_grad()
def ddim_sample(model: NoiseModel, sched: Schedule, guides: torch.Tensor, sample_steps: int, seed: int = 0) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) from pure noise over ``sample_steps`` evenly spaced steps: [B, prefix, d]."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(guides), model.prefix, model.dim, generator=g)
    T = len(sched.alpha_bar)
    ts = torch.linspace(T - 1, 0, min(sample_steps, T)).round().long().unique_consecutive()
    for k, t in enumerate(ts):
        a = sched.alpha_bar[t]
        eps = model(x, t.repeat(len(x)), guides)
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        a_prev = sched.alpha_bar[ts[k + 1]] if k + 1 < len(ts) else torch.tensor(1.0)
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x


def round_to_items(generated: torch.Tensor, table: torch.Tensor, exclude: list[set[int]]) -> list[list[int]]:
    """Each generated position -> the item of highest cosine similarity to it (padding 0, the user's ``exclude``
    items and the items already chosen for this prefix left out)."""
    unit = nn.functional.normalize(table, dim=1)
    out = []
    for gen, ex in zip(generated, exclude):
        sims = nn.functional.normalize(gen, dim=1) @ unit.T  # [prefix, n_items]
        banned = set(ex) | {0}
        chosen = []
        for row in sims:
            row = row.clone()
            row[list(banned)] = -torch.inf
            i = int(row.argmax())
            if not torch.isfinite(row[i]):  # every item is taken: a shorter prefix
                break
            chosen.append(i)
            banned.add(i)
        out.append(chosen)
    return out
