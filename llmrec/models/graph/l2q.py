"""L2Q-GCN (Chen et al., arXiv 2112.01944): 1-bit user / item codes taken at every propagation layer.

LightGCN propagation E^(l+1) = D^-1/2 A D^-1/2 E^(l), l = 0..L; every layer is quantized, Q^(l) = sign(E^(l))
in {-1, +1}^d with a per-node scale alpha^(l) = ||E^(l)||_1 / d; a user-item score is
sum_l alpha_u^(l) alpha_i^(l) <Q_u^(l), Q_i^(l)> (an XOR-popcount per layer and a few multiplies). The
multi-level codes keep what each layer knows (the final layer alone is over-smoothed); ``layer_weights:
increasing`` multiplies level l's code by (l + 1) / (L + 1) as the authors' extended version (BiGeaR,
``yankai-chen/BiGeaR``) does (its scores weigh level l by that squared); ``levels: final``
quantizes only the mean final embedding (the paper's comparison). ``score: cross`` scores every pair of
levels, sum_l sum_m alpha_u^(l) alpha_i^(m) <Q_u^(l), Q_i^(m)> = <sum_l alpha_u^(l) Q_u^(l), sum_m alpha_i^(m) Q_i^(m)>:
LightGCN's own score (the inner product of the layer sums) with every layer coded, at the same storage and
(L+1)^2 instead of L+1 popcounts per pair.

Training: ``warmup_steps`` of full-precision training (the multi-level score unquantized) may come first;
then ``anneal`` (L2Q-GCN-anl) replaces sign by tanh(E / (t alpha)) with the temperature t annealed
geometrically from ``t_start`` to ``t_end`` over ``anneal_steps`` training steps (dividing by alpha keeps the
temperature relative to each node's own scale); ``ste`` uses sign with a straight-through gradient inside
|E| <= alpha; ``none`` keeps every level in full precision (the same multi-level score unquantized, the
reference the codes are measured against). Evaluation always scores the hard codes, with scales stored in float16: what ``codes()``
exports and ``code_scores`` scores with XOR + popcount is exactly what is evaluated.

Size: a node stores (L+1) x (d bits + a 16-bit scale), ``code_bytes``; full-precision LightGCN stores d
float32 values (``float_bytes``)."""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from llmrec.data.views import ItemSpace
from llmrec.models.graph.base import GraphScorer, graph_of, spmm
from llmrec.models.registry import ModelConfigBase, register_model


class L2QConfig(ModelConfigBase):
    """L2Q-GCN hyperparameters: width, layers, which levels are coded, the training approximation of sign."""
    embedding_dim: int = Field(64, ge=8)
    n_layers: int = Field(2, ge=0)
    levels: Literal["all", "final"] = "all"
    sign: Literal["anneal", "ste", "none"] = "anneal"  # none: full precision at every level (the reference)
    score: Literal["levels", "cross"] = "levels"  # levels: sum_l <code_u^l, code_i^l>; cross: every pair (l, m)
    # each level's code times w_l: equal (1) or increasing ((l + 1) / (L + 1), the authors' BiGeaR code)
    layer_weights: Literal["equal", "increasing"] = "equal"
    t_start: float = Field(1.0, gt=0)
    t_end: float = Field(0.01, gt=0)
    warmup_steps: int = Field(4000, ge=0)  # full-precision training steps before the codes are learned
    anneal_steps: int = Field(2000, ge=1)  # ~50 epochs of ML-100K at batch 2048
    reg_weight: float = Field(1e-5, ge=0)


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, scale)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, scale = ctx.saved_tensors
        return grad * (x.abs() <= scale).to(grad.dtype), None


