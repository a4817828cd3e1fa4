"""Where the research agent looks: private sources (the user's memory, the user's own documents) and public
ones (an llmrec store namespace or any LangChain retriever). One protocol: ``retrieve(user_id, query, k)``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

from llmrec.embed import Embedder


@dataclass(frozen=True)
class Evidence:
    id: str  # unique across sources: "<source>:<id>"
    text: str
    source: str
    score: float
    private: bool


@runtime_checkable
class Source(Protocol):
    name: str
    private: bool

    def retrieve(self, user_id: str, query: str, k: int) -> list[Evidence]: ...


class MemorySource:
    """The user's long-term memory (``llmrec.memory.Memory``), hybrid search over turns."""

    private = True

    def __init__(self, memory: Any, name: str = "memory", method: str = "hybrid") -> None:
        self.memory, self.name, self.method = memory, name, method

    def has_user(self, user_id: str) -> bool:
        return bool(self.memory.list(user_id))

    def retrieve(self, user_id: str, query: str, k: int) -> list[Evidence]:
        return [Evidence(f"{self.name}:{h.id}", h.text, self.name, h.score, True)
                for h in self.memory.search(user_id, query, k=k, method=self.method)]


class StoreSource:
    """A namespace of an llmrec ``VectorStore``; ``per_user=True`` reads namespace ``<namespace>:<user_id>``
    (the user's private documents), otherwise one shared public corpus."""

    def __init__(self, store: Any, embedder: Embedder, namespace: str = "public", name: str | None = None,
                 per_user: bool = False) -> None:
        self.store, self.embedder, self.namespace, self.per_user = store, embedder, namespace, per_user
        self.name = name or namespace
        self.private = per_user

    def retrieve(self, user_id: str, query: str, k: int) -> list[Evidence]:
        ns = f"{self.namespace}:{user_id}" if self.per_user else self.namespace
        if self.store.count(ns) == 0:
            return []
        q = self.embedder.encode([query])[0]
        return [Evidence(f"{self.name}:{h.id}", h.text, self.name, h.score, self.private)
                for h in self.store.search(ns, q, k=k)]


class LangChainSource:
    """Any LangChain ``BaseRetriever`` as a public source (``k`` is the retriever's own setting)."""

    private = False

    def __init__(self, retriever: Any, name: str = "langchain") -> None:
        self.retriever, self.name = retriever, name

    def retrieve(self, user_id: str, query: str, k: int) -> list[Evidence]:
        docs = self.retriever.invoke(query)[:k]
        return [Evidence(f"{self.name}:{d.id or i}", d.page_content, self.name,
                         float(d.metadata.get("score", 0.0)), False) for i, d in enumerate(docs)]


def dedupe(evidence: Sequence[Evidence]) -> list[Evidence]:
    seen: dict[str, Evidence] = {}
    for e in evidence:
        if e.id not in seen or e.score > seen[e.id].score:
            seen[e.id] = e
    return list(seen.values())
