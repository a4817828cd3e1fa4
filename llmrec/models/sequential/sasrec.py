"""SASRec (Kang and McAuley, ICDM 2018): causal self-attention over the item history with learned position
embeddings; the state at each position scores every item by inner product with the (shared) item table.
Defaults follow RecBole's SASRec on MovieLens (2 blocks, 2 heads, d 64, inner 256, dropout 0.5, GELU,
post-LayerNorm, normal(0.02) initialisation), so the two can be compared on one protocol."""
from __future__ import annotations

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from llmrec.data.views import ItemSpace
from llmrec.models.registry import ModelConfigBase, register_model
from llmrec.models.sequential.base import Dropout, SequentialModel, build_sequential, dropout, init_weights


class SASRecConfig(ModelConfigBase):
    """SASRec hyperparameters: blocks, heads, width, feed-forward width, dropout, longest history."""
    n_layers: int = Field(2, ge=1)
    n_heads: int = Field(2, ge=1)
    hidden_size: int = Field(64, ge=1)
    inner_size: int = Field(256, ge=1)
    hidden_dropout: float = Field(0.5, ge=0, lt=1)
    attn_dropout: float = Field(0.5, ge=0, lt=1)
    max_len: int = Field(50, ge=1)  # position embeddings: at least the data view's max_len
    text_dim: int = Field(0, ge=0)  # item knowledge / text vectors fused in (set from the data; 0 = ids only)


class Block(nn.Module):
    """Multi-head causal self-attention and a GELU feed-forward, each with dropout, residual, LayerNorm."""

    def __init__(self, c: SASRecConfig) -> None:
        super().__init__()
        if c.hidden_size % c.n_heads:
            raise ValueError(f"model.hidden_size: {c.hidden_size} is not divisible by n_heads {c.n_heads}")
        self.heads, self.p_attn = c.n_heads, c.attn_dropout
        self.qkv = nn.Linear(c.hidden_size, 3 * c.hidden_size)
        self.out = nn.Linear(c.hidden_size, c.hidden_size)
        self.ff = nn.Sequential(nn.Linear(c.hidden_size, c.inner_size), nn.GELU(), nn.Linear(c.inner_size, c.hidden_size))
        self.drop = Dropout(c.hidden_dropout)
        self.norm1 = nn.LayerNorm(c.hidden_size, eps=1e-12)
        self.norm2 = nn.LayerNorm(c.hidden_size, eps=1e-12)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, last: bool = False) -> torch.Tensor:
        """[B, L, D] -> [B, L, D]; ``last``: only the last position's output, [B, 1, D] (its query attends to
        every key as before; the other queries, their feed-forward and norms are skipped)."""
        B, L, D = x.shape
        H = self.heads
        if last:
            k, v = self.qkv(x)[..., D:].view(B, L, 2, H, D // H).permute(2, 0, 3, 1, 4)
            x = x[:, -1:]
            q = F.linear(x, self.qkv.weight[:D], self.qkv.bias[:D]).view(B, 1, H, D // H).transpose(1, 2)
            allowed = allowed[..., -1:, :]
        else:
            q, k, v = self.qkv(x).view(B, L, 3, H, D // H).permute(2, 0, 3, 1, 4)
        if self.training and self.p_attn > 0:  # written out so the attention dropout uses the faster mask
            s = (q @ k.transpose(-1, -2)) * (D // H) ** -0.5
            a = dropout(s.masked_fill(~allowed, float("-inf")).softmax(-1), self.p_attn, True) @ v
        else:
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        x = self.norm1(x + self.drop(self.out(a.transpose(1, 2).reshape(B, x.shape[1], D))))
        return self.norm2(x + self.drop(self.ff(x)))


class SASRec(SequentialModel):
    """Item + position embeddings -> LayerNorm, dropout -> causal self-attention blocks."""

    def __init__(self, space: ItemSpace, c: SASRecConfig) -> None:
        super().__init__(space, c.hidden_size, c.text_dim)
        self.max_len = c.max_len
        self.pos = nn.Embedding(c.max_len, c.hidden_size)
        self.norm = nn.LayerNorm(c.hidden_size, eps=1e-12)
        self.drop = Dropout(c.hidden_dropout)
        self.blocks = nn.ModuleList([Block(c) for _ in range(c.n_layers)])
        init_weights(self)

    def encode(self, x: torch.Tensor, items: torch.Tensor, last: bool = False) -> torch.Tensor:
        L = items.shape[1]
        if L > self.max_len:
            raise ValueError(f"batch: histories of {L} items, longer than model.max_len {self.max_len}")
        real = items > 0
        # positions count from the first real item (as left-aligned RecBole), so an item's state depends on
        # what came before it, never on the padding: a prefix alone and inside its full sequence agree
        pos = (real.cumsum(1) - 1).clamp(min=0)
        x = self.drop(self.norm(x + self.pos(pos)))
        causal = torch.ones(L, L, dtype=torch.bool, device=items.device).tril()
        # a query sees earlier real items; padding queries see only themselves (no row is fully masked)
        allowed = (causal & (real[:, None, :] | torch.eye(L, dtype=torch.bool, device=items.device)))[:, None]
        for n, block in enumerate(self.blocks):
            x = block(x, allowed, last=last and n == len(self.blocks) - 1)
        return x


@register_model("sasrec", family="sequential", config=SASRecConfig, onnx=False)
def build_sasrec(space: ItemSpace, config: SASRecConfig) -> SASRec:
    """SASRec: causal self-attention over the history, learned positions (Kang and McAuley, 2018)."""
    return build_sequential(SASRec, space, config)
