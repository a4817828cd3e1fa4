"""The diversify family's training: REINFORCE for MDP-DIV policies and the NTN's pre-training (papers.md §33).

**REINFORCE.** Each episode samples a training query and a ranking of ``k`` documents from the policy; the
reward of position t is the alpha-NDCG increment (the alpha-DCG gain at t, discounted by log2(t + 2), over the
query's ideal alpha-DCG@k, so every query's episode return is its sampled alpha-NDCG@k); the loss is
-sum_t (G_t - b_t) log pi(a_t | s_t) with G_t the return from t and b_t a running mean of G_t per position.
Every ``eval_every`` episodes the greedy rankings of the validation queries are scored and the best policy
kept. The curve of training reward (episode alpha-NDCG) gives **episodes to 95%**: the first episode at which
the moving average over ``smooth`` episodes reaches 95% of its final value.

**NTN pre-training.** For random prefixes of the greedy-ideal or of random rankings of training queries, the
NTN learns (squared error) the marginal alpha-DCG gain of every remaining candidate given the prefix."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pydantic import Field
from tqdm import tqdm

from llmrec.config import StrictConfig
from llmrec.data.diversity import DiversityQuery
from llmrec.metrics import alpha_dcg_at, alpha_dcg_gains, alpha_ndcg_at, greedy_ideal
from llmrec.models import MODELS, build_model
from llmrec.models.diversify.mdp_div import MDPDiv


class PolicyGradientConfig(StrictConfig):
    """Episodes, ranking depth, alpha, learning rate, evaluation cadence, smoothing, NTN pre-training, seed."""
    episodes: int = Field(3000, ge=1)
    k: int = Field(10, ge=1)
    alpha: float = Field(0.5, ge=0, le=1)
    learning_rate: float = Field(0.005, gt=0)
    eval_every: int = Field(100, ge=1)
    smooth: int = Field(200, ge=1)
    ntn_steps: int = Field(400, ge=0)
    ntn_learning_rate: float = Field(0.005, gt=0)
    seed: int = 0
    progress: bool = True


def ideal_dcg(q: DiversityQuery, k: int, alpha: float) -> float:
    """alpha-DCG@k of the greedy ideal ranking."""
    return alpha_dcg_at(greedy_ideal(q.judgments, k, alpha), q.judgments, k, alpha)


def moving_average(curve: list[float], smooth: int) -> np.ndarray:
    """Means over windows of ``smooth`` consecutive episodes (the whole curve when it is shorter)."""
    w = min(smooth, len(curve))
    return np.convolve(np.asarray(curve, np.float64), np.ones(w) / w, mode="valid")


def evaluate_policy(policy, queries: list[DiversityQuery], k: int, alpha: float) -> float:
    """Mean alpha-NDCG@k of the greedy rankings (a policy with ``rollout`` or a ranker with ``rank``)."""
    out = []
    with torch.no_grad():
        for q in queries:
            ranking = policy.rollout(q.vector, q.features, k)[0] if hasattr(policy, "rollout") else policy.rank(q, k)
            out.append(alpha_ndcg_at(ranking, q.judgments, k, alpha))
    return float(np.mean(out)) if out else 0.0


def episodes_to(curve: list[float], share: float, smooth: int) -> int:
    """First episode (1-based) whose moving average over ``smooth`` episodes reaches ``share`` of the final one
    (the mean of the last ``smooth`` episodes)."""
    if not len(curve):
        return 0
    avg = moving_average(curve, smooth)
    hit = np.flatnonzero(avg >= share * avg[-1])
    return int(hit[0] + min(smooth, len(curve))) if len(hit) else len(curve)


def pretrain_ntn(policy: MDPDiv, queries: list[DiversityQuery], c: PolicyGradientConfig) -> list[float]:
    """Fit the policy's NTN to marginal alpha-DCG gains given random prefixes; returns the loss curve."""
    if policy.ntn is None or c.ntn_steps == 0:
        return []
    rng = np.random.default_rng(c.seed + 7)
    opt = torch.optim.Adam(policy.ntn.parameters(), lr=c.ntn_learning_rate)
    losses = []
    for _ in range(c.ntn_steps):
        q = queries[int(rng.integers(len(queries)))]
        order = greedy_ideal(q.judgments, c.k, c.alpha) if rng.random() < 0.5 else list(rng.permutation(len(q.doc_ids)))
        t = int(rng.integers(0, min(c.k, len(order))))
        prefix = order[:t]
        seen = q.judgments[prefix].sum(0) if prefix else np.zeros(q.judgments.shape[1])
        gains = (q.judgments * (1 - c.alpha) ** seen).sum(1)
        rest = np.setdiff1d(np.arange(len(q.doc_ids)), prefix)
        x = torch.as_tensor(q.features, dtype=torch.float32)
        s = x[prefix].mean(0) if prefix else torch.zeros(x.shape[1])
        pred = policy.ntn(x[rest], s)
        loss = torch.nn.functional.mse_loss(pred, torch.as_tensor(gains[rest], dtype=torch.float32))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@dataclass
