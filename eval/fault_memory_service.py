"""Fault runs of the memory service: two ``llmrec memory serve`` nodes on one PostgreSQL, concurrent writers and
searchers through both, a node killed with SIGKILL mid-write (and restarted) and PostgreSQL itself killed and
restarted mid-load; then every acknowledged write is looked up through both nodes, and each node's replicas
and a fresh one are verified against the rows.

    python eval/fault_memory_service.py --rounds 3 --writers 4 --seconds 20    # -> eval/results/memory_service_faults.json

A write is acknowledged when the service answered 200; answers during a fault are errors (503 or a refused
connection), retried by nobody. Reported: kills, restarts, requests, acknowledged writes, lost (acknowledged
but absent afterwards), diverged (duplicates + missing + extra over every replica), and what the clients saw."""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx

from llmrec.memory.client import launch_service
from llmrec.results import write_result
from llmrec.store.pgcluster import ThrowawayCluster, free_port

KEY = "fault-test-key-" + "x" * 16
OUT = Path("eval/results/memory_service_faults.json")


class Node:
    """One ``llmrec memory serve`` process on the shared store."""

    def __init__(self, url: str, home: Path) -> None:
        self.url, self.home, self.port = url, home, free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc, _ = launch_service(self.url, {KEY: "fault"}, ["--burst", "1000000", "--rate", "100000"],
                                      port=self.port, env={"LLMREC_HOME": str(self.home), "HF_HUB_OFFLINE": "1",
                                                           "PYTHONPATH": os.getcwd()})

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def run(rounds: int, writers: int, searchers: int, seconds: float, users: int, seed: int) -> dict:
    """The fault runs (module docstring); the counts."""
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {KEY}"}
    with ThrowawayCluster() as pg:
        url = f"{pg.url}&schema=faults"
        home = Path(pg.root) / "home"
        nodes = [Node(url, home), Node(url, home)]
        for n in nodes:
            n.start()
        acked: dict[str, str] = {}  # memory id -> user
        counts = {"requests": 0, "ok": 0, "errors": 0, "searches": 0, "search_errors": 0}
        lock = threading.Lock()
        stop = threading.Event()

        def writer(w: int) -> None:
            client = httpx.Client(timeout=30, headers=headers)
            i = 0
            while not stop.is_set():
                node = nodes[(w + i) % 2]
                user = f"u{rng.randrange(users)}"
                body = {"user_id": user, "session_id": f"w{w}-s{i // 5}",
                        "messages": [{"role": "user", "content": f"writer {w} fact {i}: I like item {rng.random():.6f}"}]}
                try:
                    r = client.post(f"{node.base}/memories", json=body)
                    ok = r.status_code == 200
                    if ok:
                        ids = [x["id"] for x in r.json()["results"]]
                except httpx.HTTPError:
                    ok = False
                with lock:
                    counts["requests"] += 1
                    counts["ok" if ok else "errors"] += 1
                    if ok:
                        acked.update({x: user for x in ids})
                i += 1

        def searcher(s: int) -> None:
            client = httpx.Client(timeout=30, headers=headers)
            i = 0
            while not stop.is_set():
                node = nodes[(s + i) % 2]
                try:
                    r = client.post(f"{node.base}/search", json={"user_id": f"u{i % users}", "query": "which item do I like",
                                                                 "method": "dense", "k": 5})
                    good = r.status_code == 200
                except httpx.HTTPError:
                    good = False
                with lock:
                    counts["searches"] += 1
                    counts["search_errors"] += 0 if good else 1
                i += 1

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
        threads += [threading.Thread(target=searcher, args=(s,)) for s in range(searchers)]
        for t in threads:
            t.start()
        faults = []
        for r in range(rounds):
            time.sleep(seconds / 2)
            victim = nodes[r % 2]
            victim.kill()  # SIGKILL mid-write
            faults.append({"t": time.time(), "fault": f"SIGKILL node {r % 2}"})
            time.sleep(1.0)
            victim.start()
            time.sleep(seconds / 2)
            pg.restart(crash=True)  # SIGKILL the postmaster mid-load; recovery replays its WAL
            faults.append({"t": time.time(), "fault": "PostgreSQL killed and restarted"})
            print(f"round {r + 1}/{rounds}: {counts}", flush=True)
        time.sleep(seconds / 2)
        stop.set()
        for t in threads:
            t.join()

        client = httpx.Client(timeout=60, headers=headers)
        lost = []
        for mid, user in acked.items():
            for node in nodes:
                if client.get(f"{node.base}/memories/{mid}", params={"user_id": user}).status_code != 200:
                    lost.append((mid, node.port))
        verified = [client.get(f"{n.base}/verify").json() for n in nodes]
        from llmrec.store import open_store

        fresh = open_store(url).verify()  # a replica built now from the rows
        fresh_total = {k: sum(v[k] for v in fresh.values()) for k in ("rows", "duplicates", "missing", "extra")}
        for n in nodes:
            n.stop()
    diverged = sum(v["duplicates"] + v["missing"] + v["extra"] for v in verified) + \
        fresh_total["duplicates"] + fresh_total["missing"] + fresh_total["extra"]
    return {"rounds": rounds, "node_kills": rounds, "postgres_restarts": rounds, "writers": writers,
            "searchers": searchers, "users": users, **counts, "acknowledged_writes": len(acked),
            "lost": len(lost), "lost_examples": lost[:5], "diverged": diverged, "nodes_verified": verified,
            "fresh_replica": fresh_total, "faults": faults}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--searchers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0, help="load between faults")
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    res = run(a.rounds, a.writers, a.searchers, a.seconds, a.users, a.seed)
    res["summary"] = {k: res[k] for k in ("node_kills", "postgres_restarts", "acknowledged_writes", "lost", "diverged",
                                          "errors")}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_result(a.out, res, config=vars(a) | {"out": str(a.out)}, seeds=[a.seed])
    print(json.dumps({k: v for k, v in res.items() if k not in ("faults", "nodes_verified")}, indent=1))


if __name__ == "__main__":
    main()
