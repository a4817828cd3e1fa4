"""Where the research agent looks: private sources (the user's memory, the user's own documents) and public
ones (an llmrec store namespace or any LangChain retriever). Every source is a named ``Retriever``
(``llmrec.retrieval``): the agent only calls ``retrieve(user_id, query, k)`` and turns hits into evidence."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from llmrec.embed import Embedder
from llmrec.memory import retrievers  # noqa: F401  (registers the memory retrievers)
from llmrec.retrieval import LangChainRetriever, Retriever, StoreRetriever, StoreRetrieverConfig, make_retriever


@dataclass(frozen=True)
class Evidence:
    """A retrieved chunk as the agent uses it: unique id, text, source, score and privacy."""
    id: str  # unique across sources: "<source>:<id>"
    text: str
    source: str
    score: float
    private: bool


class Source:
    """A retriever with a name and a privacy flag; ``knows_user`` (optional) tells whether a user exists in it."""

    def __init__(self, retriever: Retriever, name: str, private: bool,
                 knows_user: Callable[[str], bool] | None = None) -> None:
        self.retriever, self.name, self.private, self.knows_user = retriever, name, private, knows_user

    def retrieve(self, user_id: str, query: str, k: int) -> list[Evidence]:
        return [Evidence(f"{self.name}:{h.id}", h.text, self.name, h.score, self.private)
                for h in self.retriever.retrieve(user_id, query, k)]


def MemorySource(memory: Any, name: str = "memory", method: str = "hybrid") -> Source:
    """The user's long-term memory (``llmrec.memory.Memory``) through any registered memory retriever."""
    return Source(make_retriever(method, memory), name, True, knows_user=lambda u: bool(memory.list(u)))


def StoreSource(store: Any, embedder: Embedder, namespace: str = "public", name: str | None = None,
                per_user: bool = False) -> Source:
    """A namespace of an llmrec ``VectorStore``; ``per_user=True`` reads namespace ``<namespace>:<user_id>``
    (the user's private documents), otherwise one shared public corpus."""
    retriever = StoreRetriever(store, embedder, StoreRetrieverConfig(namespace=namespace, per_user=per_user))
    return Source(retriever, name or namespace, per_user)


def LangChainSource(retriever: Any, name: str = "langchain") -> Source:
    """Any LangChain ``BaseRetriever`` as a public source (``k`` truncates what it returns)."""
    return Source(LangChainRetriever(retriever), name, False)


def GraphSource(graph_rag: Retriever, name: str = "graph") -> Source:
    """A textual knowledge graph as a public source: a fitted ``graph_rag`` or ``align_grag`` model
    (``llmrec.models.graphrag``), whose subgraph's facts are the evidence."""
    if not isinstance(graph_rag, Retriever):
        raise TypeError(f"graph_rag: {type(graph_rag).__name__} has no retrieve(user_id, query, k)")
    return Source(graph_rag, name, False)


def dedupe(evidence: Sequence[Evidence]) -> list[Evidence]:
    """Evidence with duplicate ids removed, keeping the best-scored copy."""
    seen: dict[str, Evidence] = {}
    for e in evidence:
        if e.id not in seen or e.score > seen[e.id].score:
            seen[e.id] = e
    return list(seen.values())
