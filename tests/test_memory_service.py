"""``llmrec memory serve``: the Memory API over HTTP, per tenant and user, on the embedded and the PostgreSQL
store: auth, isolation under crafted ids and filters, validation before work, size and rate limits,
pagination, every search method, and the Python client against a real uvicorn server."""
import os
import subprocess
import sys

import pytest

KEY_A, KEY_B = "a" * 24, "b" * 24


@pytest.fixture
def service(backend, embedder):
    from fastapi.testclient import TestClient

    from llmrec.memory import Memory
    from llmrec.memory.service import ServiceConfig, create_app

    cfg = ServiceConfig(store=backend.location(), keys={KEY_A: "acme", KEY_B: "globex"}, burst=1000,
                        max_body_bytes=20_000)
    app = create_app(cfg, Memory(backend.open(), embedder))
    return TestClient(app)


def auth(key=KEY_A):
    return {"Authorization": f"Bearer {key}"}


def test_add_search_update_history_delete_through_the_service(service):
    msgs = [{"role": "user", "content": "I moved to Lisbon last spring."},
            {"role": "assistant", "content": "Lisbon is lovely."},
            {"role": "user", "content": "My sister Ana lives in Porto."}]
    r = service.post("/memories", json={"user_id": "alice", "messages": msgs, "session_id": "s1",
                                        "metadata": {"source": "chat"}}, headers=auth())
    assert r.status_code == 200, r.text
    ids = [x["id"] for x in r.json()["results"]]
    assert len(ids) == 3 and r.json()["results"][0]["memory"] == "user: I moved to Lisbon last spring."
    for method in ("dense", "bm25", "hybrid", "rfmem"):
        hits = service.post("/search", json={"user_id": "alice", "query": "which city did I move to last spring", "k": 2,
                                             "method": method}, headers=auth()).json()["results"]
        assert hits and hits[0]["id"] == ids[0] and hits[0]["user_id"] == "alice", (method, hits)
    sessions = service.post("/search", json={"user_id": "alice", "query": "sister", "method": "memgas"},
                            headers=auth()).json()["results"]
    assert sessions[0]["unit"] == "session" and sessions[0]["session_id"] == "s1"
    pairs = service.post("/search", json={"user_id": "alice", "query": "sister in Porto", "granularity": "pair",
                                          "limit": 1}, headers=auth()).json()["results"]
    assert pairs[0]["unit"] == "pair" and "Porto" in pairs[0]["memory"]
    filtered = service.post("/search", json={"user_id": "alice", "query": "Lisbon", "filters": {"source": "email"}},
                            headers=auth()).json()["results"]
    assert filtered == []
    u = service.put(f"/memories/{ids[0]}", json={"user_id": "alice", "text": "user: I moved to Madrid."},
                    headers=auth())
    assert u.status_code == 200 and u.json()["memory"] == "user: I moved to Madrid."
    hist = service.get(f"/memories/{ids[0]}/history", params={"user_id": "alice"}, headers=auth()).json()
    assert [e["event"] for e in hist] == ["add", "update"] and hist[1]["new"] == "user: I moved to Madrid."
    page = service.get("/memories", params={"user_id": "alice", "limit": 2}, headers=auth()).json()
    assert len(page["results"]) == 2 and page["next_offset"] == 2 and page["total"] >= 3
    rest = service.get("/memories", params={"user_id": "alice", "limit": 2, "offset": 2}, headers=auth()).json()
    assert not {x["id"] for x in rest["results"]} & {x["id"] for x in page["results"]}
    assert service.delete(f"/memories/{ids[2]}", params={"user_id": "alice"}, headers=auth()).json()["deleted"] >= 1
    gone = service.get(f"/memories/{ids[2]}", params={"user_id": "alice"}, headers=auth())
    assert gone.status_code == 404 and gone.json()["error"]["type"] == "not_found"
    assert service.delete("/memories", params={"user_id": "alice"}, headers=auth()).json()["deleted"] >= 2
    assert service.get("/memories", params={"user_id": "alice"}, headers=auth()).json()["total"] == 0


def test_keys_tenants_and_crafted_ids_never_cross(service):
    assert service.post("/search", json={"user_id": "bob", "query": "x"}).status_code == 401
    bad = service.post("/search", json={"user_id": "bob", "query": "x"}, headers=auth("c" * 24))
    assert bad.status_code == 401 and bad.json()["error"]["field"] == "authorization"
    assert service.get("/health").json() == {"status": "ok"}
    r = service.post("/memories", json={"user_id": "bob", "text": "acme secret: the launch code is 1234"},
                     headers=auth(KEY_A))
    secret = r.json()["results"][0]["id"]
    # the other tenant, the same user id, ids that look like a namespace, the secret's own id
    for user in ("bob", "acme:bob", "user:acme:bob", "../acme/bob", "bob\u0000"):
        res = service.post("/search", json={"user_id": user, "query": "launch code", "method": "dense"},
                           headers=auth(KEY_B))
        assert res.status_code in (200, 400, 422) and all("1234" not in h["memory"] for h in res.json().get("results", []))
        got = service.get(f"/memories/{secret}", params={"user_id": user}, headers=auth(KEY_B))
        assert got.status_code in (400, 404, 422)
        assert service.delete(f"/memories/{secret}", params={"user_id": user}, headers=auth(KEY_B)).status_code != 200
    injected = service.post("/search", json={"user_id": "bob", "query": "launch", "method": "dense",
                                             "filters": {"source": "x' OR '1'='1"}}, headers=auth(KEY_A))
    assert injected.status_code == 200 and injected.json()["results"] == []
    assert service.get(f"/memories/{secret}", params={"user_id": "bob"}, headers=auth(KEY_A)).status_code == 200


