"""Long-term, user-scoped memory: units, retrievers and a LangChain adapter."""
from llmrec.memory.api import Memory, MemoryConfig, MemoryHit
from llmrec.memory.bm25 import BM25Index, tokenize

__all__ = ["Memory", "MemoryConfig", "MemoryHit", "BM25Index", "tokenize"]
