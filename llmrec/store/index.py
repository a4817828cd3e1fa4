"""FAISS indexes with int64 ids and deletion, behind one small class.

``flat`` (exact inner product) removes ids for real; ``hnsw`` cannot remove from the graph, so
deleted ids become tombstones that searches skip (and over-fetch for) until the index is rebuilt;
``ivfpq`` keeps vectors in an exact buffer until it has enough to train, then trains and moves them."""
from __future__ import annotations

from typing import Literal

import faiss
import numpy as np

from llmrec.config import StrictConfig

IndexKind = Literal["flat", "hnsw", "ivfpq"]


class IndexConfig(StrictConfig):
    """ANN index settings: kind (flat, HNSW, IVF-PQ) and its parameters."""
    kind: IndexKind = "flat"
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 64
    ivf_nlist: int = 256
    ivf_nprobe: int = 16
    pq_m: int = 48  # sub-quantizers; must divide the dimension
    pq_bits: int = 8


class AnnIndex:
    """A FAISS index keyed by row id (add, remove, search with an allowed-id filter)."""
    def __init__(self, dim: int, config: IndexConfig) -> None:
        self.dim, self.config = dim, config
        self.tombstones: set[int] = set()
        self.index = self._new()

    # -- construction -------------------------------------------------------------------------
    def _new(self):
        c = self.config
        if c.kind == "hnsw":
            base = faiss.IndexHNSWFlat(self.dim, c.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction = c.hnsw_ef_construction
            base.hnsw.efSearch = c.hnsw_ef_search
            return faiss.IndexIDMap2(base)
        # flat, and ivfpq before it is trained
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    @property
    def train_size(self) -> int:
        """Vectors needed before an IVF-PQ index can be trained (0 for flat / HNSW)."""
        c = self.config
        return max(39 * c.ivf_nlist, 39 * (1 << c.pq_bits))

    def _is_ivf(self) -> bool:
        return isinstance(self.index, faiss.IndexIVF)

    def _maybe_train_ivf(self) -> None:
        c = self.config
        if c.kind != "ivfpq" or self._is_ivf() or self.index.ntotal < self.train_size:
            return
        if self.dim % c.pq_m:
            raise ValueError(f"pq_m: {c.pq_m} does not divide the dimension {self.dim}")
        ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        vecs = self.index.index.reconstruct_n(0, self.index.ntotal)
        quant = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFPQ(quant, self.dim, c.ivf_nlist, c.pq_m, c.pq_bits, faiss.METRIC_INNER_PRODUCT)
        ivf.train(vecs)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        ivf.nprobe = c.ivf_nprobe
        ivf.add_with_ids(vecs, ids)
        self.index = ivf

    # -- mutation -----------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        """Vectors in the index, removed ones included until a rebuild."""
        return int(self.index.ntotal) - len(self.tombstones)

    def ids(self) -> np.ndarray:
        """Every live id in the index, with repeats if an id was ever added twice (see ``VectorStore.verify``)."""
        if self._is_ivf():
            inv = self.index.invlists
            parts = [faiss.rev_swig_ptr(inv.get_ids(i), inv.list_size(i)).copy()
                     for i in range(inv.nlist) if inv.list_size(i)]
            out = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        else:
            out = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        if self.tombstones:
            out = out[~np.isin(out, np.fromiter(self.tombstones, np.int64, len(self.tombstones)))]
        return out

    def contains(self, rid: int) -> bool:
        """Whether ``rid`` is in the FAISS index at all (live or tombstoned)."""
        try:
            self.index.reconstruct(int(rid))
            return True
        except RuntimeError:
            return False

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        """Add vectors under row ids."""
        if len(ids) == 0:
            return
        self.index.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32), np.asarray(ids, dtype=np.int64))
        self._maybe_train_ivf()

    def remove(self, ids: np.ndarray) -> None:
        """Remove row ids (HNSW: tombstoned until the next rebuild)."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return
        if self.config.kind == "hnsw":
            self.tombstones.update(int(i) for i in ids)
        else:
            self.index.remove_ids(ids)

    def search(self, queries: np.ndarray, k: int, allowed: set[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; missing slots have id -1. Tombstones are skipped.
        ``allowed`` restricts the search to those ids (a FAISS id selector)."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if self.index.ntotal == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        fetch = min(int(self.index.ntotal), k + len(self.tombstones))
        if allowed is not None:
            sel = faiss.IDSelectorBatch(np.fromiter(allowed, np.int64, len(allowed)))
            params = faiss.SearchParametersIVF(sel=sel, nprobe=self.config.ivf_nprobe) if self._is_ivf() \
                else faiss.SearchParameters(sel=sel)
            scores, ids = self.index.search(q, fetch, params=params)
        else:
            scores, ids = self.index.search(q, fetch)
        if not self.tombstones:
            return scores[:, :k], ids[:, :k]
        out_s = np.full((len(q), k), -np.inf, np.float32)
        out_i = np.full((len(q), k), -1, np.int64)
        for r in range(len(q)):
            keep = [(s, i) for s, i in zip(scores[r], ids[r]) if i != -1 and int(i) not in self.tombstones][:k]
            for j, (s, i) in enumerate(keep):
                out_s[r, j], out_i[r, j] = s, i
        return out_s, out_i

    # -- persistence --------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The index serialized (for snapshots)."""
        return faiss.serialize_index(self.index).tobytes()

    @classmethod
    def from_bytes(cls, dim: int, config: IndexConfig, data: bytes, tombstones: list[int]) -> "AnnIndex":
        """An index from ``to_bytes`` output and its tombstones."""
        self = cls.__new__(cls)
        self.dim, self.config = dim, config
        self.index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        if isinstance(self.index, faiss.IndexIVF):
            self.index.nprobe = config.ivf_nprobe
        elif config.kind == "hnsw":
            faiss.downcast_index(self.index.index).hnsw.efSearch = config.hnsw_ef_search
        self.tombstones = set(tombstones)
        return self
