"""LLM knowledge as features: extraction (local or Ray), encoding, and lookup tables for CTR models."""
from llmrec.embed import LLMHiddenEncoder
from llmrec.knowledge.encode import encode_kind, encode_knowledge, load_vectors, save_vectors
from llmrec.jobs import ExtractionReport, KnowledgeRequest, extract, load_knowledge
from llmrec.knowledge.job import KnowledgeJobConfig, knowledge_specs, knowledge_tables, run_extraction
from llmrec.knowledge.requests import PROMPTS, build_requests

__all__ = ["ExtractionReport", "KnowledgeJobConfig", "KnowledgeRequest", "LLMHiddenEncoder", "PROMPTS",
           "build_requests", "encode_kind", "encode_knowledge", "extract", "knowledge_specs", "knowledge_tables",
           "load_knowledge", "load_vectors", "run_extraction", "save_vectors"]
