"""Performance law for sequential recommendation with approximate entropy (Shen et al., arXiv 2412.00430).

- ``approximate_entropy``: Pincus' ApEn(m, r) = Phi_m - Phi_{m+1} of one item sequence with exact matching
  (r = 0): Phi_m = mean over the length-m windows of log(fraction of windows equal to it). A sequence that
  repeats itself scores near 0; one that mixes a few symbols irregularly scores higher. With no repeated
  window at all (a user who never returns to an item) it is log((N-m)/(N-m+1)) < 0 whatever the order, so
  item-id sequences are read through a coarser symbol (the item's category) in the experiment.
- ``pooled_approximate_entropy``: the same over a data set's pooled windows (the next-item entropy across users).
- ``data_proxy``: tokens (interactions) of a data set, the mean ApEn over its users' sequences (or pooled), and
  D' = tokens x mean ApEn, the quality-weighted data size the law uses in place of raw tokens.
- ``PerformanceLaw``: HR or NDCG as a function of model size N (parameters) and data D:
  metric = a - b * N^-alpha - c * D^-beta - d * N / D (the last term: over-parameterised models on little data
  decay), fitted with ``scipy.optimize.curve_fit`` on part of a grid and judged on the rest (MAPE).
- ``recommend_size``: the (layers, width) of a candidate grid the fitted law predicts best for a data budget."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np


def approximate_entropy(seq: Sequence, m: int = 2) -> float:
    """ApEn(m, r=0) of a sequence of hashable items (ids); 0.0 for sequences shorter than m + 1."""
    if m < 1:
        raise ValueError(f"m: must be >= 1, got {m}")
    n = len(seq)
    if n < m + 1:
        return 0.0

    def phi(k: int) -> float:
        windows = [tuple(seq[i:i + k]) for i in range(n - k + 1)]
        counts = Counter(windows)
        total = len(windows)
        return sum(math.log(counts[w] / total) for w in windows) / total

    return phi(m) - phi(m + 1)


def pooled_approximate_entropy(sequences: Sequence[Sequence], m: int = 2) -> float:
    """ApEn(m, r=0) over a data set's pooled windows: Phi_k = mean over every length-k window of every sequence
    (windows never cross sequences) of log(its share of all length-k windows). Phi_m - Phi_{m+1} is then the
    plug-in entropy of (m+1)-grams minus that of m-grams, i.e. how unpredictable the next item is after m
    items across users; unlike the per-sequence ApEn it stays meaningful when no user repeats an item."""
    if m < 1:
        raise ValueError(f"m: must be >= 1, got {m}")

    def phi(k: int) -> float:
        counts = Counter(tuple(s[i:i + k]) for s in sequences for i in range(len(s) - k + 1))
        total = sum(counts.values())
        if not total:
            return 0.0
        return sum(c * math.log(c / total) for c in counts.values()) / total

    return phi(m) - phi(m + 1)


@dataclass
class DataProxy:
    """A data set's size and quality: interactions, mean ApEn over sequences, and D' = tokens x ApEn."""
    tokens: int
    apen: float
    d_prime: float
    sequences: int


def data_proxy(sequences: Sequence[Sequence], m: int = 2, scope: str = "sequence") -> DataProxy:
    """Tokens, ApEn and D' of a set of sequences: ``scope`` "sequence" averages the per-sequence ApEn (sequences
    of at least m + 1 items), "pooled" reads every sequence's windows together."""
    if not sequences:
        raise ValueError("sequences: empty")
    if scope not in ("sequence", "pooled"):
        raise ValueError(f"scope: 'sequence' or 'pooled', got {scope!r}")
    tokens = sum(len(s) for s in sequences)
    if scope == "pooled":
        apen = pooled_approximate_entropy(sequences, m)
        return DataProxy(tokens=tokens, apen=apen, d_prime=tokens * apen, sequences=len(sequences))
    scored = [approximate_entropy(s, m) for s in sequences if len(s) >= m + 1]
    apen = float(np.mean(scored)) if scored else 0.0
    return DataProxy(tokens=tokens, apen=apen, d_prime=tokens * apen, sequences=len(sequences))


def _law(x: np.ndarray, a: float, b: float, alpha: float, c: float, beta: float, d: float) -> np.ndarray:
    n, data = x
    return a - b * n ** -alpha - c * data ** -beta - d * n / data


@dataclass
class PerformanceLaw:
    """A fitted law metric(N, D) = a - b N^-alpha - c D^-beta - d N / D (N: parameters, D: data size)."""
    params: tuple[float, ...]
    data_measure: str  # what D was: "tokens" or "d_prime"

    @classmethod
    def fit(cls, n: Sequence[float], data: Sequence[float], metric: Sequence[float],
            data_measure: str = "d_prime") -> "PerformanceLaw":
        """Least-squares fit of the relative error (``scipy.optimize.curve_fit`` with sigma = the metric, as
        the law is judged by MAPE; bounded: every coefficient >= 0, exponents in (0, 3]), restarted from a
        small grid of exponents and the best kept; needs at least 6 points."""
        from scipy.optimize import curve_fit

        n, data, y = (np.asarray(v, dtype=np.float64) for v in (n, data, metric))
        if len(y) < 6:
            raise ValueError(f"points: the law has 6 coefficients, got {len(y)} points")
        if (n <= 0).any() or (data <= 0).any():
            raise ValueError("n / data: sizes must be positive")
        if (y <= 0).any():
            raise ValueError("metric: the law is fitted on relative error, every metric must be > 0")
        bounds = ([0, 0, 1e-3, 0, 1e-3, 0], [2, np.inf, 3, np.inf, 3, np.inf])
        x = np.vstack([n, data])
        best: tuple[float, np.ndarray] | None = None
        for a0 in (float(y.max()) + 0.05, 1.0):
            for alpha in (0.1, 0.5, 1.0):
                for beta in (0.1, 0.5, 1.0):
                    try:
                        params, _ = curve_fit(_law, x, y, p0=(a0, 1.0, alpha, 1.0, beta, 0.0), sigma=y,
                                              bounds=bounds, maxfev=20000)
                    except RuntimeError:  # this start did not converge; the others may
                        continue
                    err = float(np.sum(((_law(x, *params) - y) / y) ** 2))
                    if best is None or err < best[0]:
                        best = (err, params)
        if best is None:
            raise ValueError("points: the law did not converge from any start")
        return cls(tuple(float(p) for p in best[1]), data_measure)

    def predict(self, n: Sequence[float] | float, data: Sequence[float] | float) -> np.ndarray:
        """The law's metric at sizes ``n`` and data ``data``."""
        n, data = np.broadcast_arrays(np.asarray(n, np.float64), np.asarray(data, np.float64))
        return _law(np.vstack([n.ravel(), data.ravel()]), *self.params).reshape(n.shape)


def mape(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """Mean absolute percentage error, in percent."""
    p, m = np.asarray(predicted, np.float64), np.asarray(measured, np.float64)
    if (m == 0).any():
        raise ValueError("measured: MAPE is undefined with a zero measurement")
    return float(np.mean(np.abs(p - m) / np.abs(m)) * 100)


def recommend_size(law: PerformanceLaw, data: float, candidates: dict[tuple[int, int], int]) -> tuple[tuple[int, int], float]:
    """Among ``candidates`` {(layers, width): parameters}, the one the law predicts best at ``data``, and its
    predicted metric."""
    if not candidates:
        raise ValueError("candidates: empty")
    scored = {k: float(law.predict(n, data)) for k, n in candidates.items()}
    best = max(scored, key=scored.get)
    return best, scored[best]
