"""MemGAS (Xu et al., ICLR 2026): multi-granularity memory association and selection.

Per session several *views* (granularities) score the query: the session unit's embedding, the mean of its
turn embeddings, its best turn, the LLM-made summary and keywords units (after ``Memory.consolidate``), and
optionally BM25 over the session text, its turns, its summary or its keywords (the "hybrid" setting).
1. Association (incremental, cached per user): every embedding node of a session is compared with the nodes
   of earlier sessions; its top ``gmm_candidates`` similarities are split by a 2-component 1-D Gaussian
   mixture and the higher-mean component become undirected edges. Only nodes that are new or whose vector
   changed are (re)linked, so adding a session never rebuilds the graph.
2. Entropy router: for view g over the N sessions, p_g = softmax(s_g / T), H_g normalized by ln N,
   w_g = max(1e-6, 1 - H_g), renormalized: a confident (peaked) view weighs more. A per-view prior
   (``view_prior``, default 1 for every view) multiplies w_g before renormalizing, so a view that is peaked
   but wrong (an LLM summary of a small model) cannot take over; ``fit_view_prior`` picks the prior on
   development questions by coordinate search on recall_all@k.
3. Seeds: the top ``num_seed_nodes`` weighted node scores (negatives clipped) form the reset vector of a
   personalized PageRank over the association graph (``damping`` = probability of following an edge).
4. A session's score is the sum of its nodes' PageRank mass.
Every stage is a pure function, tested on its own."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pydantic import model_validator

from llmrec.config import StrictConfig
from llmrec.llm.base import GenerationParams, warn_if_weak
from llmrec.memory.api import namespace
from llmrec.memory.units import clip_middle
from llmrec.prompts import load_prompt


class MemGASConfig(StrictConfig):
    # any of VIEWS; "summary" / "keywords" need Memory.consolidate (sessions without the unit score lowest)
    """MemGAS settings: views, router temperature, GMM association, PageRank damping, seeds."""
    views: list[str] = ["session", "turn_mean", "turn_max"]
    router_temperature: float = 0.2
    num_seed_nodes: int = 15
    damping: float = 0.1
    gmm_candidates: int = 30
    min_candidates: int = 5  # a node is linked once this many earlier nodes exist
    ppr_iterations: int = 50
    view_prior: dict[str, float] = {}  # view -> weight multiplied into the router's (missing views: 1.0)

    @model_validator(mode="after")
    def _prior_names_views(self) -> "MemGASConfig":
        for g, w in self.view_prior.items():
            if g not in self.views:
                raise ValueError(f"view_prior.{g}: not one of the views {self.views}")
            if not (w >= 0 and math.isfinite(w)):
                raise ValueError(f"view_prior.{g}: must be a finite number >= 0, got {w}")
        if self.view_prior and not any(self.view_prior.get(g, 1.0) > 0 for g in self.views):
            raise ValueError("view_prior: at least one view needs a weight above 0")
        return self


# ------------------------------------------------------------------------------------------ pure stages
def gmm_high_component(x: np.ndarray, iterations: int = 60) -> np.ndarray:
    """Boolean mask of the values assigned to the higher-mean component of a 2-component 1-D GMM (EM)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2 or np.ptp(x) < 1e-12:
        return np.zeros(len(x), dtype=bool)
    mu = np.array([x.min(), x.max()])
    var = np.full(2, max(np.var(x), 1e-6))
    pi = np.array([0.5, 0.5])
    for _ in range(iterations):
        dens = pi * np.exp(-((x[:, None] - mu) ** 2) / (2 * var)) / np.sqrt(2 * np.pi * var)
        resp = dens / np.maximum(dens.sum(1, keepdims=True), 1e-300)
        nk = resp.sum(0) + 1e-12
        mu = (resp * x[:, None]).sum(0) / nk
        var = np.maximum((resp * (x[:, None] - mu) ** 2).sum(0) / nk, 1e-6)
        pi = nk / nk.sum()
    hi = int(np.argmax(mu))
    return resp[:, hi] > 0.5


def router_weights(view_scores: dict[str, np.ndarray], temperature: float,
                   prior: dict[str, float] | None = None) -> dict[str, float]:
    """Normalized-entropy router: lower entropy of softmax(scores / T) -> higher weight, times the view's
    ``prior`` (default 1); weights sum to 1."""
    raw = {}
    for g, s in view_scores.items():
        s = np.asarray(s, dtype=np.float64)
        z = (s - s.max()) / temperature
        p = np.exp(z) / np.exp(z).sum()
        h = -float(np.sum(p * np.log(np.maximum(p, 1e-300))))
        raw[g] = max(1e-6, 1.0 - h / math.log(max(len(s), 2))) * (prior or {}).get(g, 1.0)
    total = sum(raw.values())
    if total <= 0:
        raise ValueError("view_prior: every view of this query has weight 0")
    return {g: w / total for g, w in raw.items()}


