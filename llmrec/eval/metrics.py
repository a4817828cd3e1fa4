"""Ranking metrics over ranked id lists and a set of gold ids (binary relevance)."""
from __future__ import annotations

import math
from typing import Sequence


def recall_at(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """Fraction of the gold ids found in the top k."""
    return len(gold & set(ranked[:k])) / len(gold) if gold else 0.0


def recall_all_at(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """1 if every gold id is in the top k (MemGAS's session recall)."""
    return float(bool(gold) and gold <= set(ranked[:k]))


def recall_any_at(ranked: Sequence[str], gold: set[str], k: int) -> float:
    return float(bool(gold & set(ranked[:k])))


def ndcg_at(ranked: Sequence[str], gold: set[str], k: int) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, s in enumerate(ranked[:k]) if s in gold)
    idcg = sum(1 / math.log2(i + 2) for i in range(min(len(gold), k)))
    return dcg / idcg if idcg else 0.0


def mrr(ranked: Sequence[str], gold: set[str]) -> float:
    return next((1 / (i + 1) for i, s in enumerate(ranked) if s in gold), 0.0)
