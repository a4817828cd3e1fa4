"""RF-Mem (Zhang et al., ICLR 2026): a familiarity probe routes each query to a fast path (plain top-K)
or a slow recollection path (beam search in embedding space).

Probe: top ``probe_k`` similarities with score >= ``tau_sim``; mean s and entropy H = -mean(p log p) of
p = softmax(beta * s). Familiar (fast) if s >= theta_hi; recollection if s <= theta_lo or no hit; in
between fast when H < theta_h. Recollection: a beam of query vectors; each branch retrieves
(beam + level) * fanout candidates, clusters the unseen ones with k-means, and each cluster spawns a child
query normalize(alpha * q_branch + (1 - alpha) * centroid + q0); the best ``beam`` children by cumulative
score continue; hits are returned in discovery order."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmrec.config import StrictConfig
from llmrec.memory.api import namespace


class RFMemConfig(StrictConfig):
    """RF-Mem settings: familiarity threshold, beam width and depth of recollection."""
    probe_k: int = 10
    tau_sim: float = 0.0
    beta: float = 20.0
    theta_hi: float = 0.6
    theta_lo: float = 0.0
    theta_h: float = 0.1
    beam: int = 4
    fanout: int = 1
    alpha: float = 0.7
    depth: int = 10
    mmr_lambda: float = 1.0  # 1.0 = MMR off
    min_score: float = 0.0
    granularity: str | list[str] = "turn"  # unit kind(s) searched, e.g. ["turn", "pair"]


def familiarity(scores: np.ndarray, config: RFMemConfig) -> tuple[str, float, float]:
    """Returns (path, mean score, entropy) for the probe scores."""
    s = np.asarray(scores, dtype=np.float64)
    s = s[s >= config.tau_sim]
    if len(s) == 0:
        return "recollection", 0.0, 0.0
    mean = float(s.mean())
    z = config.beta * (s - s.max())
    p = np.exp(z) / np.exp(z).sum()
    h = float(-np.mean(p * np.log(np.maximum(p, 1e-300))))
    if mean >= config.theta_hi:
        return "familiarity", mean, h
    if mean <= config.theta_lo:
        return "recollection", mean, h
    return ("familiarity" if h < config.theta_h else "recollection"), mean, h


def kmeans(x: np.ndarray, k: int, seed: int = 42, iterations: int = 20) -> np.ndarray:
    """Labels of a small k-means (k-means++ init, cosine-normalized inputs)."""
    n = len(x)
    k = max(1, min(k, n))
    rng = np.random.default_rng(seed)
    centers = [x[rng.integers(n)]]
    for _ in range(1, k):
        d = np.min([np.sum((x - c) ** 2, axis=1) for c in centers], axis=0)
        centers.append(x[rng.choice(n, p=d / d.sum())] if d.sum() > 0 else x[rng.integers(n)])
    c = np.stack(centers)
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iterations):
        labels = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        for j in range(k):
            if (labels == j).any():
                c[j] = x[labels == j].mean(0)
    return labels


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


@dataclass
class RFMemResult:
    """RF-Mem's hits and which path (familiarity or recollection) produced them."""
    path: str
    mean_score: float
    entropy: float
    hits: list  # store Hits in RF-Mem order


class RFMem:
    """RF-Mem over a ``Memory`` (searches one user's namespace of the store)."""

    def __init__(self, memory, config: RFMemConfig | None = None) -> None:
        self.memory, self.config = memory, config or RFMemConfig()

    def retrieve(self, user_id: str, query: str, k: int = 10) -> RFMemResult:
        if k <= 0:
            raise ValueError("k: must be a positive integer")
        c = self.config
        ns, where = namespace(user_id), {"granularity": c.granularity}
        q0 = _normalize(self.memory.embedder.encode([query])[0])
        probe = self.memory.store.search(ns, q0, c.probe_k, where=where)
        path, mean, h = familiarity(np.array([x.score for x in probe]), c)
        if path == "familiarity":
            return RFMemResult(path, mean, h, [x for x in self.memory.store.search(ns, q0, k, where=where)
                                               if x.score >= c.min_score])
        seen: set[str] = set()
        results = []
        beam = [(q0, 0.0)]
        for level in range(c.depth):
            children = []
            for qb, score_b in beam:
                cands = [x for x in self.memory.store.search(ns, qb, (c.beam + level) * c.fanout, where=where)
                         if x.id not in seen and x.score >= c.min_score]
                if not cands:
                    continue
                recs = self.memory.store.get(ns, [x.id for x in cands])
                vecs = np.stack([r.vector for r in recs])
                if c.mmr_lambda < 1.0 and len(cands) > 1:
                    sim = vecs @ vecs.T
                    np.fill_diagonal(sim, -np.inf)
                    mmr = c.mmr_lambda * np.array([x.score for x in cands]) - (1 - c.mmr_lambda) * sim.max(1)
                    order = np.argsort(-mmr)
                    cands, vecs = [cands[i] for i in order], vecs[order]
                labels = kmeans(vecs, min(c.beam, len(cands)))
                for lab in np.unique(labels):
                    members = np.flatnonzero(labels == lab)
                    mu = _normalize(vecs[members].mean(0))
                    child = _normalize(c.alpha * qb + (1 - c.alpha) * mu + q0)
                    children.append((child, score_b + float(sum(cands[i].score for i in members)),
                                     [cands[i] for i in members]))
            if not children:
                break
            children.sort(key=lambda t: -t[1])
            beam = []
            for child, score, hits in children[: c.beam]:
                beam.append((child, score))
                for x in hits:
                    if x.id not in seen:
                        seen.add(x.id)
                        results.append(x)
            if len(results) >= k:
                break
        return RFMemResult(path, mean, h, results[:k])
