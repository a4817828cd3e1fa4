"""The memory's retrievers behind the ``Retriever`` protocol (``llmrec.retrieval``), registered by name:

| name     | what it returns                                  | config                         |
|----------|--------------------------------------------------|--------------------------------|
| dense    | units by embedding similarity                    | ``granularity``                |
| bm25     | units by BM25 over the user's memories           | ``granularity``                |
| hybrid   | min-max fusion of the two                        | ``granularity`` (alpha: memory)|
| memgas   | sessions (unit ``session``) by MemGAS            | ``MemGASConfig`` + ``with_text``|
| rfmem    | units in RF-Mem's discovery order                | ``RFMemConfig``                |

    from llmrec.retrieval import make_retriever
    r = make_retriever("hybrid", memory, {"granularity": "pair"})
    hits = r.retrieve("alice", "Where does she live?", k=5)"""
from __future__ import annotations

from typing import Any, Literal, Mapping

from llmrec.config import StrictConfig, validate_config
from llmrec.memory.api import Memory, memory_hit
from llmrec.memory.memgas import MemGAS, MemGASConfig, session_memories
from llmrec.memory.rfmem import RFMem, RFMemConfig
from llmrec.retrieval import RETRIEVERS, Hit, check_k

Granularity = Literal["turn", "pair", "session", "summary", "keywords"]


class SearchConfig(StrictConfig):
    """Settings of the plain memory retrievers (dense, BM25, hybrid): granularity."""
    granularity: Granularity | None = "turn"  # None: every unit kind together


class SearchRetriever:
    """``Memory.search`` with one method (dense, bm25 or hybrid) at one granularity."""

    def __init__(self, memory: Memory, method: Literal["dense", "bm25", "hybrid"],
                 config: SearchConfig | None = None) -> None:
        self.memory, self.method, self.config = memory, method, config or SearchConfig()

    def retrieve(self, user_id: str, query: str, k: int) -> list[Hit]:
        return self.memory.search(user_id, query, k=k, method=self.method, granularity=self.config.granularity)


class MemGASRetrieverConfig(MemGASConfig):
    """Settings of the MemGAS retriever (``MemGASConfig`` plus what it returns)."""
    with_text: bool = True  # False: session hits without their memories' text (ranking only; faster)
    max_session_chars: int = 2000


class MemGASRetriever:
    """MemGAS's session ranking as hits of unit ``session`` (text: the session's summary, keywords and turns)."""

    def __init__(self, memory: Memory, config: MemGASRetrieverConfig | None = None) -> None:
        self.config = config or MemGASRetrieverConfig()
        self.memgas = MemGAS(memory, MemGASConfig.model_validate(self.config.model_dump(
            include=set(MemGASConfig.model_fields))))

    def retrieve(self, user_id: str, query: str, k: int) -> list[Hit]:
        check_k(k)
        top = self.memgas.rank_sessions(user_id, query)[:k]
        texts = {}
        if self.config.with_text and top:
            texts = session_memories(self.memgas.memory, user_id, [s for s, _ in top], self.config.max_session_chars)
        return [Hit(f"session:{s}", texts.get(s, ""), float(score), "session", s) for s, score in top]


class RFMemRetriever:
    """RF-Mem as a registered retriever (familiarity probe, then recollection when needed)."""
    def __init__(self, memory: Memory, config: RFMemConfig | None = None) -> None:
        self.rfmem = RFMem(memory, config)

    def retrieve(self, user_id: str, query: str, k: int) -> list[Hit]:
        check_k(k)
        res = self.rfmem.retrieve(user_id, query, k)
        hits = [memory_hit(h, h.score) for h in res.hits]
        for h in hits:  # which of its two paths answered (familiarity: plain top-k; recollection: beam search)
            h.metadata["rfmem_path"] = res.path
        return hits


def _search(method: Literal["dense", "bm25", "hybrid"]):
    def factory(memory: Any, raw: Mapping[str, Any]) -> SearchRetriever:
        return SearchRetriever(memory, method, validate_config(SearchConfig, raw, f"retriever.{method}"))

    return factory


for _m in ("dense", "bm25", "hybrid"):
    RETRIEVERS.add(_m, _search(_m))
RETRIEVERS.add("memgas", lambda memory, raw: MemGASRetriever(memory, validate_config(MemGASRetrieverConfig, raw, "retriever.memgas")))
RETRIEVERS.add("rfmem", lambda memory, raw: RFMemRetriever(memory, validate_config(RFMemConfig, raw, "retriever.rfmem")))
