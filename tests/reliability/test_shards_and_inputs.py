"""Reliability (issue 13): torn shard tails, unreadable shard lines, and Memory.add as one transaction."""
import json

import numpy as np
import pytest

from llmrec.errors import DataError
from llmrec.jobs import KnowledgeRequest, extract, read_shard, repair_tail
from llmrec.llm import GenerationParams
from llmrec.llm.base import Generation


class Echo:
    """A deterministic stand-in LLM: the shard writer's behaviour does not depend on what the model says."""
    model_id = "echo"

    def generate(self, prompts, params):
        return [Generation(text=f"a short answer about {p[-1]['content'][-30:]}", prompt_tokens=5,
                           completion_tokens=6, finish_reason="stop") for p in prompts]


REQS = [KnowledgeRequest(str(i), {"title": f"Thing {i}", "category": "misc", "description": f"Number {i}."})
        for i in range(140)]
P = GenerationParams(max_new_tokens=8)


def test_torn_shard_tail_is_cut_before_resuming(tmp_path):
    extract(Echo(), "item", "item_knowledge", REQS, tmp_path, P, chunk_size=16, progress=False)
    shard = tmp_path / "item.jsonl"
    raw = shard.read_bytes()
    shard.write_bytes(raw[:-25])  # a kill mid-write of the last row
    assert len(read_shard(shard)) == 139
    rep = extract(Echo(), "item", "item_knowledge", REQS, tmp_path, P, chunk_size=16, progress=False)
    assert (rep.cached, rep.generated) == (139, 1)
    rows = read_shard(shard)
    assert len(rows) == 140 and all(r["status"] == "ok" for r in rows.values())  # was 139: a glued line
    assert all(json.loads(line) for line in shard.read_text().splitlines())


def test_repair_tail_and_unreadable_lines(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_bytes(b'{"id": "a"}\n{"id": "b"}\n{"id": "c", "te')
    assert repair_tail(p) == len(b'{"id": "c", "te') and p.read_bytes().endswith(b'{"id": "b"}\n')
    assert repair_tail(p) == 0
    p.write_bytes(b'{"id"')  # a torn first line: nothing to keep
    assert repair_tail(p) == 5 and p.read_bytes() == b""
    p.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(DataError, match="s.jsonl:2: unreadable shard row"):
        read_shard(p)


def test_memory_add_is_one_transaction(tmp_path, embedder, monkeypatch):
    from llmrec.memory import Memory
    from llmrec.memory.api import namespace
    from llmrec.store import VectorStore

    mem = Memory(VectorStore(tmp_path / "s"), embedder)
    mem.add("u", [{"role": "user", "content": "I love hiking in the Alps."}], session_id="s1")
    before = sorted(mem.store.ids(namespace("u")))

    def crash(*a, **k):  # dies after the turn and its pair were written, before the session unit
        raise RuntimeError("killed mid-add")

    monkeypatch.setattr(mem, "_refresh_session", crash)
    with pytest.raises(RuntimeError, match="killed mid-add"):
        mem.add("u", [{"role": "assistant", "content": "The Eiger trail is lovely."}], session_id="s1")
    assert sorted(mem.store.ids(namespace("u"))) == before  # no orphan turn, no pair without its session unit
    assert all(h.text != "assistant: The Eiger trail is lovely." for h in mem.search("u", "Eiger trail", k=10))
    monkeypatch.undo()
    mem.add("u", [{"role": "assistant", "content": "The Eiger trail is lovely."}], session_id="s1")
    units = {r.metadata["granularity"] for r in mem.store.get(namespace("u"), mem.store.ids(namespace("u")))}
    assert units == {"turn", "pair", "session"}
    assert np.isfinite([h.score for h in mem.search("u", "Eiger", k=3)]).all()


def test_silent_data_errors_are_named(tmp_path):
    from llmrec.data.movielens import load_movielens100k
    from llmrec.data.schema import RecData
    from llmrec.errors import StoreError
    from llmrec.store import VectorStore
    from llmrec.train import TrainerConfig

    (tmp_path / "ml-100k.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                            "1\t10\t4\t100\n2\t11\tnan\t101\n")
    with pytest.raises(DataError, match="ml-100k.inter:3 field .rating.: not a finite"):
        load_movielens100k(tmp_path)
    with pytest.raises(ValueError, match=r"label\[1\]: labels must be finite and in \[0, 1\]"):
        RecData("x", {"label": np.array([1.0, np.nan]), "timestamp": np.array([1.0, 2.0])}, {})
    for field, value in (("batch_size", 0), ("epochs", -1), ("learning_rate", float("nan")), ("grad_clip", 0)):
        with pytest.raises(ValueError, match=field):
            TrainerConfig(**{field: value})
    s = VectorStore(tmp_path / "s")
    with pytest.raises(StoreError, match=r"texts\[0\]: not encodable as UTF-8"):
        s.add("u", ["a"], ["bad \ud800 text"], np.ones((1, 4)))
    with pytest.raises(StoreError, match=r"namespace: not encodable"):
        s.add("\udfff", ["a"], ["ok"], np.ones((1, 4)))
    assert s.namespaces() == []
