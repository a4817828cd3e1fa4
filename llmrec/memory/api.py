"""User-scoped long-term memory over the llmrec store (mem0-like shape).

    mem = Memory()                                   # default store and embedder (or pass your own)
    mem.add("alice", [{"role": "user", "content": "I moved to Lisbon"}], session_id="s1")
    mem.search("alice", "where does she live?", k=5, method="hybrid")
    mem.add([{"role": "user", "content": "I play the cello"}], user_id="alice")   # mem0's call shape
    mem.search("what does she play?", user_id="alice", limit=3)

Each user is one store namespace, so one user's memories are never searched for another. Units:
``turn`` (one message or text), ``pair`` (two consecutive turns of a session), ``session`` (all turns of a session, re-embedded when the session
grows), and, after ``consolidate``, ``summary`` and ``keywords`` (one each per session, made by a
``SessionDigester`` (LLM) or an ``ExtractiveDigester`` (key turns chosen by the embedder, no LLM), remade only
when the session's text or the digester changed). Methods: ``dense`` (embedding inner product), ``bm25`` (incremental per-user index) and ``hybrid``
(min-max normalized mix). Memory text is data: it is stored and returned verbatim and never interpreted."""
from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from llmrec.config import StrictConfig, default_memory_dir, llmrec_home
from llmrec.embed import Embedder, default_embedder
from llmrec.memory.bm25 import BM25Index
from llmrec.metrics import minmax
from llmrec.retrieval import Hit
from llmrec.memory.units import Digester, format_date, text_hash
from llmrec.store import Store, VectorStore, open_store
from llmrec.errors import NotFoundError

Method = Literal["dense", "bm25", "hybrid"]
Granularity = Literal["turn", "pair", "session", "summary", "keywords"]


class MemoryConfig(StrictConfig):
    """Memory settings: text size limit, hybrid search mix and pool, which derived units are kept."""
    max_text_chars: int = 20_000
    hybrid_alpha: float = 0.5  # weight of the dense score in hybrid search
    hybrid_pool: int = 200  # dense candidates fused with BM25 in hybrid search (at least 20 x k)
    session_units: bool = True
    pair_units: bool = True  # a unit per two consecutive turns of a session (MemGAS's "turn", RF-Mem's pairs)


MemoryHit = Hit  # the memory API's results are the Retriever protocol's hits (``unit`` = the granularity)


def fused_candidates(dense: dict[str, float], index: BM25Index, query: str, group: str | None, a: float,
                     k: int) -> dict[str, float]:
    """Hybrid scores ``a * minmax(dense) + (1 - a) * minmax(BM25)`` of every document that can be in the top
    ``k``: the dense pool, and the documents outside it whose BM25 reaches the ``k``-th best of them (ties
    included). Outside the pool a score is ``(1 - a)`` x its scaled BM25, so no other document can outrank
    ``k`` of these; the values are the ones the full fusion computes, with the same float operations."""
    slots, lex = index.score_arrays(query, group)
    d = minmax_scores(dense)
    if not len(lex):
        return {i: a * v + (1 - a) * 0.0 for i, v in d.items()}
    scaled = minmax(lex, constant=1.0)
    pool = np.array([s for s in (index.slot(i) for i in d) if s is not None], np.int64)
    at = np.searchsorted(slots, pool)
    inside = pool[(at < len(slots)) & (slots[np.minimum(at, len(slots) - 1)] == pool)]
    outside = ~np.isin(slots, inside)
    rest = scaled[outside]
    keep = np.flatnonzero(outside)
    if len(rest) > k:
        cut = np.partition(rest, len(rest) - k)[len(rest) - k]  # the k-th best outside the pool
        keep = keep[rest >= cut]
    l = {index.doc_id(int(slots[j])): float(scaled[j]) for j in keep}
    l.update({index.doc_id(int(s)): float(scaled[np.searchsorted(slots, s)]) for s in inside})
    return {i: a * d.get(i, 0.0) + (1 - a) * l.get(i, 0.0) for i in set(d) | set(l)}


_RESERVED = ("granularity", "session_id", "timestamp", "source_hash", "model_id", "prev_id", "position")


