import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from llmrec.store import IndexConfig, Store, StoreConfig, StoreError

# The store conformance suite: every test runs on the embedded store (SQLite + FAISS) and on the PostgreSQL
# store (a throwaway cluster, FAISS replicas per store object); the ``backend`` fixture is in conftest.py.


def unit(n, d=16, seed=0):
    v = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_round_trip_reopen_delete(backend):
    v = unit(50)
    with backend.open() as s:
        assert isinstance(s, Store)
        s.add("u1", [f"m{i}" for i in range(50)], [f"text {i}" for i in range(50)], v,
              [{"i": i, "even": i % 2 == 0} for i in range(50)])
        hits = s.search("u1", v[7], k=3)
        assert hits[0].id == "m7" and hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert hits[0].text == "text 7" and hits[0].metadata == {"i": 7, "even": False}
        assert s.delete("u1", ["m7", "m8"]) == 2
    s = backend.open()
    assert s.count("u1") == 48
    ids = [h.id for h in s.search("u1", v[7], k=50)]
    assert "m7" not in ids and "m8" not in ids and len(ids) == 48
    rec = s.get("u1", ["m3", "nope"])
    assert rec[1] is None and np.allclose(rec[0].vector, v[3])
    s.close()


def test_reopen_without_snapshot_rebuilds(backend):
    v = unit(20)
    s = backend.open()
    s.add("u", [str(i) for i in range(20)], ["t"] * 20, v)
    del s  # no close(): no snapshot was written
    s2 = backend.open()
    assert s2.search("u", v[4], 1)[0].id == "4"


def test_upsert_replaces_and_add_refuses_duplicates(backend):
    v = unit(3)
    s = backend.open()
    s.add("u", ["a"], ["old"], v[:1])
    with pytest.raises(StoreError, match="ids: 'a' already exists"):
        s.add("u", ["a"], ["again"], v[:1])
    s.upsert("u", ["a", "b"], ["new", "bee"], v[1:3])
    assert s.count("u") == 2
    assert s.get("u", ["a"])[0].text == "new"
    assert s.search("u", v[1], 1)[0].id == "a"
    assert s.search("u", v[0], 2)[0].score < 0.999


def test_metadata_filters(backend):
    v = unit(40)
    s = backend.open()
    s.add("u", [str(i) for i in range(40)], [f"t{i}" for i in range(40)], v,
          [{"session": i % 4, "kind": "turn" if i < 30 else "summary"} for i in range(40)])
    hits = s.search("u", v[5], k=40, where={"session": 1})
    assert {h.metadata["session"] for h in hits} == {1} and len(hits) == 10
    assert hits[0].id == "5"
    hits = s.search("u", v[5], k=5, where={"kind": "summary", "session": [2, 3]})
    assert all(h.metadata["kind"] == "summary" and h.metadata["session"] in (2, 3) for h in hits)
    # the ANN path (filter matches more rows than the exact limit) gives the same answer
    s.config = s.config.model_copy(update={"exact_filter_limit": 0})
    ann = s.search("u", v[5], k=40, where={"session": 1})
    assert [h.id for h in ann] == [h.id for h in s.search("u", v[5], k=40, where={"session": 1})]
    found = s.find("u", {"kind": "summary", "session": 2})
    assert sorted(int(r.id) for r in found) == [i for i in range(30, 40) if i % 4 == 2]
    assert np.allclose(found[0].vector, v[int(found[0].id)])
    with pytest.raises(StoreError, match="where.bad-key"):
        s.search("u", v[0], 3, where={"bad-key": 1})


def test_namespace_isolation(backend):
    v = unit(10)
    s = backend.open()
    s.add("alice", ["x"], ["alice secret"], v[:1])
    s.add("bob", ["x"], ["bob note"], v[1:2])
    hits = s.search("bob", v[0], k=10)
    assert [h.text for h in hits] == ["bob note"]
    assert all(h.namespace == "bob" for h in hits)
    assert s.search("carol", v[0], k=3) == []
    s.delete("alice", ["x"])
    assert s.count("bob") == 1 and s.count("alice") == 0


