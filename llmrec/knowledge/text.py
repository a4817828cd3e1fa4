"""Encoder-role knowledge: the LLM (or MiniLM) as a *feature encoder*, with no generation.

The texts the generation prompts would show (an item's title, category and description; a user's profile and
recent history) are encoded directly: by MiniLM, or by the LLM's own mean-pooled last hidden states
(``LLMHiddenEncoder``). The LLM4RS survey's "feature encoder" role, which small models do far better than
free generation. Vectors are cached next to generated knowledge (``<LLMREC_HOME>/knowledge/<data>/text/``)
with a hash of each text, so a rerun encodes only changed texts."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import numpy as np

from llmrec.config import llmrec_home
from llmrec.data.schema import RecData
from llmrec.embed import Embedder, LLMHiddenEncoder, default_embedder
from llmrec.knowledge.encode import (encode_knowledge, encoder_slug, load_vectors_with_hashes, save_vectors,
                                     text_hash)
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


OPTION_QUESTIONS = {
    "item": "Which word best describes this {domain} item? Answer with one word from: {options}.\n\n{text}",
    "user": "Which kind of {domain} does this person like most? Answer with one word from: {options}.\n\n{text}",
}


def option_knowledge(data: RecData, train_rows: np.ndarray, kinds: list[str], llm, options: list[str],
                     history_items: int = 8, cache_dir: str | Path | None = None,
                     report: dict | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Likelihood-scored knowledge: for every item / user, the LLM's probability of each of a fixed set of
    ``options`` (attribute words: themes, genres, styles) as the answer to a question about its text —
    log-probabilities from one scoring pass, normalized over the options (a compact vector that keeps the
    model's uncertainty; nothing is generated or parsed). Needs ``llm.score_options`` (transformers; OpenAI-compatible endpoints
    and vLLM score an option by its first token, from top_logprobs).
    Cached by text hash like ``text_knowledge``; ``report`` receives options scored per second."""
    if not hasattr(llm, "score_options"):
        raise TypeError(f"{llm.model_id}: option-scored knowledge needs option log-probabilities (score_options)")
    where = Path(cache_dir) if cache_dir else llmrec_home() / "knowledge" / data.name / "options"
    where.mkdir(parents=True, exist_ok=True)
    tag = encoder_slug(f"{llm.model_id}-{'-'.join(options)}")
    out = {}
    for kind in kinds:
        if kind not in OPTION_QUESTIONS:
            raise ValueError(f"knowledge.kinds: option scoring supports {sorted(OPTION_QUESTIONS)}, not {kind!r}")
        texts = knowledge_texts(data, train_rows, kind, history_items)
        path = where / f"{kind}.{tag}.npz"
        cached, hashes = ({}, {})
        if path.exists():
            cached, _, hashes = load_vectors_with_hashes(path)
        todo = [i for i in sorted(texts) if hashes.get(i) != text_hash(texts[i].strip() or "no information")]
        t = time.perf_counter()
        if todo:
            prompts = [OPTION_QUESTIONS[kind].format(domain=data.domain, options=", ".join(options), text=texts[i])
                       for i in todo]
            lp = llm.score_options(prompts, [f" {o}" for o in options], prefix="Answer:")
            p = np.exp(lp - lp.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            cached.update({i: row.astype(np.float32) for i, row in zip(todo, p)})
        seconds = time.perf_counter() - t
        vectors = {i: cached[i] for i in sorted(texts)}
        save_vectors(path, vectors, f"{llm.model_id}:options", texts)
        if report is not None:
            report[kind] = {"scored": len(todo), "cached": len(texts) - len(todo), "seconds": seconds,
                            "options_per_second": len(todo) * len(options) / seconds if todo and seconds else None}
        out[kind] = vectors
    return out