def test_bad_requests_name_the_field_before_any_work(service):
    cases = [({"user_id": "u", "query": "q", "k": 0}, "k"),
             ({"user_id": "u", "query": "q", "method": "magic"}, "method"),
             ({"query": "q"}, "user_id"),
             ({"user_id": "u", "query": "q", "extra": 1}, "extra"),
             ({"user_id": "u", "query": ""}, "query")]
    for body, field in cases:
        r = service.post("/search", json=body, headers=auth())
        assert r.status_code == 422 and r.json()["error"]["field"] == field, (body, r.json())
    r = service.post("/memories", json={"user_id": "u", "text": "x", "messages": [{"content": "y"}]}, headers=auth())
    assert r.status_code == 422 and "exactly one of messages and text" in r.json()["error"]["message"]
    big = service.post("/memories", json={"user_id": "u", "text": "x" * 30_000}, headers=auth())
    assert big.status_code == 413 and big.json()["error"]["field"] == "body"
    r = service.post("/search", json={"user_id": "u", "query": "q", "k": 500}, headers=auth())
    assert r.status_code == 400 and r.json()["error"]["field"] == "k"
    r = service.post("/memories", json={"user_id": "u", "text": "t", "metadata": {"granularity": "x"}}, headers=auth())
    assert r.status_code == 400 and r.json()["error"]["field"] == "metadata.granularity"
    assert service.get("/memories", params={"user_id": "nobody"}, headers=auth()).json()["total"] == 0


def test_a_key_over_its_rate_is_told_when_to_retry(backend, embedder):
    from fastapi.testclient import TestClient

    from llmrec.memory import Memory
    from llmrec.memory.service import ServiceConfig, create_app

    cfg = ServiceConfig(store=backend.location(), keys={KEY_A: "acme", KEY_B: "globex"}, burst=3, rate_per_second=0.5)
    c = TestClient(create_app(cfg, Memory(backend.open(), embedder)))
    codes = [c.get("/memories", params={"user_id": "u"}, headers=auth()).status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    r = c.get("/memories", params={"user_id": "u"}, headers=auth())
    assert int(r.headers["Retry-After"]) >= 1 and r.json()["error"]["type"] == "rate_limited"
    assert c.get("/memories", params={"user_id": "u"}, headers=auth(KEY_B)).status_code == 200  # per key


@pytest.mark.slow
def test_the_python_client_against_two_uvicorn_nodes_on_one_postgres(pg_url, tmp_path):
    """Two real ``llmrec memory serve`` processes on one PostgreSQL store: a memory added through one node is
    found through the other at once (read-after-write across nodes), through ``MemoryClient``."""
    from llmrec.memory.client import MemoryClient, MemoryServiceError, launch_service

    url = f"{pg_url}&schema=svc{os.getpid()}"
    env = {"PYTHONPATH": os.getcwd(), "LLMREC_HOME": str(tmp_path)}
    nodes, clients = [], []
    try:
        for _ in range(2):
            proc, base = launch_service(url, {KEY_A: "acme"}, env=env, stderr=subprocess.PIPE)
            nodes.append(proc)
            clients.append(MemoryClient(base, KEY_A))
        one, two = clients
        ids = one.add([{"role": "user", "content": "I keep bees on my roof in Ghent."}], user_id="zoe",
                      session_id="s1")
        hits = two.search("Where are the bees?", user_id="zoe", limit=3, method="dense")
        assert hits and hits[0].id == ids[0] and "bees" in hits[0].text
        two.update("zoe", ids[0], "user: I keep bees in Antwerp.")
        assert one.get("zoe", ids[0]).text == "user: I keep bees in Antwerp."
        assert [e["event"] for e in one.history("zoe", ids[0])] == ["add", "update"]
        assert len(two.get_all("zoe", page_size=1)) == len(one.get_all("zoe"))
        with pytest.raises(MemoryServiceError) as e:
            one.search("q", user_id="zoe", k=0)
        assert e.value.status == 422 and e.value.field == "k"
    finally:
        for n in nodes:
            n.terminate()
            n.wait(30)


@pytest.mark.slow
def test_node_kill_and_postgres_restart_lose_no_acknowledged_write(pg_url):
    """The fault run at a small scale (eval/fault_memory_service.py): a node SIGKILLed mid-write and restarted,
    PostgreSQL killed and restarted mid-load; every acknowledged write is found through both nodes and no
    replica (the two nodes', a fresh one) disagrees with the rows."""
    sys.path.insert(0, os.path.join(os.getcwd(), "eval"))
    from fault_memory_service import run

    res = run(rounds=1, writers=2, searchers=1, seconds=6, users=5, seed=1)
    assert res["acknowledged_writes"] > 20 and res["errors"] > 0  # the faults were felt by the clients
    assert res["lost"] == 0 and res["diverged"] == 0, res
