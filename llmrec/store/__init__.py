"""Vector store: FAISS (flat, HNSW, IVF-PQ) + SQLite, namespaced, persistent, atomic."""
from llmrec.store.index import AnnIndex, IndexConfig
from llmrec.store.vector_store import Hit, Record, StoreConfig, StoreError, VectorStore

__all__ = ["AnnIndex", "IndexConfig", "Hit", "Record", "StoreConfig", "StoreError", "VectorStore"]
