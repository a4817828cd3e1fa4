"""mem0-parity of the memory API: get / get_all / delete (one id) vs delete_all / history, and search
filtered by metadata and by time; history is written in the same transaction as the change it records."""
import pytest

from llmrec.memory import Memory
from llmrec.store import VectorStore


@pytest.fixture
def mem(tmp_path, embedder):
    return Memory(VectorStore(tmp_path / "store"), embedder)


def test_get_delete_and_delete_all_are_separate(mem):
    a = mem.add("ann", "I adopted a greyhound called Pixel.")[0]
    b = mem.add("ann", "My sister lives in Porto.")[0]
    assert mem.get("ann", a).text == "I adopted a greyhound called Pixel."
    with pytest.raises(KeyError, match="not found"):
        mem.get("ann", "t-nope")
    with pytest.raises(TypeError):
        mem.delete("ann")  # no id: never "delete everything"
    with pytest.raises(ValueError, match="delete_all"):
        mem.delete("ann", None)
    assert mem.delete("ann", a) == 1 and [h.id for h in mem.get_all("ann")] == [b]
    assert mem.delete_all("ann") == 1 and mem.get_all("ann") == []


def test_history_records_add_update_delete(mem):
    tid = mem.add("ben", "I work as a nurse.")[0]
    mem.update("ben", tid, "I work as a paramedic.")
    mem.delete("ben", tid)
    h = mem.history("ben", tid)
    assert [(e["event"], e["old"], e["new"]) for e in h] == [
        ("add", None, "I work as a nurse."), ("update", "I work as a nurse.", "I work as a paramedic."),
        ("delete", "I work as a paramedic.", None)]
    assert h[0]["at"] <= h[1]["at"] <= h[2]["at"]
    other = mem.add("ben", "I like chess.")[0]
    mem.delete_all("ben")
    assert [e["event"] for e in mem.history("ben") if e["id"] == other] == ["add", "delete"]


def test_failed_write_leaves_no_history(mem, monkeypatch):
    tid = mem.add("cat", "I drink green tea.")[0]

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(mem.store, "upsert", boom)
    with pytest.raises(RuntimeError):
        mem.update("cat", tid, "I drink black coffee.")
    assert [e["event"] for e in mem.history("cat", tid)] == ["add"]


def test_search_and_get_all_filter_by_metadata_and_time(mem):
    mem.add("dee", "Booked a flight to Tokyo for the conference.", timestamp=100.0, metadata={"topic": "travel"})
    mem.add("dee", "Booked a table at a sushi bar in Tokyo.", timestamp=200.0, metadata={"topic": "food"})
    mem.add("dee", "Booked a hotel near Tokyo station.", timestamp=300.0, metadata={"topic": "travel"})
    for method in ("dense", "bm25", "hybrid"):
        hits = mem.search("dee", "Tokyo booking", k=5, method=method, filters={"topic": "travel"})
        assert {h.metadata["topic"] for h in hits} == {"travel"} and len(hits) == 2, method
        hits = mem.search("dee", "Tokyo booking", k=5, method=method, since=150.0)
        assert sorted(h.timestamp for h in hits) == [200.0, 300.0], method
        hits = mem.search("dee", "Tokyo booking", k=5, method=method, filters={"topic": "travel"}, until=150.0)
        assert [h.timestamp for h in hits] == [100.0], method
    assert len(mem.get_all("dee", filters={"topic": ["travel", "food"]})) == 3
    assert [h.timestamp for h in mem.get_all("dee", since=150, until=250)] == [200.0]
    with pytest.raises(ValueError, match="filters.timestamp: reserved"):
        mem.get_all("dee", filters={"timestamp": 1})
    with pytest.raises(ValueError, match="since"):
        mem.search("dee", "x", since=5, until=1)
