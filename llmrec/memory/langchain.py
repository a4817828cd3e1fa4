"""The memory as a LangChain ``BaseRetriever`` (one user per retriever)."""
from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict


class MemoryRetriever(BaseRetriever):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    memory: Any
    user_id: str
    k: int = 5
    method: str = "hybrid"
    granularity: str | None = "turn"

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        hits = self.memory.search(self.user_id, query, k=self.k, method=self.method, granularity=self.granularity)
        return [Document(page_content=h.text, id=h.id,
                         metadata={"score": h.score, "granularity": h.granularity, "session_id": h.session_id,
                                   "timestamp": h.timestamp, **h.metadata}) for h in hits]