@pytest.mark.parametrize("bad,match", [
    (dict(texts=[""]), r"texts\[0\]: empty text"),
    (dict(vectors=np.ones((1, 8), np.float32)), "vectors: expected dimension 16, got 8"),
    (dict(vectors=np.full((1, 16), np.nan, np.float32)), r"vectors\[0\]: contains NaN"),
    (dict(ids=[""]), r"ids\[0\]"),
    (dict(metadatas=[{"x": object()}]), r"metadatas\[0\]"),
    (dict(namespace=""), "namespace"),
])
def test_bad_input_names_the_field(backend, bad, match):
    s = backend.open()
    s.add("u", ["seed"], ["t"], unit(1))
    args = dict(namespace="u", ids=["a"], texts=["t"], vectors=unit(1, seed=3), metadatas=None) | bad
    with pytest.raises(StoreError, match=match):
        s.add(args["namespace"], args["ids"], args["texts"], args["vectors"], args["metadatas"])
    assert s.count("u") == 1  # nothing half-written


def test_unknown_namespace_and_ids_on_delete(backend):
    s = backend.open()
    s.add("u", ["a"], ["t"], unit(1))
    with pytest.raises(KeyError, match="namespace: unknown namespace 'nobody'"):
        s.delete("nobody", ["a"])
    with pytest.raises(KeyError, match="ids: not found"):
        s.delete("u", ["zzz"])
    assert s.delete("u", ["zzz"], missing_ok=True) == 0
    with pytest.raises(StoreError, match="k: must be a positive"):
        s.search("u", unit(1)[0], k=0)
    with pytest.raises(StoreError, match="dim"):
        backend.open("s", StoreConfig(dim=8))


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_ann_kinds_recall_and_delete(backend, kind):
    d = 32
    cfg = StoreConfig(index=IndexConfig(kind=kind, ivf_nlist=16, pq_m=8, pq_bits=6, ivf_nprobe=16),
                      exact_filter_limit=10)
    n = 3000
    v = unit(n, d, seed=1)
    s = backend.open(kind, cfg)
    s.add("u", [str(i) for i in range(n)], ["t"] * n, v, [{"g": i % 3} for i in range(n)])
    found = sum(s.search("u", v[i], 1)[0].id == str(i) for i in range(0, n, 100))
    assert found >= 27  # >= 90% self-recall@1 for an approximate index
    # filtered search through the index (more matches than exact_filter_limit)
    hits = s.search("u", v[4], 10, where={"g": 1})
    assert len(hits) == 10 and all(h.metadata["g"] == 1 for h in hits) and hits[0].id == "4"
    s.delete("u", ["0", "100"])
    assert all(h.id not in ("0", "100") for h in s.search("u", v[0], 10))
    s.close()
    s2 = backend.open(kind, cfg)
    assert s2.count("u") == n - 2 and all(h.id != "0" for h in s2.search("u", v[0], 10))


def test_two_store_objects_see_each_others_writes(backend):
    v = unit(4)
    a = backend.open()
    b = backend.open()
    a.add("u", ["1"], ["one"], v[:1])
    assert b.search("u", v[0], 1)[0].id == "1"
    b.add("u", ["2"], ["two"], v[1:2])
    b.delete("u", ["1"])
    assert [h.id for h in a.search("u", v[0], 5)] == ["2"]


WRITER = r"""
import sys, numpy as np
from llmrec.store import open_store
s = open_store(sys.argv[1])
rng = np.random.default_rng(0)
i = 0
while True:
    n = 1 + i % 5
    v = rng.normal(size=(n, 16)).astype(np.float32)
    ids = [f"{i}-{j}" for j in range(n)]
    s.add("u", ids, ["text"] * n, v, [{"batch": i}] * n)
    if i % 7 == 3:
        s.delete("u", [ids[0]])
        print("del", ids[0], flush=True)
    if i % 11 == 5:
        s.flush()
    print("ack", " ".join(ids), flush=True)
    i += 1
"""


def test_sigkill_mid_write_loses_no_acknowledged_add(backend):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen([sys.executable, "-c", WRITER, backend.location()], stdout=subprocess.PIPE, text=True,
                            env=env)
    acked, deleted = set(), set()
    deadline = time.time() + 120
    while len(acked) < 300 and time.time() < deadline:
        line = proc.stdout.readline()
        kind, *ids = line.split()
        (acked if kind == "ack" else deleted).update(ids)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(acked) >= 300
    s = backend.open()
    assert all(v == {**v, "duplicates": 0, "missing": 0, "extra": 0} for v in s.verify().values())
    stored = set(s.ids("u"))
    assert (acked - deleted) <= stored, "an acknowledged add was lost"
    assert not (deleted & stored), "an acknowledged delete came back"
    # the index agrees with the table: every stored row is searchable
    for x in list(stored)[:20]:
        rec = s.get("u", [x])[0]
        assert s.search("u", rec.vector, 1)[0].id == x or s.search("u", rec.vector, 1)[0].score >= 0.999
    assert s.count("u") == len(stored)


