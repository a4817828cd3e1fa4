"""MDP-DIV (Xia et al., SIGIR 2017) and its faster variants MDP-DIV-kNN and MDP-DIV-NTN (Liu et al., DASFAA
2018; papers.md §33): search-result diversification as a Markov decision process.

State: the query, the documents selected so far and an RNN state h_t (h_0 = sigmoid(V_q q), h_(t+1) =
sigmoid(V x_d + W h_t) after selecting d). Policy: pi(d | s_t) = softmax over the remaining candidates of
x_d^T U h_t. Reward: the alpha-DCG increment of the selected document; trained by REINFORCE
(``llmrec.train.policy_gradient``).

- ``knn_prune: k`` (MDP-DIV-kNN): after a document is selected, its k nearest remaining candidates (cosine of
  features) leave the candidate set, a smaller action space with novelty built in.
- ``ntn_prior: true`` (MDP-DIV-NTN): a neural tensor network pre-trained to predict a document's marginal
  alpha-DCG gain given the selected set (``NTN``) adds ``beta`` * its score to the logits (beta learned, from
  1), so the policy starts from the NTN's judgement instead of from chance."""
from __future__ import annotations

import numpy as np
import torch
from pydantic import Field
from torch import nn

from llmrec.models.registry import ModelConfigBase, register_model


class MDPDivConfig(ModelConfigBase):
    """RNN width, kNN pruning (0: none), the NTN prior and its tensor slices."""
    hidden: int = Field(32, ge=1)
    knn_prune: int = Field(0, ge=0)
    ntn_prior: bool = False
    ntn_slices: int = Field(4, ge=1)


class NTN(nn.Module):
    """Neural tensor network novelty scorer: g(d, S) = u^T tanh(x_d^T M[1..z] s + V [x_d; s] + b), s = the mean
    feature vector of the selected documents (zeros before the first)."""

    def __init__(self, dim: int, slices: int) -> None:
        super().__init__()
        self.M = nn.Parameter(0.01 * torch.randn(slices, dim, dim))
        self.V = nn.Linear(2 * dim, slices)
        self.u = nn.Linear(slices, 1, bias=False)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """x: (n, dim) candidates, s: (dim,) selected mean -> (n,) scores."""
        bil = torch.einsum("nd,zde,e->nz", x, self.M, s)
        lin = self.V(torch.cat([x, s.expand_as(x)], dim=1))
        return self.u(torch.tanh(bil + lin)).squeeze(1)


class MDPDiv(nn.Module):
    """The policy network (and, with ``ntn_prior``, the NTN it adds)."""

    def __init__(self, c: MDPDivConfig, dim: int) -> None:
        super().__init__()
        self.config = c
        self.U = nn.Parameter(0.1 * torch.randn(dim, c.hidden))
        self.V = nn.Linear(dim, c.hidden)
        self.W = nn.Linear(c.hidden, c.hidden, bias=False)
        self.Vq = nn.Linear(dim, c.hidden)
        self.ntn = NTN(dim, c.ntn_slices) if c.ntn_prior else None
        self.beta = nn.Parameter(torch.ones(()))

    def logits(self, x: torch.Tensor, h: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
        """Scores of the candidates ``x`` (n, dim) in state h; ``selected``: mean of the chosen features."""
        out = x @ (self.U @ h)
        if self.ntn is not None:
            out = out + self.beta * self.ntn(x, selected)
        return out

    def rollout(self, q: np.ndarray, feats: np.ndarray, k: int, rng: np.random.Generator | None = None
                ) -> tuple[list[int], torch.Tensor]:
        """Select k documents: sampled from pi when ``rng`` is given, else greedily. Returns the ranking
        (candidate indices) and the log-probabilities of the choices."""
        x = torch.as_tensor(feats, dtype=torch.float32)
        h = torch.sigmoid(self.Vq(torch.as_tensor(q, dtype=torch.float32)))
        unit = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        alive = np.ones(len(feats), bool)
        ranking, logps = [], []
        selected = torch.zeros(x.shape[1])
        for _ in range(min(k, len(feats))):
            idx = np.flatnonzero(alive)
            if not len(idx):
                break
            lp = torch.log_softmax(self.logits(x[idx], h, selected), dim=0)
            if rng is not None:
                prob = np.exp(lp.detach().double().numpy())
                pos = int(rng.choice(len(idx), p=prob / prob.sum()))
            else:
                pos = int(torch.argmax(lp))
            d = int(idx[pos])
            ranking.append(d)
            logps.append(lp[pos])
            alive[d] = False
            if self.config.knn_prune:
                rest = np.flatnonzero(alive)
                if len(rest):
                    sim = (unit[rest] @ unit[d]).detach().numpy()
                    alive[rest[np.argsort(-sim, kind="stable")[: self.config.knn_prune]]] = False
            selected = x[ranking].mean(0)
            h = torch.sigmoid(self.V(x[d]) + self.W(h))
        return ranking, torch.stack(logps) if logps else torch.zeros(0)


def _build(dim: int, config: MDPDivConfig) -> MDPDiv:
    return MDPDiv(config, dim)


@register_model("mdp_div", family="diversify", config=MDPDivConfig, onnx=False)
def build_mdp_div(context: int, config: MDPDivConfig) -> MDPDiv:
    """MDP-DIV: RNN-state policy over the remaining candidates, REINFORCE on alpha-DCG increments."""
    return _build(context, config)


@register_model("mdp_div_knn", family="diversify", config=MDPDivConfig, onnx=False)
def build_mdp_div_knn(context: int, config: MDPDivConfig) -> MDPDiv:
    """MDP-DIV-kNN: each selection also removes its k nearest candidates (default k = 3)."""
    return _build(context, config)


@register_model("mdp_div_ntn", family="diversify", config=MDPDivConfig, onnx=False)
def build_mdp_div_ntn(context: int, config: MDPDivConfig) -> MDPDiv:
    """MDP-DIV-NTN: a pre-trained neural tensor network's novelty score added to the policy's logits."""
    return _build(context, config)