def personalized_pagerank(n: int, edges: set[tuple[int, int]], reset: np.ndarray, damping: float,
                          iterations: int) -> np.ndarray:
    """r = (1 - d) * reset + d * P^T r on an undirected graph; dangling mass returns to the reset vector.
    One sparse matrix-vector product per iteration (scipy.sparse)."""
    from scipy.sparse import coo_matrix

    reset = reset / reset.sum() if reset.sum() > 0 else np.full(n, 1.0 / n)
    if edges:
        pairs = np.array(list(edges), dtype=np.int64)
        rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
        cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
        adj = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()  # duplicates summed
    else:
        adj = coo_matrix((n, n)).tocsr()
    deg = np.asarray(adj.sum(axis=1)).ravel()
    has = deg > 0
    inv = np.zeros(n)
    inv[has] = 1.0 / deg[has]
    trans = adj.T.tocsr()
    r = reset.copy()
    for _ in range(iterations):
        r = (1 - damping) * reset + damping * (trans @ (r * inv)) + damping * r[~has].sum() * reset
    return r


# ------------------------------------------------------------------------------------------ the graph
@dataclass
class AssociationGraph:
    """Embedding nodes (session, view) with incrementally maintained GMM edges."""

    keys: list[tuple[str, str]] = field(default_factory=list)  # (session id, view)
    vectors: list[np.ndarray] = field(default_factory=list)
    order: dict[str, int] = field(default_factory=dict)  # session id -> position in time
    edges: set[tuple[int, int]] = field(default_factory=set)

    def update(self, nodes: dict[tuple[str, str], np.ndarray], order: dict[str, int], config: MemGASConfig) -> int:
        """Add new nodes and relink changed ones; returns how many nodes were (re)linked."""
        index = {k: i for i, k in enumerate(self.keys)}
        changed = []
        for key, vec in nodes.items():
            i = index.get(key)
            if i is None:
                index[key] = len(self.keys)
                self.keys.append(key)
                self.vectors.append(vec)
                changed.append(index[key])
            elif not np.allclose(self.vectors[i], vec, atol=1e-6):
                self.vectors[i] = vec
                changed.append(i)
        self.order = dict(order)
        if not changed:
            return 0
        mat = np.stack(self.vectors)
        changed_set = set(changed)
        self.edges = {e for e in self.edges if e[0] not in changed_set and e[1] not in changed_set}
        for i in changed:
            t = self.order[self.keys[i][0]]
            earlier = [j for j, (s, _) in enumerate(self.keys) if self.order.get(s, 1 << 30) < t]
            if len(earlier) < config.min_candidates:
                continue
            sims = mat[earlier] @ mat[i]
            top = np.argsort(-sims)[: config.gmm_candidates]
            keep = gmm_high_component(sims[top])
            for j in np.asarray(earlier)[top][keep]:
                self.edges.add((min(i, int(j)), max(i, int(j))))
        return len(changed)


def memgas_rank(graph: AssociationGraph, sessions: list[str], view_scores: dict[str, np.ndarray],
                config: MemGASConfig) -> list[tuple[str, float]]:
    """Rank sessions: router-weighted node scores -> top seeds -> PPR over the graph -> sum per session.
    ``view_scores[g][i]`` scores session ``sessions[i]`` under view g. Views without graph nodes (BM25,
    best turn) become extra nodes with no edges."""
    weights = router_weights(view_scores, config.router_temperature, config.view_prior)
    keys = list(graph.keys)
    index = {k: i for i, k in enumerate(keys)}
    extra = [(s, g) for g in view_scores for s in sessions if (s, g) not in index]
    for k in extra:
        index[k] = len(keys)
        keys.append(k)
    node_scores = np.zeros(len(keys))
    pos = {s: i for i, s in enumerate(sessions)}
    for g, scores in view_scores.items():
        for s in sessions:
            node_scores[index[(s, g)]] = weights[g] * scores[pos[s]]
    node_scores = np.maximum(node_scores, 0.0)
    reset = np.zeros(len(keys))
    top = np.argsort(-node_scores)[: config.num_seed_nodes]
    reset[top] = node_scores[top]
    if reset.sum() <= 0:
        reset[top] = 1.0
    r = personalized_pagerank(len(keys), graph.edges, reset, config.damping, config.ppr_iterations)
    total: dict[str, float] = {s: 0.0 for s in sessions}
    for (s, _), v in zip(keys, r):
        if s in total:
            total[s] += float(v)
    return sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))


