"""The Retriever protocol: every registered retriever returns ``Hit``s through ``retrieve(user, query, k)``,
is built by name from a config mapping (bad settings name the field), and plugs into LangChain both ways."""
import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from llmrec.errors import ConfigError, UnknownNameError
from llmrec.experiments.memory import load_memory_experiment, rank_sessions
from llmrec.memory import Memory
from llmrec.memory.langchain import MemoryRetriever
from llmrec.retrieval import RETRIEVERS, Hit, Retriever, as_langchain, make_retriever, sessions_in_order
from llmrec.store import VectorStore

SESSIONS = {
    "1": ["I adopted a beagle called Biscuit last spring.", "Biscuit loves long walks by the river."],
    "2": ["We are planning a trip to Lisbon in October.", "I booked a hotel near the old tram line."],
    "3": ["My sister started learning the cello.", "She practises every evening after work."],
}


@pytest.fixture(scope="module")
def memory(embedder, tmp_path_factory):
    mem = Memory(VectorStore(tmp_path_factory.mktemp("m") / "s"), embedder)
    for sid, turns in SESSIONS.items():
        mem.add("u", [{"role": "user", "content": t} for t in turns], session_id=sid)
    return mem


MEMORY_RETRIEVERS = {"dense": {}, "bm25": {}, "hybrid": {"granularity": "pair"}, "memgas": {"min_candidates": 2},
                     "rfmem": {}}


@pytest.mark.parametrize("name", sorted(MEMORY_RETRIEVERS))
def test_every_memory_retriever_returns_hits_that_find_the_right_session(memory, name):
    r = make_retriever(name, memory, MEMORY_RETRIEVERS[name])
    assert isinstance(r, Retriever)
    hits = r.retrieve("u", "What is the name of my dog Biscuit?", 3)
    assert hits and all(isinstance(h, Hit) for h in hits) and len(hits) <= 3
    assert sessions_in_order(hits)[0] == "1", [(h.session_id, h.text) for h in hits]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True) or name == "rfmem"
    if name == "memgas":
        assert hits[0].unit == "session" and "Biscuit" in hits[0].text


def test_registry_lists_retrievers_and_names_bad_settings(memory):
    assert {"dense", "bm25", "hybrid", "memgas", "rfmem", "store", "langchain"} <= set(RETRIEVERS.names())
    with pytest.raises(UnknownNameError, match="retriever 'bm52' is not registered"):
        make_retriever("bm52", memory)
    with pytest.raises(ConfigError, match="retriever.dense.granularity"):
        make_retriever("dense", memory, {"granularity": "paragraph"})
    with pytest.raises(ConfigError, match="retriever.memgas.views"):
        make_retriever("memgas", memory, {"views": "turn_mean"})
    with pytest.raises(ConfigError, match="k: must be a positive integer"):
        make_retriever("memgas", memory).retrieve("u", "dog", 0)


def test_a_new_retriever_is_one_class_and_one_registration(memory):
    class Newest:
        def retrieve(self, user_id, query, k):
            hits = memory.list(user_id)
            return sorted(hits, key=lambda h: -(h.timestamp or 0))[:k]

    RETRIEVERS.add("test_newest", lambda source, raw: Newest())
    try:
        lc = as_langchain(make_retriever("test_newest", memory), "u", k=2)
        assert isinstance(lc, BaseRetriever) and len(lc.invoke("anything")) == 2
    finally:
        RETRIEVERS._items.pop("test_newest")


def test_langchain_both_ways(memory):
    lc = MemoryRetriever(memory=memory, user_id="u", k=2, method="memgas")
    docs = lc.invoke("trip to Portugal")
    assert docs[0].metadata["session_id"] == "2" and docs[0].metadata["unit"] == "session"

    class Fixed(BaseRetriever):
        def _get_relevant_documents(self, query, *, run_manager):
            return [Document(page_content="a", id="x", metadata={"score": 0.9}), Document(page_content="b")]

    hits = make_retriever("langchain", Fixed()).retrieve("anyone", "q", 5)
    assert [(h.id, h.text, h.score) for h in hits] == [("x", "a", 0.9), ("1", "b", 0.0)]


def test_benchmark_methods_resolve_and_rank_every_session(memory):
    exp = load_memory_experiment("memory_locomo")
    assert exp.methods["rfmem"].backfill == "dense_turn"
    for label, m in exp.methods.items():
        make_retriever(m.retriever, memory, m.config)  # every benchmarked setting builds
    hits = make_retriever("dense", memory).retrieve("u", "cello practice", 2)
    ranked = rank_sessions(hits, ["1", "2", "3"], backfill=["2"])
    assert ranked[0] == "3" and sorted(ranked) == ["1", "2", "3"] and len(ranked) == 3
