"""MISS (Guo et al., ICDE 2022; papers.md §17): multi-interest self-supervised learning on the behaviour
sequence, an auxiliary loss for any CTR model that embeds a behaviour field (DIN: ``model.miss``).

Two views of each behaviour sequence (``mask_rate`` of the behaviours dropped at random, independently per
view) go through CNN interest extractors over the sequence's embeddings E [L, d]:

- point-wise: a position-wise Conv1d (kernel 1, across the d channels: inter-dimension mixing of one item)
  plus a convolution along the embedding dimension of each item (kernel 3, one channel: intra-item
  correlations);
- union-wise: Conv1d over positions with kernel 3, dilation 1 and 2 (short- and longer-range unions of items).

Each extractor's output is pooled (masked mean) over ``interests`` equal spans of the sequence: 3 x
``interests`` interest vectors per row and view. The loss is interest-level InfoNCE: the same interest of the
same row in the other view is the positive, that interest of every other row in the batch a negative
(temperature ``temperature``), symmetric over the views, over the first ``rows`` rows of the batch (training
batches are shuffled) with at least two behaviours: the [interests x rows x rows] logits are most of the
cost, 1024 rows took 2 s a step on our CPU, 256 rows 16x less. It is
added to the CTR loss with weight ``weight`` (the trainer's ``auxiliary_loss``); at inference nothing of it
runs: only the embeddings it shaped remain. Layer details are our reading of the paper (papers.md marks
them unverified)."""
from __future__ import annotations

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from llmrec.config import StrictConfig


class MISSConfig(StrictConfig):
    """MISS's loss weight, InfoNCE temperature, view masking rate and interests per extractor."""
    weight: float = Field(0.1, ge=0)
    temperature: float = Field(0.1, gt=0)
    mask_rate: float = Field(0.2, ge=0, lt=1)
    interests: int = Field(4, ge=1)
    rows: int = Field(256, ge=2)  # rows of each batch the loss is taken on (the negatives): the first ones


class MISS(nn.Module):
    """The interest extractors and the contrastive loss over one behaviour sequence's embeddings. The model
    calls ``observe(hist, mask)`` in its training forward; the trainer reads ``auxiliary_loss()``."""

    def __init__(self, dim: int, config: MISSConfig) -> None:
        super().__init__()
        self.config = config
        self.point = nn.Conv1d(dim, dim, kernel_size=1)
        self.vertical = nn.Conv1d(1, 1, kernel_size=3, padding=1)
        self.union = nn.ModuleList([nn.Conv1d(dim, dim, kernel_size=3, dilation=r, padding=r) for r in (1, 2)])
        self.pending: list[torch.Tensor] = []

    def interests(self, hist: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """hist [B, L, d], mask [B, L] -> interest vectors [B, 3 x interests, d] (masked positions are zeros)."""
        b, length, d = hist.shape
        x = hist * mask.unsqueeze(-1)
        chan = x.transpose(1, 2)  # [B, d, L]
        point = self.point(chan).transpose(1, 2) + self.vertical(x.reshape(b * length, 1, d)).reshape(b, length, d)
        outs = [point, *(conv(chan).transpose(1, 2) for conv in self.union)]
        k = min(self.config.interests, length)
        span = torch.div(torch.arange(length, device=hist.device) * k, length, rounding_mode="floor")
        assign = F.one_hot(span, k).to(hist.dtype) * mask.unsqueeze(-1)  # [B, L, k] (masked positions: none)
        counts = assign.sum(1).clamp(min=1).unsqueeze(-1)  # [B, k, 1]
        return torch.cat([assign.transpose(1, 2) @ o / counts for o in outs], dim=1)

    def loss(self, hist: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The symmetric interest-level InfoNCE of two masked views (0 when fewer than 2 rows qualify)."""
        keep = mask.sum(1) >= 2
        if int(keep.sum()) < 2:
            return hist.sum() * 0.0
        hist, mask = hist[keep][: self.config.rows], mask[keep][: self.config.rows]  # batches are shuffled
        views = []
        for _ in range(2):
            drop = torch.rand(mask.shape, device=mask.device) < self.config.mask_rate
            views.append(F.normalize(self.interests(hist, mask & ~drop), dim=-1))
        z1, z2 = (v.transpose(0, 1) for v in views)  # [M, B, d]
        m, b = z1.shape[:2]
        target = torch.arange(b, device=z1.device).repeat(m)
        t = self.config.temperature
        # [M, B, B]: row i's interest in one view against every row's same interest in the other view;
        # flattened to [M x B, B] so the softmax runs over a contiguous last axis (the 3-d form is 8x slower)
        one = (z1 @ z2.transpose(1, 2)).reshape(m * b, b) / t
        two = (z2 @ z1.transpose(1, 2)).reshape(m * b, b) / t
        return 0.5 * (F.cross_entropy(one, target) + F.cross_entropy(two, target))

    def observe(self, hist: torch.Tensor, mask: torch.Tensor) -> None:
        """Queue this training forward's loss for one behaviour sequence (nothing in evaluation)."""
        if self.training and self.config.weight > 0:
            self.pending.append(self.loss(hist, mask))

    def auxiliary_loss(self) -> torch.Tensor:
        """``weight`` x the queued losses of the last forward (then cleared)."""
        out = self.config.weight * sum(self.pending) if self.pending else torch.zeros(())
        self.pending = []
        return out
