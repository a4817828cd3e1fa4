"""Rerankers behind one protocol (cross-encoder, bi-encoder) and RADIO rationale-distilled training."""
from llmrec.rerank.base import BiEncoderReranker, Candidate, Reranker
from llmrec.rerank.cross_encoder import CrossEncoderConfig, CrossEncoderReranker
from llmrec.rerank.radio import RADIOConfig, build_groups, fuse, sample_group, train_reranker

__all__ = ["BiEncoderReranker", "Candidate", "CrossEncoderConfig", "CrossEncoderReranker", "RADIOConfig", "Reranker",
           "build_groups", "fuse", "sample_group", "train_reranker"]