def memory_hit(record, score: float) -> Hit:
    """A stored memory record (or store search hit) as a ``Hit``."""
    m = record.metadata
    return Hit(record.id, record.text, float(score), m.get("granularity", "turn"), m.get("session_id"),
               m.get("timestamp"), {k: v for k, v in m.items() if k not in _RESERVED})


def _user_and(who: Any, payload: Any, user_id: str | None, name: str) -> tuple[str, Any]:
    """(user, payload) from either call shape: ``(user_id, payload)`` or mem0's ``(payload, user_id=...)``."""
    if user_id is None:
        if payload is None:
            raise ValueError(f"{name}: missing (call with (user_id, {name}) or ({name}, user_id=...))")
        return who, payload
    if payload is not None:
        raise ValueError(f"user_id: given twice (as a keyword and with {name} second); use one call shape")
    return user_id, who


def namespace(user_id: str) -> str:
    """The store namespace holding one user's memories."""
    return f"user:{user_id}"


def minmax_scores(scores: dict[str, float]) -> dict[str, float]:
    """Min-max scaled scores by id; all equal -> 1.0 each."""
    keys = list(scores)
    return dict(zip(keys, minmax(np.array([scores[k] for k in keys]), constant=1.0).tolist()))


class Memory:
    """User-scoped long-term memory over a ``Store`` (mem0-like): add, get, get_all, search, update,
    delete, delete_all, history, consolidate."""
    def __init__(self, store: Store | str | Path | None = None, embedder: Embedder | None = None,
                 config: MemoryConfig | None = None, digester: Digester | None = None) -> None:
        """``Memory()`` alone: the default store (``default_memory_dir()/default``: ``$LLMREC_MEMORY`` or
        ``$LLMREC_HOME/memory``, never the working directory or a checkout) and the bundled MiniLM embedder.
        ``store`` is any ``Store`` (``VectorStore``, ``PostgresStore``) or its location (a folder, or a
        ``postgresql://`` URL: ``llmrec.store.open_store``)."""
        if store is None:
            store = VectorStore(default_memory_dir() / "default")
        elif isinstance(store, (str, Path)):
            store = open_store(store)
        if embedder is None:
            embedder = default_embedder(cache_path=str(llmrec_home() / "embeddings.sqlite"))
        self.store, self.embedder, self.digester = store, embedder, digester
        self.config = config or MemoryConfig()
        self._bm25: dict[str, tuple[BM25Index, int]] = {}
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- validation
    def _check_user(self, user_id: str) -> None:
        if not isinstance(user_id, str) or not user_id.strip():
            raise ValueError("user_id: must be a non-empty string")
        if any(ord(c) < 32 for c in user_id):
            raise ValueError("user_id: contains a control character")

    def _check_text(self, text: Any, name: str) -> str:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{name}: empty text")
        if len(text) > self.config.max_text_chars:
            raise ValueError(f"{name}: {len(text)} characters exceed max_text_chars={self.config.max_text_chars}")
        return text

    def _turn_texts(self, content: str | Sequence[Mapping[str, str]]) -> list[str]:
        if isinstance(content, str):
            return [self._check_text(content, "content")]
        if not content:
            raise ValueError("content: empty message list")
        out = []
        for i, m in enumerate(content):
            if not isinstance(m, Mapping) or "content" not in m:
                raise ValueError(f"content[{i}]: a message needs 'content'")
            text = self._check_text(m["content"], f"content[{i}].content")
            who = m.get("name") or m.get("role")
            out.append(f"{who}: {text}" if who else text)
        return out

    # ---------------------------------------------------------------- writes
    def add(self, who: str | Sequence[Mapping[str, str]], content: str | Sequence[Mapping[str, str]] | None = None,
            session_id: str | None = None, timestamp: float | None = None,
            metadata: Mapping[str, Any] | None = None, *, user_id: str | None = None) -> list[str]:
        """Store one text or a list of messages as turn units (and refresh the session unit). Returns turn ids.
        ``add(user_id, content)``, or mem0's shape ``add(messages, user_id=...)``."""
        user_id, content = _user_and(who, content, user_id, "content")
        self._check_user(user_id)
        texts = self._turn_texts(content)
        ts = float(timestamp) if timestamp is not None else time.time()
        base = dict(metadata or {})
        for reserved in _RESERVED:
            if reserved in base:
                raise ValueError(f"metadata.{reserved}: reserved key")
        ids = [f"t-{uuid.uuid4().hex}" for _ in texts]
        metas = [{**base, "granularity": "turn", "session_id": session_id, "timestamp": ts} for _ in texts]
        vecs = self.embedder.encode(texts)
        ns = namespace(user_id)
        with self._lock:
            # the turns, their pair units and the session unit are one transaction: all acknowledged or none
            with self.store.transaction():
                before = self.store.version(ns)
                if session_id is not None:  # a turn's position in its session survives updates (which re-insert)
                    earlier = self._session_turns(ns, session_id)
                    start = earlier[-1].metadata.get("position", len(earlier) - 1) + 1 if earlier else 0
                    for i, m in enumerate(metas):
                        m["position"] = start + i
                self.store.add(ns, ids, texts, vecs, metas)
                self.store.log_event(ns, ids, "add", [{"old": None, "new": t} for t in texts])
                written = [(i, t, "turn") for i, t in zip(ids, texts)]
                if session_id is not None and (self.config.session_units or self.config.pair_units):
                    turns = self._session_turns(ns, session_id)
                    if self.config.pair_units:
                        written += self._make_pairs(ns, turns, set(ids), ts)
                    if self.config.session_units:
                        written.append(self._refresh_session(user_id, session_id, turns, ts))
            self._bm25_apply(user_id, before, added=written)
        return ids

    def _session_turns(self, ns: str, session_id: str) -> list:
        """The session's turn records in conversation order (position, then insertion order)."""
        turns = self.store.find(ns, {"granularity": "turn", "session_id": session_id})
        return sorted(turns, key=lambda r: r.metadata.get("position", 0))  # stable: ties keep insertion order

    def _make_pairs(self, ns: str, turns, new: set[str], ts: float | None) -> list[tuple[str, str, str]]:
        """(Re)make the pair units ending at each turn in ``new`` (a turn paired with its predecessor)."""
        ids, texts, metas = [], [], []
        for prev, cur in zip(turns, turns[1:]):
            if cur.id in new:
                ids.append(f"p-{cur.id}")
                texts.append(f"{prev.text}\n{cur.text}")
                metas.append({**{k: v for k, v in cur.metadata.items() if k != "timestamp"}, "granularity": "pair",
                              "timestamp": ts if ts is not None else cur.metadata.get("timestamp"),
                              "prev_id": prev.id})
        if ids:
            self.store.upsert(ns, ids, texts, self.embedder.encode(texts), metas)
        return [(i, t, "pair") for i, t in zip(ids, texts)]

    def _refresh_session(self, user_id: str, session_id: str, turns, ts: float) -> tuple[str, str, str]:
        ns = namespace(user_id)
        text = "\n".join(r.text for r in turns)
        sid = f"s-{session_id}"
        self.store.upsert(ns, [sid], [text], self.embedder.encode([text]),
                          [{"granularity": "session", "session_id": session_id, "timestamp": ts}])
        return sid, text, "session"

    def consolidate(self, user_id: str, progress: bool = True) -> int:
        """Make (or remake) the summary and keywords units of every session of ``user_id`` whose turns changed
        since its units were made (or that another digester made), in batches; each batch is written as it
        finishes, so an interrupted run resumes where it stopped. Returns the number of sessions digested."""
        from tqdm.auto import tqdm

        self._check_user(user_id)
        if self.digester is None:
            raise ValueError("digester: consolidate needs Memory(..., digester=SessionDigester(llm) or "
                             "ExtractiveDigester(embedder))")
        ns = namespace(user_id)
        records = [r for r in self.store.get(ns, self.store.ids(ns)) if r is not None]
        turns: dict[str, list[tuple[int, str]]] = {}
        stamps: dict[str, float | None] = {}
        made: dict[str, tuple[str | None, str | None]] = {}
        for r in records:  # insertion order
            sid, g = r.metadata.get("session_id"), r.metadata.get("granularity")
            if sid is None:
                continue
            if g == "turn":
                turns.setdefault(sid, []).append((r.metadata.get("position", 0), r.text))
                stamps[sid] = r.metadata.get("timestamp")
            elif g == "keywords":
                made[sid] = (r.metadata.get("source_hash"), r.metadata.get("model_id"))
        texts = {sid: "\n".join(text for _, text in sorted(t, key=lambda x: x[0])) for sid, t in turns.items()}
        # redone when the session's turns changed or another digester (LLM, extractive settings) is in use
        stale = [(sid, text) for sid, text in texts.items()
                 if made.get(sid) != (text_hash(text), self.digester.model_id)]
        size = self.digester.config.batch_size
        bar = tqdm(total=len(stale), desc=f"digest {user_id}", unit="session", disable=not progress)
        for i in range(0, len(stale), size):
            part = stale[i : i + size]
            digests = self.digester.digest([t for _, t in part], [format_date(stamps[sid]) for sid, _ in part])
            ids, texts, metas, drop = [], [], [], []
            for (sid, text), d in zip(part, digests):
                base = {"session_id": sid, "timestamp": stamps[sid], "source_hash": text_hash(text),
                        "model_id": self.digester.model_id}
                if d.summary:
                    ids.append(f"m-{sid}"), texts.append(d.summary), metas.append({**base, "granularity": "summary"})
                else:
                    drop.append(f"m-{sid}")
                # the keywords unit is written even when empty-handed (text = session id) so that it records
                # that this version of the session was digested
                ids.append(f"k-{sid}"), texts.append("; ".join(d.keywords) or f"session {sid}")
                metas.append({**base, "granularity": "keywords"})
            with self._lock, self.store.transaction():
                before = self.store.version(ns)
                if drop:
                    self.store.delete(ns, drop, missing_ok=True)
                self.store.upsert(ns, ids, texts, self.embedder.encode(texts), metas)
                self._bm25_apply(user_id, before, added=[(i, t, m["granularity"]) for i, t, m in
                                                          zip(ids, texts, metas)], removed=drop)
            bar.update(len(part))
        bar.close()
        return len(stale)

    def update(self, user_id: str, memory_id: str, text: str) -> None:
        """Replace the text of one memory (re-embedded; its session's derived units follow; history keeps both
        texts)."""
        self._check_user(user_id)
        self._check_text(text, "text")
        ns = namespace(user_id)
        rec = self.store.get(ns, [memory_id])[0]
        if rec is None:
            raise NotFoundError(f"memory_id: {memory_id!r} not found for user {user_id!r}")
        with self._lock, self.store.transaction():
            before = self.store.version(ns)
            self.store.upsert(ns, [memory_id], [text], self.embedder.encode([text]), [rec.metadata])
            self.store.log_event(ns, [memory_id], "update", [{"old": rec.text, "new": text}])
            added, removed = [(memory_id, text, rec.metadata.get("granularity"))], []
            if rec.metadata.get("granularity") == "turn" and rec.metadata.get("session_id") is not None:
                added, removed = self._resync_session(user_id, rec.metadata["session_id"], added, removed)
            self._bm25_apply(user_id, before, added=added, removed=removed)

    def _resync_session(self, user_id: str, session_id: str, added: list, removed: list) -> tuple[list, list]:
        """After a turn of the session was changed or deleted: remake the pairs whose turns changed, drop
        the pairs that no longer exist, and re-embed the session unit (or drop it with the last turn)."""
        ns = namespace(user_id)
        turns = self._session_turns(ns, session_id)
        if self.config.pair_units:
            have = {r.id: r for r in self.store.find(ns, {"granularity": "pair", "session_id": session_id})}
            want = {f"p-{cur.id}": (prev, cur) for prev, cur in zip(turns, turns[1:])}
            stale = [i for i in have if i not in want]
            if stale:
                self.store.delete(ns, stale)
                removed = [*removed, *stale]
            redo = {cur.id for i, (prev, cur) in want.items()
                    if i not in have or have[i].text != f"{prev.text}\n{cur.text}"}
            added = [*added, *self._make_pairs(ns, turns, redo, None)]
        if self.config.session_units:
            if turns:
                ts = turns[-1].metadata.get("timestamp")
                added = [*added, self._refresh_session(user_id, session_id, turns, ts)]
            elif self.store.get(ns, [f"s-{session_id}"])[0] is not None:
                self.store.delete(ns, [f"s-{session_id}"])
                removed = [*removed, f"s-{session_id}"]
        return added, removed

    def delete(self, user_id: str, memory_id: str) -> int:
        """Delete one memory (its session's pair and session units follow). Every memory of a user is
        ``delete_all``, kept apart as in mem0 so that a missing id can never wipe a user."""
        self._check_user(user_id)
        if not isinstance(memory_id, str) or not memory_id:
            raise ValueError("memory_id: the id of the memory to delete (delete_all(user_id) removes every memory)")
        ns = self._known(user_id)
        with self._lock, self.store.transaction():
            before = self.store.version(ns)
            rec = self.store.get(ns, [memory_id])[0]
            if rec is None:
                raise NotFoundError(f"memory_id: {memory_id!r} not found for user {user_id!r}")
            n = self.store.delete(ns, [memory_id])
            self.store.log_event(ns, [memory_id], "delete", [{"old": rec.text, "new": None}])
            added, removed = [], [memory_id]
            if rec.metadata.get("granularity") == "turn" and rec.metadata.get("session_id") is not None:
                added, removed = self._resync_session(user_id, rec.metadata["session_id"], added, removed)
            self._bm25_apply(user_id, before, added=added, removed=removed)
        return n

    def delete_all(self, user_id: str) -> int:
        """Delete every memory of ``user_id`` (history keeps a delete event per memory). Returns the count."""
        self._check_user(user_id)
        ns = self._known(user_id)
        with self._lock, self.store.transaction():
            before = self.store.version(ns)
            ids = self.store.ids(ns)
            old = self.store.get(ns, ids)
            n = self.store.delete(ns, ids)
            self.store.log_event(ns, ids, "delete", [{"old": r.text if r else None, "new": None} for r in old])
            self._bm25_apply(user_id, before, removed=ids)
        return n

    def _known(self, user_id: str) -> str:
        ns = namespace(user_id)
        if ns not in self.store.namespaces():
            raise NotFoundError(f"user_id: unknown user {user_id!r}")
        return ns

    def history(self, user_id: str, memory_id: str | None = None) -> list[dict[str, Any]]:
        """What happened to a memory (or to all of a user's memories), oldest first: ``{"id", "event"
        (add / update / delete), "old", "new", "at"}``; deleted memories keep their history."""
        self._check_user(user_id)
        return [{k: e[k] for k in ("id", "event", "old", "new", "at")} for e in self.store.events(self._known(user_id), memory_id)]

    # ---------------------------------------------------------------- reads
    def _records(self, user_id: str) -> list[MemoryHit]:
        ns = namespace(user_id)
        return [memory_hit(r, 0.0) for r in self.store.get(ns, self.store.ids(ns)) if r is not None]

    def list(self, user_id: str, session_id: str | None = None) -> list[MemoryHit]:
        """Every memory unit of the user (or of one session), in insertion order."""
        self._check_user(user_id)
        return [h for h in self._records(user_id) if session_id is None or h.session_id == session_id]

    def get(self, user_id: str, memory_id: str) -> MemoryHit:
        """One memory by id (``NotFoundError`` if absent)."""
        self._check_user(user_id)
        rec = self.store.get(self._known(user_id), [memory_id])[0]
        if rec is None:
            raise NotFoundError(f"memory_id: {memory_id!r} not found for user {user_id!r}")
        return memory_hit(rec, 0.0)

    def get_all(self, user_id: str, filters: Mapping[str, Any] | None = None, since: float | None = None,
                until: float | None = None, granularity: Granularity | None = None) -> list[MemoryHit]:
        """Every memory of the user matching metadata ``filters`` (equality, a list of values, or a numeric
        range ``{"gte": ..., "lt": ...}``), a time window on the memory's timestamp and a granularity."""
        self._check_user(user_id)
        ns = namespace(user_id)
        if ns not in self.store.namespaces():
            return []
        where = self._where(filters, since, until, granularity)
        recs = self.store.find(ns, where) if where else [r for r in self.store.get(ns, self.store.ids(ns)) if r]
        return [memory_hit(r, 0.0) for r in recs]

    def _where(self, filters: Mapping[str, Any] | None, since: float | None, until: float | None,
               granularity: str | None) -> dict[str, Any]:
        where: dict[str, Any] = {}
        for key, val in (filters or {}).items():
            if key in _RESERVED:
                raise ValueError(f"filters.{key}: reserved key (use the since / until / granularity arguments)")
            where[key] = val
        if granularity:
            where["granularity"] = granularity
        if since is not None or until is not None:
            if since is not None and until is not None and since > until:
                raise ValueError(f"since: {since} is after until: {until}")
            where["timestamp"] = {**({"gte": float(since)} if since is not None else {}),
                                  **({"lte": float(until)} if until is not None else {})}
        return where

    def _bm25_apply(self, user_id: str, before: int, added=(), removed=()) -> None:
        entry = self._bm25.get(user_id)
        if entry is None:
            return
        index, version = entry
        if version != before:  # someone else wrote in between: rebuild lazily at the next search
            del self._bm25[user_id]
            return
        for i in removed:
            index.remove(i)
        for i, t, g in added:
            index.add(i, t, g)
        self._bm25[user_id] = (index, self.store.version(namespace(user_id)))

    def bm25_index(self, user_id: str) -> BM25Index:
        """The user's BM25 index, rebuilt only when the store changed since it was built."""
        entry = self._bm25.get(user_id)
        version = self.store.version(namespace(user_id))
        if entry is not None and entry[1] == version:
            return entry[0]
        index = BM25Index()
        for h in self._records(user_id):
            index.add(h.id, h.text, h.granularity)
        self._bm25[user_id] = (index, version)
        return index

    def search(self, who: str, query: str | None = None, k: int = 5, method: Method = "hybrid",
               granularity: Granularity | None = "turn", filters: Mapping[str, Any] | None = None,
               since: float | None = None, until: float | None = None, *, user_id: str | None = None,
               limit: int | None = None) -> list[MemoryHit]:
        """The ``k`` best memories of ``user_id`` for ``query``: ``dense`` (embeddings), ``bm25`` or ``hybrid``
        (min-max mix); only units of ``granularity`` (None: all), matching metadata ``filters`` and with a
        timestamp in [since, until] (see ``get_all``). ``search(user_id, query)``, or mem0's shape
        ``search(query, user_id=..., limit=...)`` (``limit`` is ``k``)."""
        user_id, query = _user_and(who, query, user_id, "query")
        if limit is not None:
            k = limit
        self._check_user(user_id)
        self._check_text(query, "query")
        if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
            raise ValueError("k: must be a positive integer")
        if method not in ("dense", "bm25", "hybrid"):
            raise ValueError(f"method: {method!r} is not one of dense, bm25, hybrid")
        ns = namespace(user_id)
        where = self._where(filters, since, until, granularity) or None
        narrowed = where is not None and set(where) != {"granularity"}
        with self._lock:
            n = self.store.count(ns)
            if n == 0:
                return []
            dense: dict[str, float] = {}
            if method in ("dense", "hybrid"):
                q = self.embedder.encode([query])[0]
                pool = min(n, max(self.config.hybrid_pool, 20 * k)) if method == "hybrid" else k
                dense = {h.id: h.score for h in self.store.search(ns, q, pool, where=where)}
            a = self.config.hybrid_alpha
            lexical: dict[str, float] = {}
            if method == "hybrid" and not narrowed and 0.0 < a < 1.0:
                scores = fused_candidates(dense, self.bm25_index(user_id), query, granularity, a, k)
            else:
                if method in ("bm25", "hybrid"):
                    lexical = self.bm25_index(user_id).scores(query, granularity)
                    if narrowed:
                        allowed = {r.id for r in self.store.find(ns, where)}
                        lexical = {i: v for i, v in lexical.items() if i in allowed}
                if method == "dense":
                    scores = dense
                elif method == "bm25":
                    scores = lexical
                else:
                    d, l = minmax_scores(dense), minmax_scores(lexical)
                    scores = {i: a * d.get(i, 0.0) + (1 - a) * l.get(i, 0.0) for i in set(d) | set(l)}
            top = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
            recs = {r.id: r for r in self.store.get(ns, [i for i, _ in top]) if r is not None}
        return [memory_hit(recs[i], s) for i, s in top if i in recs]
