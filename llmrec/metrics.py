"""Every metric in one place: CTR (AUC, logloss, group AUC), ranking over id lists (recall, NDCG, MRR),
full-sort ranking over score matrices (HR / Recall / NDCG @k, as RecBole computes them) and score helpers
(tie-averaged ranks, min-max scaling).

AUC is computed from tie-averaged ranks in numpy (exact, equal to scikit-learn's ``roc_auc_score``; tested
for parity) because it runs every epoch on whole validation sets and needs no sklearn import."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from scipy.stats import rankdata as _scipy_rankdata


def rankdata(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties averaged (scipy's ``rankdata(method='average')``)."""
    return _scipy_rankdata(np.asarray(x, dtype=np.float64), method="average")


def minmax(x: np.ndarray, constant: float = 0.0) -> np.ndarray:
    """Scale to [0, 1]; a constant (or empty) input maps to ``constant``."""
    x = np.asarray(x, dtype=np.float64)
    span = x.max() - x.min() if len(x) else 0.0
    return (x - x.min()) / span if span > 1e-12 else np.full_like(x, constant)


# ---- CTR ----------------------------------------------------------------------------------------------

def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC with tie-averaged ranks (NaN when one class is absent)."""
    y = np.asarray(labels, dtype=np.float64)
    pos = y > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(scores)
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def logloss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy, probabilities clipped to [eps, 1 - eps]."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def group_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, min_groups: int = 1) -> float:
    """Impression-weighted mean AUC over groups (users) that have both classes; NaN (undefined) when fewer
    than ``min_groups`` groups have both (one or two users' AUC is 0.0 / 1.0 noise, not a gAUC)."""
    y, s, g = np.asarray(labels), np.asarray(scores), np.asarray(groups)
    order = np.argsort(g, kind="stable")
    y, s, g = y[order], s[order], g[order]
    cuts = np.flatnonzero(g[1:] != g[:-1]) + 1
    total, weight, used = 0.0, 0, 0
    for ys, ss in zip(np.split(y, cuts), np.split(s, cuts)):
        if 0 < ys.sum() < len(ys):
            total += auc(ys, ss) * len(ys)
            weight += len(ys)
            used += 1
    return float(total / weight) if weight and used >= min_groups else float("nan")


# ---- ranking over id lists (binary relevance) ---------------------------------------------------------

def recall_at(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """Fraction of the gold ids found in the top k."""
    return len(gold & set(ranked[:k])) / len(gold) if gold else 0.0


def recall_all_at(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """1 if every gold id is in the top k (MemGAS's session recall)."""
    return float(bool(gold) and gold <= set(ranked[:k]))


def recall_any_at(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """1.0 when any gold id is in the top ``k``, else 0.0."""
    return float(bool(gold & set(ranked[:k])))


def ndcg_at(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """NDCG@k with binary relevance."""
    dcg = sum(1 / math.log2(i + 2) for i, s in enumerate(ranked[:k]) if s in gold)
    idcg = sum(1 / math.log2(i + 2) for i in range(min(len(gold), k)))
    return dcg / idcg if idcg else 0.0


def mrr(ranked: Sequence[str], gold: set[str]) -> float:
    """Reciprocal rank of the first gold id (0.0 when none is ranked)."""
    return next((1 / (i + 1) for i, s in enumerate(ranked) if s in gold), 0.0)


# ---- full-sort ranking over score matrices ------------------------------------------------------------

def full_sort_metrics(scores: torch.Tensor, gold: torch.Tensor, ks: Sequence[int]) -> dict[str, torch.Tensor]:
    """Per-row Recall@k, HR@k, NDCG@k and MRR@k for ``scores`` [B, I] against a 0/1 ``gold`` mask [B, I]
    (RecBole's definitions: recall divides by the number of gold items, NDCG's ideal DCG uses
    min(#gold, k) items, MRR is 1 / the rank of the first gold item in the top k, else 0). Items to exclude (already seen) must be set to -inf in ``scores`` beforehand.
    Returns name -> tensor [B]."""
    if scores.shape != gold.shape:
        raise ValueError(f"gold: shape {tuple(gold.shape)} does not match scores {tuple(scores.shape)}")
    kmax = min(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices
    hits = gold.gather(1, top).float()  # [B, kmax]
    n_gold = gold.float().sum(1)
    disc = 1.0 / torch.log2(torch.arange(2, kmax + 2, dtype=torch.float32, device=scores.device))
    out = {}
    for k in ks:
        h = hits[:, :k]
        ideal = torch.cumsum(disc, 0)[(n_gold.clamp(min=1, max=min(k, kmax)) - 1).long()]
        out[f"recall@{k}"] = h.sum(1) / n_gold.clamp(min=1)
        out[f"hit@{k}"] = (h.sum(1) > 0).float()
        out[f"ndcg@{k}"] = (h * disc[: h.shape[1]]).sum(1) / ideal
        first = torch.where(h.any(1), h.argmax(1).float() + 1, torch.full_like(n_gold, float("inf")))
        out[f"mrr@{k}"] = 1.0 / first
    return out


def alpha_dcg_gains(ranking: Sequence[int], judgments: np.ndarray, alpha: float) -> np.ndarray:
    """The alpha-DCG gain of each position (before the log discount): sum over subtopics s of
    J(d, s) * (1 - alpha) ** (times s was covered above). ``judgments``: docs x subtopics, 0/1."""
    seen = np.zeros(judgments.shape[1])
    out = np.zeros(len(ranking))
    for k, d in enumerate(ranking):
        j = judgments[d]
        out[k] = float((j * (1 - alpha) ** seen).sum())
        seen += j
    return out


def alpha_dcg_at(ranking: Sequence[int], judgments: np.ndarray, k: int, alpha: float = 0.5) -> float:
    """alpha-DCG@k: the gains of the first k positions over log2(position + 1)."""
    gains = alpha_dcg_gains(list(ranking)[:k], judgments, alpha)
    return float((gains / np.log2(np.arange(2, len(gains) + 2))).sum())


def alpha_ndcg_at(ranking: Sequence[int], judgments: np.ndarray, k: int, alpha: float = 0.5) -> float:
    """alpha-NDCG@k (Clarke et al., SIGIR 2008): alpha-DCG@k of ``ranking`` over that of the greedy ideal
    ranking (the usual approximation of the NP-hard ideal); 0 when no document covers a subtopic."""
    ideal = alpha_dcg_at(greedy_ideal(judgments, k, alpha), judgments, k, alpha) if judgments.any() else 0.0
    return alpha_dcg_at(ranking, judgments, k, alpha) / ideal if ideal > 0 else 0.0


def greedy_ideal(judgments: np.ndarray, k: int, alpha: float = 0.5) -> list[int]:
    """The greedy ideal ranking for alpha-DCG: at each rank the document with the largest marginal gain."""
    seen = np.zeros(judgments.shape[1])
    left = list(range(len(judgments)))
    out = []
    for _ in range(min(k, len(left))):
        gains = (judgments[left] * (1 - alpha) ** seen).sum(1)
        best = left[int(np.argmax(gains))]
        out.append(best)
        seen += judgments[best]
        left.remove(best)
    return out


def precision_at(scores: np.ndarray, candidates: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Share of ``targets`` among the top ``k`` candidates by score (ties: lower user index first)."""
    s = scores[candidates]
    top = candidates[np.lexsort((candidates, -s))[:k]]
    return float(np.isin(top, targets).sum() / min(k, len(candidates)))