def _dot(mat: np.ndarray, q: np.ndarray) -> np.ndarray:
    """mat @ q through torch: numpy's BLAS threads keep spinning after a call and slowed the embedder's next
    forward pass about 3x on 2 cores (eval/bench_memory.py); torch shares the embedder's thread pool."""
    import torch

    if len(mat) == 0:
        return np.zeros(0, np.float32)
    return (torch.from_numpy(np.ascontiguousarray(mat, np.float32)) @ torch.from_numpy(
        np.ascontiguousarray(q, np.float32))).numpy()


@dataclass
class _Groups:
    """Unit vectors sorted by owning session, for a per-session max with one ``reduceat``."""

    mat: np.ndarray
    starts: np.ndarray  # first row of each owner's block
    owners: np.ndarray  # session position of each block

    @classmethod
    def build(cls, mat: np.ndarray, owner: np.ndarray) -> "_Groups":
        order = np.argsort(owner, kind="stable")
        sorted_owner = owner[order]
        starts = np.flatnonzero(np.r_[True, sorted_owner[1:] != sorted_owner[:-1]]) if len(owner) else owner
        return cls(np.ascontiguousarray(mat[order], np.float32), starts, sorted_owner[starts] if len(owner) else owner)

    def max_scores(self, q: np.ndarray, n: int, fill: np.ndarray | None = None) -> np.ndarray:
        out = np.full(n, -1.0) if fill is None else fill.copy()
        if len(self.mat):
            out[self.owners] = np.maximum.reduceat(_dot(self.mat, q), self.starts)
        return out


_GRAPH_VIEWS = ("session", "turn_mean", "summary", "keywords")  # views that are embedding nodes of the graph
_DENSE_VIEWS = ("session", "turn_mean", "turn_max", "pair_max", "summary", "keywords")
_BM25_VIEWS = {"bm25_session": "session", "bm25_turn": "turn", "bm25_pair": "pair", "bm25_summary": "summary",
               "bm25_keywords": "keywords"}
VIEWS = (*_DENSE_VIEWS, *_BM25_VIEWS)


