"""Rerankers by name: ``make_reranker(name, config, embedder)`` builds any of them from a config mapping
(validated by the reranker's own typed config; unknown keys are errors naming the field).

| name          | what                                                    | config               |
|---------------|---------------------------------------------------------|----------------------|
| cross-encoder | sentence-transformers cross-encoder (bundled MiniLM)    | ``CrossEncoderConfig``|
| bi-encoder    | cosine under an ``Embedder``                            | none                 |
| llm           | causal LM yes/no logit with LoRA (peft)                 | ``LLMRerankerConfig`` |"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from llmrec.config import validate_config
from llmrec.embed import Embedder, default_embedder
from llmrec.errors import ConfigError
from llmrec.registry import Registry
from llmrec.rerank.base import BiEncoderReranker, Reranker
from llmrec.rerank.cross_encoder import CrossEncoderConfig, CrossEncoderReranker
from llmrec.rerank.llm_reranker import LLMRerankerConfig, LLMReranker

RERANKERS: Registry[Callable[[Mapping[str, Any], Embedder | None], Reranker]] = Registry("reranker")


def _bi_encoder(raw: Mapping[str, Any], embedder: Embedder | None) -> BiEncoderReranker:
    if raw:
        raise ConfigError(f"reranker.bi-encoder: takes no settings (got {sorted(raw)}); pass the embedder")
    return BiEncoderReranker(embedder or default_embedder())


RERANKERS.add("cross-encoder", lambda raw, emb: CrossEncoderReranker(validate_config(CrossEncoderConfig, raw, "reranker.cross-encoder")))
RERANKERS.add("bi-encoder", _bi_encoder)
RERANKERS.add("llm", lambda raw, emb: LLMReranker(validate_config(LLMRerankerConfig, raw, "reranker.llm")))


def make_reranker(name: str, config: Mapping[str, Any] | None = None, embedder: Embedder | None = None) -> Reranker:
    """A reranker by registered name with its config."""
    return RERANKERS.get(name)(dict(config or {}), embedder)
