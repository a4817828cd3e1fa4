"""CTR metrics on numpy arrays: AUC (rank-based, ties averaged), logloss, group AUC."""
from __future__ import annotations

import numpy as np


def _rankdata(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    # average ranks over ties
    boundaries = np.flatnonzero(np.diff(xs)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(x)]])
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    pos = y > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = _rankdata(s)
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def logloss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def group_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float:
    """Impression-weighted mean AUC over groups (users) that have both classes."""
    y, s, g = np.asarray(labels), np.asarray(scores), np.asarray(groups)
    order = np.argsort(g, kind="stable")
    y, s, g = y[order], s[order], g[order]
    cuts = np.flatnonzero(g[1:] != g[:-1]) + 1
    total, weight = 0.0, 0
    for ys, ss in zip(np.split(y, cuts), np.split(s, cuts)):
        if 0 < ys.sum() < len(ys):
            total += auc(ys, ss) * len(ys)
            weight += len(ys)
    return float(total / weight) if weight else float("nan")
