"""The Retriever seam: ``retrieve(user_id, query, k) -> list[Hit]``, one ``Hit`` type, and a registry of
retrievers by name. Every consumer (the LoCoMo and latency benchmarks, the research agent, the LangChain
adapter) uses only this protocol.

Registered here: ``store`` (dense search over a ``VectorStore`` namespace, shared or per user) and
``langchain`` (any LangChain ``BaseRetriever``). ``llmrec.memory.retrievers`` registers the memory ones:
``dense``, ``bm25``, ``hybrid`` (any unit kind), ``memgas`` (sessions), ``rfmem``. Adding a retriever is one
class with a typed config and one ``RETRIEVERS.add(name, factory)``; ``make_retriever(name, source, config)``
builds any of them from a dict, so a YAML or CLI can name one."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from llmrec.config import StrictConfig, validate_config
from llmrec.embed import Embedder
from llmrec.errors import ConfigError
from llmrec.registry import Registry


@dataclass
class Hit:
    """One retrieved unit. ``unit`` says what it is (turn, pair, session, summary, keywords, document);
    ``session_id`` is set for memory units, so session-level consumers can group hits."""
    id: str
    text: str
    score: float
    unit: str = "document"
    session_id: str | None = None
    timestamp: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def granularity(self) -> str:  # the memory API's older name for ``unit``
        """The memory API's older name for ``unit``."""
        return self.unit


@runtime_checkable
class Retriever(Protocol):
    """The retrieval protocol: ``retrieve(user_id, query, k) -> [Hit]``, best first."""
    def retrieve(self, user_id: str, query: str, k: int) -> list[Hit]:
        """The ``k`` best hits for ``user_id``'s ``query``, best first."""


# name -> factory(source, config mapping) -> Retriever; the factory validates the mapping into its own config
RETRIEVERS: Registry[Callable[[Any, Mapping[str, Any]], Retriever]] = Registry("retriever")


def make_retriever(name: str, source: Any, config: Mapping[str, Any] | None = None) -> Retriever:
    """Build a registered retriever over ``source`` (a ``Memory``, a ``VectorStore`` + embedder pair, a
    LangChain retriever: whatever that retriever reads) from a config mapping."""
    return RETRIEVERS.get(name)(source, dict(config or {}))


def check_k(k: int) -> None:
    """``k`` must be a positive integer (a ``ConfigError`` otherwise)."""
    if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
        raise ConfigError("k: must be a positive integer")


def sessions_in_order(hits: list[Hit]) -> list[str]:
    """Session ids by first appearance (hits are best-first, so this ranks sessions by their best unit)."""
    seen: dict[str, None] = {}
    for h in hits:
        if h.session_id is not None and h.session_id not in seen:
            seen[h.session_id] = None
    return list(seen)


class StoreRetrieverConfig(StrictConfig):
    """A store retriever's namespace, and whether it reads ``<namespace>:<user_id>`` per user."""
    namespace: str = "public"
    per_user: bool = False  # True: search namespace "<namespace>:<user_id>" (the user's own documents)


class StoreRetriever:
    """Dense search over one namespace of an llmrec ``VectorStore``."""

    def __init__(self, store: Any, embedder: Embedder, config: StoreRetrieverConfig | None = None) -> None:
        self.store, self.embedder, self.config = store, embedder, config or StoreRetrieverConfig()

    def retrieve(self, user_id: str, query: str, k: int) -> list[Hit]:
        check_k(k)
        c = self.config
        ns = f"{c.namespace}:{user_id}" if c.per_user else c.namespace
        if self.store.count(ns) == 0:
            return []
        q = self.embedder.encode([query])[0]
        return [Hit(h.id, h.text, float(h.score), "document", metadata=dict(h.metadata or {}))
                for h in self.store.search(ns, q, k=k)]


class LangChainRetriever:
    """Any LangChain ``BaseRetriever`` behind the protocol (``k`` truncates what it returns; its own
    setting decides how many it fetches)."""

    def __init__(self, retriever: Any) -> None:
        self.retriever = retriever

    def retrieve(self, user_id: str, query: str, k: int) -> list[Hit]:
        check_k(k)
        docs = self.retriever.invoke(query)[:k]
        return [Hit(str(d.id or i), d.page_content, float(d.metadata.get("score", 0.0)),
                    str(d.metadata.get("unit", "document")), d.metadata.get("session_id"),
                    metadata={k_: v for k_, v in d.metadata.items() if k_ not in ("score", "unit", "session_id")})
                for i, d in enumerate(docs)]


class ProtocolRetriever(BaseRetriever):
    """Any llmrec ``Retriever`` as a LangChain ``BaseRetriever`` for one user."""
    model_config = ConfigDict(arbitrary_types_allowed=True)
    retriever: Any
    user_id: str
    k: int = 5

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [Document(page_content=h.text, id=h.id,
                         metadata={"score": h.score, "unit": h.unit, "granularity": h.unit, "session_id": h.session_id,
                                   "timestamp": h.timestamp, **h.metadata})
                for h in self.retriever.retrieve(self.user_id, query, self.k)]


def as_langchain(retriever: Retriever, user_id: str, k: int = 5) -> BaseRetriever:
    """A LangChain retriever over any llmrec ``Retriever`` for one user."""
    return ProtocolRetriever(retriever=retriever, user_id=user_id, k=k)


def _store_factory(source: Any, raw: Mapping[str, Any]) -> StoreRetriever:
    store, embedder = source
    return StoreRetriever(store, embedder, validate_config(StoreRetrieverConfig, raw, "retriever.store"))


def _langchain_factory(source: Any, raw: Mapping[str, Any]) -> LangChainRetriever:
    if raw:
        raise ConfigError(f"retriever.langchain: takes no settings (got {sorted(raw)})")
    return LangChainRetriever(source)


RETRIEVERS.add("store", _store_factory)
RETRIEVERS.add("langchain", _langchain_factory)
