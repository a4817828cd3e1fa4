"""User-scoped long-term memory over the FAISS + SQLite store, and its retrievers (registered by name in
``llmrec.retrieval.RETRIEVERS``: dense, bm25, hybrid, memgas, rfmem)."""
from llmrec.memory.api import Memory, MemoryConfig, MemoryHit
from llmrec.memory.bm25 import BM25Index, tokenize
from llmrec.memory.retrievers import MemGASRetriever, RFMemRetriever, SearchRetriever

__all__ = ["Memory", "MemoryConfig", "MemoryHit", "BM25Index", "tokenize", "MemGASRetriever", "RFMemRetriever",
           "SearchRetriever"]
