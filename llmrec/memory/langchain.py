"""The memory as a LangChain ``BaseRetriever`` (one user per retriever), through the Retriever protocol:
any registered retriever (``method``: dense, bm25, hybrid, memgas, rfmem) can back it."""
from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from llmrec.memory import retrievers  # noqa: F401  (registers the memory retrievers)
from llmrec.retrieval import as_langchain, make_retriever


class MemoryRetriever(BaseRetriever):
    """A LangChain retriever over one user's ``Memory``."""
    model_config = ConfigDict(arbitrary_types_allowed=True)
    memory: Any
    user_id: str
    k: int = 5
    method: str = "hybrid"
    granularity: str | None = "turn"

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        config = {"granularity": self.granularity} if self.method in ("dense", "bm25", "hybrid") else {}
        inner = as_langchain(make_retriever(self.method, self.memory, config), self.user_id, self.k)
        return inner.invoke(query)
