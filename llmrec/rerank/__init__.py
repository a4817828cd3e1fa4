"""Rerankers behind one protocol (cross-encoder, bi-encoder, LoRA LLM; by name: ``make_reranker``) and RADIO
rationale-distilled training."""
from llmrec.rerank.base import BiEncoderReranker, Candidate, Reranker
from llmrec.rerank.cross_encoder import CrossEncoderConfig, CrossEncoderReranker
from llmrec.rerank.registry import RERANKERS, make_reranker
from llmrec.rerank.radio import RADIOConfig, build_groups, fuse, sample_group, train_reranker

__all__ = ["BiEncoderReranker", "Candidate", "CrossEncoderConfig", "CrossEncoderReranker", "RADIOConfig", "Reranker",
           "RERANKERS", "build_groups", "fuse", "make_reranker", "sample_group", "train_reranker"]