class TrainedDiversifier:
    """The best policy on validation, the reward curve and the validation checkpoints."""
    policy: MDPDiv
    rewards: list[float] = field(default_factory=list)
    valid: list[dict] = field(default_factory=list)
    ntn_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


def train_reinforce(policy: MDPDiv, train: list[DiversityQuery], valid: list[DiversityQuery],
                    c: PolicyGradientConfig) -> TrainedDiversifier:
    """NTN pre-training (when the policy has one), then REINFORCE episodes (see the module doc)."""
    if not train:
        raise ValueError("train: no training queries")
    torch.manual_seed(c.seed)
    rng = np.random.default_rng(c.seed)
    t0 = time.perf_counter()
    out = TrainedDiversifier(policy=copy.deepcopy(policy))
    out.ntn_loss = pretrain_ntn(policy, train, c)
    opt = torch.optim.Adam(policy.parameters(), lr=c.learning_rate)
    ideals = [ideal_dcg(q, c.k, c.alpha) for q in train]
    disc = 1.0 / np.log2(np.arange(2, c.k + 2))
    baseline = np.zeros(c.k)
    best = -1.0
    for ep in tqdm(range(1, c.episodes + 1), desc=f"{policy.config.name}", disable=not c.progress):
        n = int(rng.integers(len(train)))
        q = train[n]
        ranking, logp = policy.rollout(q.vector, q.features, c.k, rng)
        r = alpha_dcg_gains(ranking, q.judgments, c.alpha) * disc[: len(ranking)] / max(ideals[n], 1e-12)
        g = np.cumsum(r[::-1])[::-1]
        adv = torch.as_tensor(g - baseline[: len(g)], dtype=torch.float32)
        baseline[: len(g)] = 0.95 * baseline[: len(g)] + 0.05 * g
        loss = -(adv * logp).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.rewards.append(float(r.sum()))
        if ep % c.eval_every == 0 or ep == c.episodes:
            v = evaluate_policy(policy, valid, c.k, c.alpha)
            out.valid.append({"episode": ep, "alpha_ndcg": v})
            if v > best:
                best, out.policy = v, copy.deepcopy(policy)
    out.seconds = time.perf_counter() - t0
    return out


def fit_diversifier(config, dim: int, train: list[DiversityQuery], valid: list[DiversityQuery],
                    test: list[DiversityQuery], c: PolicyGradientConfig
                    ) -> tuple[Any, float, float, "TrainedDiversifier | None"]:
    """A diversifier of ``config`` for ``dim``-wide features: a policy (initial weights seeded by ``c.seed``)
    trained by REINFORCE with its validation-best checkpoint kept, or a fitted ranker (MMR); the model, its
    validation and test alpha-NDCG@k and the training record (None for a fitted ranker). The training job's
    diversify view and the diversify experiment both fit through this."""
    torch.manual_seed(c.seed)  # the policy's initial weights (train_reinforce seeds what follows)
    model = build_model(dim, config)
    if MODELS.get(model.config.name).default_task == "fit":
        model.fit(train)
        return model, evaluate_policy(model, valid, c.k, c.alpha), evaluate_policy(model, test, c.k, c.alpha), None
    t = train_reinforce(model, train, valid, c)
    return t.policy, max(v["alpha_ndcg"] for v in t.valid), evaluate_policy(t.policy, test, c.k, c.alpha), t