class MemGAS:
    """MemGAS over a ``Memory``: ``rank_sessions(user_id, query)``. Graphs are cached per user and updated
    incrementally when the store changes."""

    def __init__(self, memory, config: MemGASConfig | None = None) -> None:
        self.memory, self.config = memory, config or MemGASConfig()
        unknown = set(self.config.views) - set(VIEWS)
        if unknown:
            raise ValueError(f"views: unknown views {sorted(unknown)}")
        self._graphs: dict[str, AssociationGraph] = {}
        self._cache: dict[str, tuple[int, dict]] = {}

    def _prepare(self, user_id: str) -> dict:
        store = self.memory.store
        version = store.version(namespace(user_id))
        hit = self._cache.get(user_id)
        if hit is not None and hit[0] == version:
            return hit[1]
        ns = namespace(user_id)
        records = [r for r in store.get(ns, store.ids(ns)) if r is not None]
        sessions: list[str] = []
        turns, turn_sess, sess_vec = [], [], {}
        pairs, pair_sess = [], []
        spos: dict[str, int] = {}
        owner: dict[str, str] = {}  # turn / pair id -> session id
        digest_vec: dict[str, dict[str, np.ndarray]] = {"summary": {}, "keywords": {}}
        for r in records:  # insertion order = time order
            sid = r.metadata.get("session_id")
            if sid is None:
                continue
            if sid not in spos:
                spos[sid] = len(sessions)
                sessions.append(sid)
            if r.metadata.get("granularity") == "session":
                sess_vec[sid] = r.vector
            elif r.metadata.get("granularity") in digest_vec:
                digest_vec[r.metadata["granularity"]][sid] = r.vector
            elif r.metadata.get("granularity") == "turn":
                owner[r.id] = sid
                turns.append(r.vector)
                turn_sess.append(spos[sid])
            elif r.metadata.get("granularity") == "pair":
                owner[r.id] = sid
                pairs.append(r.vector)
                pair_sess.append(spos[sid])
        order = {s: i for i, s in enumerate(sessions)}
        dim = records[0].vector.shape[0] if records else 1
        turn_mat = np.stack(turns) if turns else np.zeros((0, dim), np.float32)
        turn_sess_arr = np.asarray(turn_sess, dtype=np.int64)
        mean_mat = np.zeros((len(sessions), dim), np.float32)
        for i in range(len(sessions)):
            rows = turn_mat[turn_sess_arr == i]
            if len(rows):
                m = rows.mean(0)
                mean_mat[i] = m / max(np.linalg.norm(m), 1e-12)
        sess_mat = np.stack([sess_vec.get(s, mean_mat[i]) for i, s in enumerate(sessions)]) if sessions else mean_mat
        digest_mat = {g: (np.stack([vecs.get(s, np.zeros(dim, np.float32)) for s in sessions]) if sessions
                          else np.zeros((0, dim), np.float32), np.array([s in vecs for s in sessions], bool))
                      for g, vecs in digest_vec.items()}
        nodes = {}
        for i, s in enumerate(sessions):
            if "session" in self.config.views:
                nodes[(s, "session")] = sess_mat[i]
            if "turn_mean" in self.config.views:
                nodes[(s, "turn_mean")] = mean_mat[i]
            for g in ("summary", "keywords"):
                if g in self.config.views and digest_mat[g][1][i]:
                    nodes[(s, g)] = digest_mat[g][0][i]
        graph = self._graphs.setdefault(user_id, AssociationGraph())
        graph.update(nodes, order, self.config)
        pair_mat = np.stack(pairs) if pairs else np.zeros((0, dim), np.float32)
        data = {"sessions": sessions, "turns": _Groups.build(turn_mat, turn_sess_arr), "mean_mat": mean_mat,
                "pairs": _Groups.build(pair_mat, np.asarray(pair_sess, dtype=np.int64)), "owner": owner,
                "sess_mat": sess_mat, "digest_mat": digest_mat, "graph": graph}
        self._cache[user_id] = (version, data)
        return data

    def view_scores(self, user_id: str, query: str, data: dict) -> dict[str, np.ndarray]:
        """Per-view similarity of the query to every node of the user's association graph."""
        n = len(data["sessions"])
        pos = {s: i for i, s in enumerate(data["sessions"])}
        views = set(self.config.views)
        out: dict[str, np.ndarray] = {}
        q = self.memory.embedder.encode([query])[0] if views & set(_DENSE_VIEWS) else None
        if "session" in views:
            out["session"] = _dot(data["sess_mat"], q)
        if "turn_mean" in views:
            out["turn_mean"] = _dot(data["mean_mat"], q)
        if views & {"turn_max", "pair_max"}:
            turn_best = data["turns"].max_scores(q, n)
            if "turn_max" in views:
                out["turn_max"] = turn_best
            if "pair_max" in views:  # sessions with a single turn have no pair: their best turn stands in
                out["pair_max"] = data["pairs"].max_scores(q, n, fill=turn_best)
        for g in ("summary", "keywords"):
            if g in views:
                mat, present = data["digest_mat"][g]
                sc = _dot(mat, q)
                out[g] = np.where(present, sc, sc[present].min() if present.any() else 0.0)
        if views & set(_BM25_VIEWS):
            index = self.memory.bm25_index(user_id)
            for view, group in _BM25_VIEWS.items():
                if view not in views:
                    continue
                s = np.zeros(n)
                scores = index.scores(query, group)
                if group in ("turn", "pair"):  # turn and pair ids do not name their session
                    owner = data["owner"]
                else:  # s-<session>, m-<session>, k-<session>
                    owner = {doc: doc[2:] for doc in scores}
                for doc, v in scores.items():
                    i = pos.get(owner.get(doc))
                    if i is not None:
                        s[i] = max(s[i], v)
                out[view] = s / s.max() if s.max() > 0 else s
        return out

    def retrieve(self, user_id: str, query: str, k: int = 3, llm=None, max_session_chars: int = 2000,
                 max_new_tokens: int = 256) -> "MemGASRetrieval":
        """Top-``k`` sessions, their memories as text and, with ``llm``, the LLM-filtered context (the
        paper's optional filtering stage; K = 3 as there)."""
        return _retrieve(self, user_id, query, k, llm, max_session_chars, max_new_tokens)

    def rank_sessions(self, user_id: str, query: str) -> list[tuple[str, float]]:
        """Every session of the user with its score: entropy-routed views, seeds, personalized PageRank mass."""
        data = self._prepare(user_id)
        if not data["sessions"]:
            return []
        return memgas_rank(data["graph"], data["sessions"], self.view_scores(user_id, query, data), self.config)


