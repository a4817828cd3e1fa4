"""Store soak: 4 processes run mixed add / upsert / delete / search / flush on one store for N minutes while
random workers are SIGKILLed and restarted; after every kill and at the end the store is checked: FAISS vs
SQLite id sets (``VectorStore.verify``: duplicates, missing, extra), every acknowledged write present and
every acknowledged delete absent, sampled rows searchable by their own vector.

    python eval/soak_store.py [--minutes 2] [--workers 4] [--kill-every 3] [--index flat|hnsw]

Writes eval/results/soak_store.json: operations/s, kills, checks and every divergence found (want 0)."""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from llmrec.results import write_result
from llmrec.store import StoreConfig, VectorStore
from llmrec.store.index import IndexConfig

WORKER = r"""
import random, sys, numpy as np
from llmrec.store import VectorStore
path, me, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng, rnd = np.random.default_rng(seed), random.Random(seed)
s = VectorStore(path)
journal = open(f"{path}/journal-{me}.log", "a", buffering=1)
mine, n = [], 0
while True:
    r = rnd.random()
    ns = rnd.choice([f"own-{me}", "shared"])
    if r < 0.45 or not mine:
        ids = [f"{me}-{seed}-{n + j}" for j in range(rnd.randint(1, 4))]
        n += len(ids)
        v = rng.normal(size=(len(ids), 16)).astype(np.float32)
        s.add(ns, ids, ["t"] * len(ids), v / np.linalg.norm(v, axis=1, keepdims=True))
        mine += [(ns, i) for i in ids]
        journal.write("".join(f"add {ns} {i}\n" for i in ids))
    elif r < 0.6:
        ns_, i = rnd.choice(mine)
        u = rng.normal(size=(1, 16))
        s.upsert(ns_, [i], ["u"], u / np.linalg.norm(u))
        journal.write(f"ups {ns_} {i}\n")
    elif r < 0.72:
        ns_, i = mine.pop(rnd.randrange(len(mine)))
        s.delete(ns_, [i], missing_ok=True)
        journal.write(f"del {ns_} {i}\n")
    elif r < 0.97:
        s.search(ns, rng.normal(size=16), 5)
        journal.write("srch\n")
    else:
        s.flush()
        journal.write("flush\n")
"""


def read_journals(path: Path) -> tuple[set, set]:
    """(ids acknowledged as written and not deleted since, ids acknowledged as deleted) from every journal."""
    alive, dead = set(), set()
    for j in path.glob("journal-*.log"):
        for line in j.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] in ("add", "ups"):
                alive.add((parts[1], parts[2]))
                dead.discard((parts[1], parts[2]))
            elif len(parts) == 3 and parts[0] == "del":
                alive.discard((parts[1], parts[2]))
                dead.add((parts[1], parts[2]))
    return alive, dead


def check(path: Path, index: str, quiet: bool) -> dict:
    """Journals first (what was acknowledged before), then the store (which must hold all of it). Rows are
    searched by their own vector only when ``quiet`` (no writer left to upsert them in between)."""
    alive, dead = read_journals(path)
    s = VectorStore(path, StoreConfig(index=IndexConfig(kind=index)))
    report = {"divergent_namespaces": {}, "lost_acknowledged": 0, "resurrected_deletes": 0, "unsearchable": 0}
    for ns, r in s.verify().items():
        if r["duplicates"] or r["missing"] or r["extra"]:
            report["divergent_namespaces"][ns] = r
    stored = {(ns, i) for ns in s.namespaces() for i in s.ids(ns)}
    deleted_since = read_journals(path)[1]  # deletes acknowledged while the store was being read
    report["lost_acknowledged"] = len(alive - stored - deleted_since)
    report["resurrected_deletes"] = len(dead & stored)
    for ns, i in random.Random(0).sample(sorted(stored), min(50, len(stored)) if quiet else 0):
        rec = s.get(ns, [i])[0]
        hits = s.search(ns, rec.vector, 1 if index == "flat" else 10)  # hnsw is approximate: its top 10
        if i not in [h.id for h in hits]:  # unit vectors: a row is its own nearest neighbour
            report["unsearchable"] += 1
    report["rows"] = len(stored)
    s._db.close()
    return report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--kill-every", type=float, default=3.0, help="seconds between kills (random worker)")
    ap.add_argument("--index", choices=["flat", "hnsw"], default="flat")
    ap.add_argument("--out", default="eval/results/soak_store.json")
    a = ap.parse_args()
    path = Path(tempfile.mkdtemp(prefix="llmrec-soak-")) / "store"
    VectorStore(path, StoreConfig(index=IndexConfig(kind=a.index))).add("shared", ["seed"], ["t"], np.ones((1, 16)) / 4)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.getcwd())
    rnd, seed = random.Random(0), 0

    def spawn(me: str) -> subprocess.Popen:
        nonlocal seed
        seed += 1
        return subprocess.Popen([sys.executable, "-c", WORKER, str(path), me, str(seed)], env=env,
                                stderr=subprocess.DEVNULL)

    procs = {f"w{i}": spawn(f"w{i}") for i in range(a.workers)}
    t0, kills, checks, crashed = time.time(), 0, [], 0
    end = t0 + 60 * a.minutes
    while time.time() < end:
        time.sleep(min(a.kill_every * rnd.uniform(0.5, 1.5), max(0.0, end - time.time())))
        victim = rnd.choice(sorted(procs))
        crashed += procs[victim].poll() is not None and procs[victim].returncode != -signal.SIGKILL
        os.kill(procs[victim].pid, signal.SIGKILL)
        procs[victim].wait()
        kills += 1
        checks.append(check(path, a.index, quiet=False))  # while the other workers keep writing
        procs[victim] = spawn(victim)
        print(f"{time.time() - t0:6.0f} s  kill {kills}: {checks[-1]}", flush=True)
    for p in procs.values():
        p.kill()
        p.wait()
    final = check(path, a.index, quiet=True)
    ops = sum(len(j.read_text().splitlines()) for j in path.glob("journal-*.log"))
    seconds = time.time() - t0
    bad = sum(bool(c["divergent_namespaces"]) + c["lost_acknowledged"] + c["resurrected_deletes"] + c["unsearchable"]
              for c in [*checks, final])
    payload = {"workers": a.workers, "index": a.index, "seconds": seconds, "kills": kills,
               "acknowledged_operations": ops, "operations_per_second": ops / seconds,
               "workers_that_crashed_on_their_own": crashed, "checks": len(checks) + 1,
               "divergences": bad, "final": final, "per_kill": checks}
    out = write_result(Path(a.out), payload, config=vars(a))
    print(f"{ops} acknowledged ops in {seconds:.0f} s ({ops / seconds:.0f}/s), {kills} kills, "
          f"{len(checks) + 1} checks, divergences {bad}; wrote {out}")


if __name__ == "__main__":
    main()
