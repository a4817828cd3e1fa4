"""Encoder-role knowledge: the LLM (or MiniLM) as a *feature encoder*, with no generation.

The texts the generation prompts would show (an item's title, category and description; a user's profile and
recent history) are encoded directly: by MiniLM, or by the LLM's own mean-pooled last hidden states
(``LLMHiddenEncoder``). The LLM4RS survey's "feature encoder" role, which small models do far better than
free generation. Vectors are cached next to generated knowledge (``<LLMREC_HOME>/knowledge/<data>/text/``)
with a hash of each text, so a rerun encodes only changed texts."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from llmrec.config import llmrec_home
from llmrec.data.schema import RecData
from llmrec.embed import Embedder, LLMHiddenEncoder, default_embedder
from llmrec.knowledge.encode import encode_knowledge, encoder_slug, load_vectors_with_hashes, save_vectors
from llmrec.knowledge.requests import build_requests
from llmrec.llm import LLMConfig, make_llm

TextEncoder = Literal["minilm", "llm"]


def knowledge_texts(data: RecData, train_rows: np.ndarray, kind: str, history_items: int = 8) -> dict[str, str]:
    """id -> the text a generation prompt of ``kind`` would show (its variables, one per line)."""
    return {r.id: "\n".join(f"{k}: {v}" for k, v in r.variables.items())
            for r in build_requests(data, train_rows, kind, history_items)}


def text_encoder(name: TextEncoder, llm: LLMConfig | None = None) -> Embedder:
    """MiniLM (with the shared embedding cache) or the LLM's mean-pooled hidden states."""
    if name == "minilm":
        return default_embedder(cache_path=str(llmrec_home() / "embeddings.sqlite"))
    return LLMHiddenEncoder(make_llm(llm or LLMConfig()))


def text_knowledge(data: RecData, train_rows: np.ndarray, kinds: list[str], encoder: Embedder,
                   history_items: int = 8, cache_dir: str | Path | None = None) -> dict[str, dict[str, np.ndarray]]:
    """kind -> id -> vector of the kind's texts under ``encoder`` (cached by text hash)."""
    where = Path(cache_dir) if cache_dir else llmrec_home() / "knowledge" / data.name / "text"
    where.mkdir(parents=True, exist_ok=True)
    out = {}
    for kind in kinds:
        texts = knowledge_texts(data, train_rows, kind, history_items)
        path = where / f"{kind}.{encoder_slug(encoder.model_id)}.npz"
        previous = None
        if path.exists():
            vecs, _, hashes = load_vectors_with_hashes(path)
            previous = (vecs, hashes)
        vectors = encode_knowledge(texts, encoder, previous=previous)
        save_vectors(path, vectors, encoder.model_id, texts)
        out[kind] = vectors
    return out