def fit_view_prior(memgas: MemGAS, questions: list[tuple[str, str, set[str]]], k: int = 5,
                   grid: tuple[float, ...] = (0.0, 0.25, 1.0), passes: int = 2,
                   progress: bool = False) -> tuple[dict[str, float], float, float]:
    """A per-view prior chosen on development questions ``(user, query, gold sessions)``: coordinate search
    over ``grid`` for each view in turn (``passes`` rounds), keeping a change only when recall_all@k rises.
    The views' scores are computed once per question. Returns (prior, recall before, recall after)."""
    from tqdm.auto import tqdm

    cached = []
    for user, query, gold in tqdm(questions, desc="MemGAS view prior (scores)", disable=not progress):
        data = memgas._prepare(user)
        if data["sessions"]:
            cached.append((data, memgas.view_scores(user, query, data), gold))
    if not cached:
        raise ValueError("questions: no question of a user with sessions to fit the view prior on")
    base = memgas.config

    def recall(prior: dict[str, float]) -> float:
        config = base.model_copy(update={"view_prior": prior})
        hit = 0
        for data, scores, gold in cached:
            top = {s for s, _ in memgas_rank(data["graph"], data["sessions"], scores, config)[:k]}
            hit += gold <= top
        return hit / len(cached)

    prior = {g: base.view_prior.get(g, 1.0) for g in base.views}
    start = best = recall(prior)
    for _ in range(passes):
        changed = False
        for g in tqdm(base.views, desc="MemGAS view prior (search)", disable=not progress):
            for w in grid:
                trial = {**prior, g: w}
                if w == prior[g] or not any(v > 0 for v in trial.values()):
                    continue
                r = recall(trial)
                if r > best:
                    best, prior, changed = r, trial, True
        if not changed:
            break
    return prior, start, best


@dataclass
class MemGASRetrieval:
    """What MemGAS returned for a query: ranked sessions, their text and the LLM-filtered context."""
    sessions: list[tuple[str, float]]  # the top-k sessions with their MemGAS scores
    memories: str  # their text (summary, keywords and turns, session by session), clipped per session
    filtered: str | None  # the LLM's filtered context, when an LLM was given


def filter_memories(llm, questions: list[str], memories: list[str], max_new_tokens: int = 256) -> list[str]:
    """MemGAS's optional last stage: one LLM call per question (batched) keeps only what helps answer it.
    The memories are passed inside a delimited data block; the output is returned as text, never executed."""
    warn_if_weak(llm, "memory filtering")
    if len(questions) != len(memories):
        raise ValueError(f"memories: {len(memories)} memory texts for {len(questions)} questions")
    template = load_prompt("memory_filter")
    prompts = [template.messages({"question": q, "memories": m}) for q, m in zip(questions, memories)]
    return [g.text.strip() for g in llm.generate(prompts, GenerationParams(max_new_tokens=max_new_tokens))]


def session_memories(memory, user_id: str, session_ids: list[str], max_chars: int) -> dict[str, str]:
    """Each session's summary, keywords and turns (in conversation order, clipped) as one text; one metadata
    lookup for all of them."""
    units = {s: {"summary": [], "keywords": [], "turn": []} for s in session_ids}
    records = memory.store.find(namespace(user_id), {"session_id": session_ids}) if session_ids else []
    for r in sorted(records, key=lambda r: r.metadata.get("position", 0)):
        g = units[r.metadata["session_id"]].get(r.metadata.get("granularity"))
        if g is not None:
            g.append(r.text)
    out = {}
    for s in session_ids:
        u = units[s]
        parts = [f"[session {s}]"]
        if u["summary"]:
            parts.append("Summary: " + u["summary"][0])
        if u["keywords"]:
            parts.append("Keywords: " + u["keywords"][0])
        parts.append(clip_middle("\n".join(u["turn"]), max_chars))
        out[s] = "\n".join(parts)
    return out


def _retrieve(memgas: MemGAS, user_id: str, query: str, k: int = 3, llm=None, max_session_chars: int = 2000,
             max_new_tokens: int = 256) -> MemGASRetrieval:
    if not isinstance(k, int) or k <= 0:
        raise ValueError("k: must be a positive integer")
    top = memgas.rank_sessions(user_id, query)[:k]
    text = "\n\n".join(session_memories(memgas.memory, user_id, [s for s, _ in top], max_session_chars).values())
    filtered = filter_memories(llm, [query], [text], max_new_tokens)[0] if llm is not None and top else None
    return MemGASRetrieval(top, text, filtered)