class L2QGCN(GraphScorer):
    """LightGCN propagation with every layer's output (or only the final mean) coded as scaled signs."""
    def __init__(self, space: ItemSpace, c: L2QConfig) -> None:
        super().__init__(space, c.embedding_dim)
        self.adj = graph_of(space).adjacency("sym")
        self.c = c
        self.reg_weight = c.reg_weight
        self.register_buffer("step", torch.zeros((), dtype=torch.long))  # training steps taken (saved, resumed)
        torch.nn.init.xavier_uniform_(self.user.weight)
        torch.nn.init.xavier_uniform_(self.item.weight)

    def temperature(self) -> float:
        """The annealing temperature at the current training step."""
        frac = min(1.0, max(0.0, float(self.step) - self.c.warmup_steps) / self.c.anneal_steps)
        return self.c.t_start * (self.c.t_end / self.c.t_start) ** frac

    def levels(self) -> list[torch.Tensor]:
        """The full-precision embeddings that are coded: E^(0..L), or the mean of them (``levels: final``)."""
        x = torch.cat([self.user.weight, self.item.weight])
        adj = self.on_device(self.adj)
        out = [x]
        for _ in range(self.c.n_layers):
            x = spmm(adj, x)
            out.append(x)
        return out if self.c.levels == "all" else [torch.stack(out).mean(0)]

    def level_weights(self, n: int) -> list[float]:
        """w_l of the ``n`` coded levels."""
        if self.c.layer_weights == "equal" or n == 1:
            return [1.0] * n
        return [(level + 1) / n for level in range(n)]

    def _code(self, e: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        if self.c.sign == "none" or (self.training and int(self.step) <= self.c.warmup_steps):
            return e * weight
        scale = e.abs().mean(1, keepdim=True) * weight
        if not self.training:  # the stored code: signs and a float16 scale
            return torch.where(e >= 0, 1.0, -1.0) * scale.half().float()
        if self.c.sign == "ste":
            return _SignSTE.apply(e, scale.detach()) * scale
        return torch.tanh(e / (self.temperature() * scale.detach().clamp(min=1e-12))) * scale

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every level's code (soft / straight-through in training, hard signs x float16 scales in eval),
        concatenated (the inner product sums over levels) or, with ``score: cross``, summed (every pair)."""
        if self.training:
            self.step += 1
        levels = self.levels()
        coded = [self._code(e, w) for e, w in zip(levels, self.level_weights(len(levels)))]
        codes = torch.stack(coded).sum(0) if self.c.score == "cross" else torch.cat(coded, 1)
        return codes[: self.n_users], codes[self.n_users:]

    @property
    def code_bytes(self) -> float:
        """Bytes per user / item: (levels) x (d sign bits + a float16 scale)."""
        n = self.c.n_layers + 1 if self.c.levels == "all" else 1
        return n * (self.c.embedding_dim / 8 + 2)

    @property
    def float_bytes(self) -> float:
        """Bytes per user / item of full-precision LightGCN at the same width (d float32)."""
        return self.c.embedding_dim * 4.0

    @torch.no_grad()
    def codes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(user bits [U, levels, d/8] uint8, user scales [U, levels] float16, item bits, item scales)."""
        was = self.training
        self.eval()
        levels = self.levels()
        self.train(was)
        bits = np.stack([np.packbits((e >= 0).cpu().numpy(), axis=1) for e in levels], 1)
        scales = np.stack([(e.abs().mean(1) * w).half().cpu().numpy()
                           for e, w in zip(levels, self.level_weights(len(levels)))], 1)
        return bits[: self.n_users], scales[: self.n_users], bits[self.n_users:], scales[self.n_users:]


_POPCOUNT = np.array([bin(n).count("1") for n in range(256)], dtype=np.int32)


def code_scores(user_bits: np.ndarray, user_scales: np.ndarray, item_bits: np.ndarray, item_scales: np.ndarray,
                dim: int, cross: bool = False) -> np.ndarray:
    """Scores of users x items from packed codes: per pair of levels <Q_u, Q_i> = d - 2 popcount(Q_u xor Q_i),
    times both scales, summed over the same levels (``cross``: over every pair of levels), what a serving
    system computes with bit operations."""
    out = np.zeros((len(user_bits), len(item_bits)))
    n = user_bits.shape[1]
    for lu in range(n):
        for li in range(n) if cross else (lu,):
            x = np.bitwise_xor(user_bits[:, None, lu, :], item_bits[None, :, li, :])
            agree = dim - 2 * _POPCOUNT[x].sum(-1)
            out += agree * user_scales[:, lu, None].astype(np.float64) * item_scales[None, :, li].astype(np.float64)
    return out


@register_model("l2q_gcn", family="graph", config=L2QConfig, onnx=False)
def build_l2q(space: ItemSpace, config: L2QConfig) -> L2QGCN:
    """L2Q-GCN: LightGCN with 1-bit codes at every layer (annealed tanh or STE in training)."""
    return L2QGCN(space, config)