def test_transactions_events_versions_and_ranges(backend):
    v = unit(6)
    s = backend.open()
    with s.transaction():
        s.add("u", ["a", "b"], ["one", "two"], v[:2], [{"t": 1.5}, {"t": 10}])
        s.log_event("u", ["a", "b"], "add", [{"text": "one"}, {"text": "two"}])
    assert s.version("u") > 0 and s.version("other") == 0 and s.version() >= s.version("u")
    before = s.version()
    with pytest.raises(RuntimeError, match="boom"):
        with s.transaction():
            s.add("u", ["c"], ["three"], v[2:3])
            s.log_event("u", ["c"], "add", [{"text": "three"}])
            assert s.get("u", ["c"])[0].text == "three"  # the transaction sees its own write
            raise RuntimeError("boom")
    assert s.get("u", ["c"]) == [None] and s.version() == before  # rolled back whole
    assert [h.id for h in s.search("u", v[2], 6)] != [] and "c" not in [h.id for h in s.search("u", v[2], 6)]
    assert [e["id"] for e in s.events("u")] == ["a", "b"] and s.events("u", "b")[0]["text"] == "two"
    assert [r.id for r in s.find("u", {"t": {"gte": 2}})] == ["b"]
    assert [h.id for h in s.search("u", v[0], 5, where={"t": {"lt": 2, "gt": 1}})] == ["a"]
    assert s.namespaces() == ["u"] and s.count("u") == 2 and s.ids("u") == ["a", "b"]
    with pytest.raises(StoreError, match=r"texts\[0\]: contains a NUL"):
        s.add("u", ["n"], ["nul\x00here"], v[3:4])
    assert s.verify() == {"u": {"rows": 2, "indexed": 2, "duplicates": 0, "missing": 0, "extra": 0}}


CONCURRENT = r"""
import sys, numpy as np
from llmrec.store import open_store
s = open_store(sys.argv[1])
me = sys.argv[2]
rng = np.random.default_rng(int(me))
for i in range(60):
    s.add(f"user{i % 3}", [f"{me}-{i}"], [f"text {me} {i}"], rng.normal(size=(1, 16)).astype(np.float32))
    if i % 10 == 9:
        s.delete(f"user{i % 3}", [f"{me}-{i - 3}"])
    hits = s.search(f"user{i % 3}", rng.normal(size=16).astype(np.float32), 3)
print("done", flush=True)
"""


def test_concurrent_writers_and_searchers_in_several_processes(backend):
    s = backend.open()
    s.add("user0", ["seed"], ["seed"], unit(1))
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, backend.location(), str(w)], stdout=subprocess.PIPE,
                              text=True, env=env) for w in range(3)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs) and all("done" in o for o in outs)
    assert sum(s.count(f"user{u}") for u in range(3)) == 1 + 3 * (60 - 6)
    report = s.verify()
    assert all(r["duplicates"] == r["missing"] == r["extra"] == 0 for r in report.values()), report
    fresh = backend.open()  # a new replica agrees
    assert {ns: r["rows"] for ns, r in fresh.verify().items()} == {ns: r["rows"] for ns, r in report.items()}


def test_filtered_search_follows_writes_and_the_match_all_shortcut_agrees(backend):
    v = unit(60)
    s = backend.open(config=StoreConfig(exact_filter_limit=5))  # force the index path for the filters
    s.add("u", [str(i) for i in range(40)], ["t"] * 40, v[:40], [{"kind": "turn"}] * 40)
    every = s.search("u", v[3], 5, where={"kind": "turn"})  # matches every row: searched without a selector
    assert [h.id for h in every] == [h.id for h in s.search("u", v[3], 5)]
    s.add("u", [str(i) for i in range(40, 60)], ["t"] * 20, v[40:], [{"kind": "pair"}] * 20)
    assert all(h.metadata["kind"] == "turn" for h in s.search("u", v[45], 10, where={"kind": "turn"}))
    s.upsert("u", ["3"], ["t"], v[3:4], [{"kind": "pair"}])  # the remembered filter must not outlive the write
    assert "3" not in [h.id for h in s.search("u", v[3], 10, where={"kind": "turn"})]
    other = backend.open()  # another replica's write, seen by this one's next filtered search
    other.upsert("u", ["50"], ["t"], v[50:51], [{"kind": "turn"}])
    assert s.search("u", v[50], 1, where={"kind": "turn"})[0].id == "50"
