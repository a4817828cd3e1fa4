"""Factories by name (LLM backends, embedders, rerankers, retrievers, tasks, models): every registry lists
its implementations, builds them from config, and names a bad name or option in its error."""
import pytest

from llmrec.embed import EMBEDDERS, EmbedderConfig, make_embedder
from llmrec.errors import ConfigError, LLMRecError, UnknownNameError
from llmrec.llm import LLMConfig, make_llm
from llmrec.llm.registry import LLMS
from llmrec.registry import Registry
from llmrec.rerank import RERANKERS, make_reranker
from llmrec.train import TASKS


def test_registry_basics():
    r = Registry("widget")
    r.add("a", 1)
    r.add_lazy("b", "llmrec.metrics:auc")
    assert r.names() == ["a", "b"] and "b" in r and r.get("b").__name__ == "auc"
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        r.add("a", 2)
    with pytest.raises(UnknownNameError, match=r"widget 'c' is not registered \(have \['a', 'b'\]\)"):
        r.get("c")
    assert isinstance(UnknownNameError("x"), KeyError) and isinstance(UnknownNameError("x"), LLMRecError)


def test_llm_backends_by_name_with_their_own_options():
    assert set(LLMS.names()) == {"transformers", "vllm", "openai", "llamacpp"}
    with pytest.raises(ValueError, match="unknown backend 'ollama'"):
        LLMConfig(backend="ollama")
    with pytest.raises(ConfigError, match=r"llm.options.num_thread: Extra inputs.*transformers backend"):
        make_llm(LLMConfig(options={"num_thread": 2}))
    with pytest.raises(ConfigError, match="llm.options.model: set it as llm.model"):
        make_llm(LLMConfig(options={"model": "x"}))
    with pytest.raises(ConfigError, match="llm.base_url and llm.model"):
        make_llm(LLMConfig(backend="openai"))
    # an option only the openai backend has reaches it (no network call is made at construction)
    llm = make_llm(LLMConfig(backend="openai", base_url="http://127.0.0.1:9/v1", model="m",
                             options={"concurrency": 3, "backoff_s": 0.01}))
    assert llm.config.concurrency == 3 and llm.config.backoff_s == 0.01


def test_embedders_and_rerankers_by_name(embedder):
    assert set(EMBEDDERS.names()) == {"sentence-transformers", "llm-hidden"}
    e = make_embedder(EmbedderConfig())
    assert e.model_id == embedder.model_id and e.encode(["a b"]).shape == (1, embedder.dim)
    with pytest.raises(UnknownNameError, match="embedder 'word2vec'"):
        make_embedder(EmbedderConfig(backend="word2vec"))
    assert set(RERANKERS.names()) == {"bi-encoder", "cross-encoder", "llm"}
    with pytest.raises(ConfigError, match="reranker.cross-encoder.max_lenght: Extra inputs"):
        make_reranker("cross-encoder", {"max_lenght": 3})
    bi = make_reranker("bi-encoder", embedder=embedder)
    s = bi.score("a dog", ["my dog Biscuit", "tax forms"])
    assert s[0] > s[1]


def test_tasks_by_name():
    assert TASKS.names() == ["bpr", "multilabel", "next_item", "pointwise"]
    assert TASKS.get("pointwise")().primary == "auc" and TASKS.get("bpr")().primary == "ndcg@10"
    assert TASKS.get("multilabel")().primary == "auc"
