"""Agreement statistics through scipy / scikit-learn, with undefined values kept undefined.

A constant rater has no Spearman correlation and a kappa whose chance agreement is total is 0/0: scipy and
scikit-learn return NaN there and so do these wrappers (never a made-up 0.0 or 1.0). ``fmt_stat`` prints
NaN / None as "n/a (<reason>)"."""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho (ties get average ranks); NaN when either side is constant."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"spearman: need two equal-length lists of at least 2 (got {len(a)}, {len(b)})")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def cohen_kappa(a: Sequence[int], b: Sequence[int], labels: Sequence[int] | None = None,
                weights: str | None = None) -> float:
    """Cohen's kappa (``weights='quadratic'`` for ordinal scales) by scikit-learn; NaN when undefined."""
    from sklearn.metrics import cohen_kappa_score

    a, b = list(a), list(b)
    if len(a) != len(b) or not a:
        raise ValueError("cohen_kappa: need two equal-length, non-empty label lists")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(cohen_kappa_score(a, b, labels=labels, weights=weights))


def spearman_reason(a: Sequence[float], b: Sequence[float]) -> str | None:
    """Why Spearman's rho is undefined for these lists, or None when it is defined."""
    if len(a) < 2:
        return f"{len(a)} scored pair(s)"
    if np.ptp(np.asarray(a, float)) == 0:
        return "the judge gave every item the same score"
    if np.ptp(np.asarray(b, float)) == 0:
        return "the human labels are constant"
    return None


def kappa_reason(a: Sequence[int], b: Sequence[int]) -> str | None:
    """Why Cohen's kappa is undefined for these labels, or None when it is defined."""
    if len(a) < 2:
        return f"{len(a)} scored pair(s)"
    if len(set(a)) == 1 and len(set(b)) == 1:
        return "both raters used one label only"
    return None


def is_defined(x: float | None) -> bool:
    """False for None and NaN."""
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def fmt_stat(x: float | None, reason: str | None = None, digits: int = 3) -> str:
    """``0.412`` or ``n/a (reason)``."""
    if is_defined(x):
        return f"{x:.{digits}f}"
    return f"n/a ({reason})" if reason else "n/a"


def nan_to_none(x: float | None) -> float | None:
    """For JSON: NaN is not valid JSON, an undefined statistic is written as null."""
    return x if is_defined(x) else None
