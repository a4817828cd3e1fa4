"""The user-item graph of the graph family: training edges, normalized sparse adjacencies (built once per
graph, cached), top-k similarity graphs (Multi-GCCF) and behaviour graphs (CIGF).

Node numbering of every adjacency: users 0..U-1, then items U..U+I-1 where I counts the padding item 0
(an isolated node, so item index ``i`` is node ``U + i``). Edges are deduplicated (``GraphStats`` counts the
duplicates); a bipartite graph has no self-loops by construction, and the similarity graphs drop a node's
similarity to itself.

Normalizations (``adjacency``): ``sym`` D^-1/2 A D^-1/2 (LightGCN, RecBole), ``left`` D^-1 A (CIGF: row
means), ``sym_self`` D^-1/2 (A + I) D^-1/2 over degrees with the self-loop (NGCF / GCN). A node of degree 0
gets a zero row. All are CSR tensors (``torch.sparse.mm`` backs them with a compiled kernel)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from llmrec.errors import DataError

Norm = Literal["sym", "left", "sym_self"]


def _csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n: int, m: int) -> torch.Tensor:
    order = np.lexsort((cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    crow = np.zeros(n + 1, np.int64)
    np.add.at(crow, rows + 1, 1)
    with warnings.catch_warnings():  # "CSR support is in beta": the operations used here are tested
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(np.cumsum(crow)), torch.from_numpy(cols.astype(np.int64)),
                                       torch.from_numpy(vals.astype(np.float32)), size=(n, m),
                                       check_invariants=False)


def normalized(rows: np.ndarray, cols: np.ndarray, n: int, norm: Norm, weights: np.ndarray | None = None
               ) -> torch.Tensor:
    """The normalized [n, n] sparse matrix of a symmetric edge list (both directions given)."""
    w = np.ones(len(rows), np.float64) if weights is None else weights.astype(np.float64)
    if norm == "sym_self":
        rows, cols = np.concatenate([rows, np.arange(n)]), np.concatenate([cols, np.arange(n)])
        w = np.concatenate([w, np.ones(n)])
    deg = np.bincount(rows, weights=w, minlength=n)
    with np.errstate(divide="ignore"):
        inv = np.where(deg > 0, 1.0 / deg, 0.0)
    vals = w * inv[rows] if norm == "left" else w * np.sqrt(inv[rows]) * np.sqrt(inv[cols])
    return _csr(rows, cols, vals, n, n)


@dataclass
class InteractionGraph:
    """Training edges of a user-item graph (item ids as in ``ItemSpace``: 1..I-1, 0 = padding) and, for
    multi-behaviour models, one edge set per behaviour (ordered; the last is the target behaviour)."""
    n_users: int
    n_items: int  # item ids including the padding 0
    users: np.ndarray  # [E] int64, deduplicated training edges
    items: np.ndarray  # [E]
    behaviours: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.users) != len(self.items):
            raise DataError(f"graph.items: {len(self.items)} item ids for {len(self.users)} user ids")
        if len(self.users) == 0:
            raise DataError("graph: no training edges")
        for name, (u, i) in self.behaviours.items():
            if len(u) == 0:
                raise DataError(f"graph.behaviours.{name}: an empty behaviour graph (no training edges)")

    @property
    def n_nodes(self) -> int:
        """Users plus item ids (the padding item included)."""
        return self.n_users + self.n_items

    def edges(self, behaviour: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(users, items) of the training edges, or of one behaviour's."""
        if behaviour is None:
            return self.users, self.items
        if behaviour not in self.behaviours:
            raise DataError(f"behaviour: {behaviour!r} is not a behaviour of this graph (have {list(self.behaviours)})")
        return self.behaviours[behaviour]

    def adjacency(self, norm: Norm = "sym", behaviour: str | None = None) -> torch.Tensor:
        """The normalized bipartite adjacency [(U+I), (U+I)] (CSR), built once and cached."""
        key = ("adj", norm, behaviour)
        if key not in self._cache:
            u, i = self.edges(behaviour)
            r = np.concatenate([u, self.n_users + i])
            c = np.concatenate([self.n_users + i, u])
            self._cache[key] = normalized(r, c, self.n_nodes, norm)
        return self._cache[key]

    def degrees(self) -> tuple[np.ndarray, np.ndarray]:
        """Training degree of every user [U] and item id [I]."""
        return (np.bincount(self.users, minlength=self.n_users),
                np.bincount(self.items, minlength=self.n_items))

    def neighbours(self, side: Literal["user", "item"]) -> torch.Tensor:
        """Row-normalized [U, I] (user side) or [I, U] (item side) CSR matrix: the mean over a node's neighbours."""
        key = ("mean", side)
        if key not in self._cache:
            r, c, n, m = ((self.users, self.items, self.n_users, self.n_items) if side == "user"
                          else (self.items, self.users, self.n_items, self.n_users))
            deg = np.bincount(r, minlength=n).astype(np.float64)
            self._cache[key] = _csr(r, c, 1.0 / deg[r], n, m)
        return self._cache[key]

    def sampled_neighbours(self, side: Literal["user", "item"], cap: int, rng: np.random.Generator
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """GraphSAGE's sampled neighbourhood: the mean over at most ``cap`` of each node's neighbours, drawn
        without replacement (all of them where it has fewer), as a [U, I] (user side) or [I, U] CSR matrix
        and its transpose."""
        r, c, n, m = ((self.users, self.items, self.n_users, self.n_items) if side == "user"
                      else (self.items, self.users, self.n_items, self.n_users))
        order = np.lexsort((rng.random(len(r)), r))  # each node's edges in a random order
        rs = r[order]
        first = np.searchsorted(rs, rs, side="left")
        keep = order[np.arange(len(rs)) - first < cap]
        r, c = r[keep], c[keep]
        deg = np.bincount(r, minlength=n).astype(np.float64)
        w = 1.0 / deg[r]
        return _csr(r, c, w, n, m), _csr(c, r, w, m, n)

    def similarity(self, side: Literal["user", "item"], k: int) -> torch.Tensor:
        """Top-``k`` cosine-similarity graph between users (co-interacted items) or items (shared users),
        symmetrized and normalized (``sym``), self-similarity excluded; nodes without any neighbour keep a
        zero row. Cached per (side, k)."""
        key = ("sim", side, k)
        if key not in self._cache:
            import scipy.sparse as sp

            n, m = (self.n_users, self.n_items) if side == "user" else (self.n_items, self.n_users)
            r, c = (self.users, self.items) if side == "user" else (self.items, self.users)
            x = sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(n, m))
            norms = np.sqrt(np.asarray(x.multiply(x).sum(1)).ravel())
            norms[norms == 0] = 1.0
            x = sp.diags(1.0 / norms) @ x
            rows, cols, vals = [], [], []
            for start in range(0, n, 1024):  # [chunk, n] dense similarities: bounded memory
                s = (x[start:start + 1024] @ x.T).toarray()
                idx = np.arange(s.shape[0])
                s[idx, start + idx] = -np.inf  # no self-similarity
                kk = min(k, n - 1)
                if kk <= 0:
                    break
                top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
                val = np.take_along_axis(s, top, 1)
                keep = val > 0
                rows.append(np.repeat(start + idx, kk)[keep.ravel()])
                cols.append(top.ravel()[keep.ravel()])
                vals.append(val.ravel()[keep.ravel()])
            rr = np.concatenate(rows) if rows else np.zeros(0, np.int64)
            cc = np.concatenate(cols) if cols else np.zeros(0, np.int64)
            vv = np.concatenate(vals) if vals else np.zeros(0)
            # symmetrize (an edge kept by either end), max weight of the two
            sym = sp.coo_matrix((vv, (rr, cc)), shape=(n, n)).tocsr()
            sym = sym.maximum(sym.T).tocoo()
            self._cache[key] = normalized(sym.row.astype(np.int64), sym.col.astype(np.int64), n, "sym", sym.data)
        return self._cache[key]

    def save(self, path: str | Path) -> None:
        """The edges as ``.npz`` (``load`` rebuilds the graph; caches are rebuilt on demand)."""
        arrays = {"shape": np.array([self.n_users, self.n_items]), "users": self.users, "items": self.items}
        for n, (name, (u, i)) in enumerate(self.behaviours.items()):
            arrays[f"b{n}_users"], arrays[f"b{n}_items"] = u, i
        with open(path, "wb") as f:
            np.savez(f, names=np.array(list(self.behaviours), dtype=str), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "InteractionGraph":
        """A graph saved by ``save``."""
        z = np.load(path)
        names = [str(x) for x in z["names"]]
        return cls(int(z["shape"][0]), int(z["shape"][1]), z["users"], z["items"],
                   {name: (z[f"b{n}_users"], z[f"b{n}_items"]) for n, name in enumerate(names)})


def split_counts(totals: np.ndarray, fractions: tuple[float, float, float]) -> np.ndarray:
    """[N, 3] train/valid/test counts per user, RecBole's rule: valid and test get floor(fraction x n),
    train the rest; a part whose fraction x n is in (0, 1) gets one row (test first) while train keeps more
    than one."""
    tot = totals.astype(np.int64)
    cnt = np.stack([np.zeros_like(tot), (fractions[1] * tot).astype(np.int64), (fractions[2] * tot).astype(np.int64)], 1)
    cnt[:, 0] = tot - cnt[:, 1] - cnt[:, 2]
    for part in (2, 1):
        x = fractions[part] * tot
        move = (cnt[:, 0] > 1) & (x > 0) & (x < 1)
        cnt[move, part] += 1
        cnt[move, 0] -= 1
    return cnt
