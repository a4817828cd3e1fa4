import numpy as np
import pytest

from llmrec.memory import Memory
from llmrec.memory.memgas import (AssociationGraph, MemGAS, MemGASConfig, gmm_high_component, memgas_rank,
                                  personalized_pagerank, router_weights)
from llmrec.store import VectorStore


def test_router_weights_prefer_confident_views():
    w = router_weights({"peaked": np.array([1.0, 0.0, 0.0, 0.0]), "flat": np.array([0.5, 0.5, 0.49, 0.5])}, 0.2)
    assert all(v > 0 for v in w.values()) and sum(w.values()) == pytest.approx(1.0)
    assert w["peaked"] > w["flat"]


def test_gmm_keeps_the_higher_component():
    x = np.array([0.9, 0.88, 0.91, 0.2, 0.22, 0.25, 0.18, 0.21])
    assert gmm_high_component(x).tolist() == [True, True, True, False, False, False, False, False]
    assert not gmm_high_component(np.ones(5)).any()


def test_ppr_without_edges_reproduces_the_seed_ranking():
    reset = np.array([0.1, 0.5, 0.0, 0.4])
    r = personalized_pagerank(4, set(), reset, damping=0.1, iterations=30)
    assert np.allclose(r, reset / reset.sum())
    r2 = personalized_pagerank(4, {(2, 1)}, reset, damping=0.5, iterations=100)
    assert r2[2] > 0 and r2.sum() == pytest.approx(1.0)  # mass flows along the edge


def test_graph_updates_incrementally():
    rng = np.random.default_rng(0)
    cfg = MemGASConfig(min_candidates=2)
    g = AssociationGraph()
    vecs = {(str(s), "session"): v / np.linalg.norm(v) for s, v in enumerate(rng.normal(size=(6, 8)))}
    order = {str(s): s for s in range(6)}
    assert g.update(vecs, order, cfg) == 6
    assert g.update(vecs, order, cfg) == 0  # nothing new: nothing relinked
    vecs[("6", "session")] = vecs[("0", "session")]
    order["6"] = 6
    assert g.update(vecs, order, cfg) == 1
    i6, i0 = g.keys.index(("6", "session")), g.keys.index(("0", "session"))
    assert (min(i0, i6), max(i0, i6)) in g.edges  # identical vectors are associated


def test_memgas_ranks_the_right_session(tmp_path, embedder):
    mem = Memory(VectorStore(tmp_path / "s"), embedder)
    topics = ["We talked about adopting a rescue dog named Biscuit.", "Planning a trip to Kyoto in autumn.",
              "My new job as a nurse at the city hospital.", "Learning to bake sourdough bread at home.",
              "The marathon training schedule for spring.", "Repainting the kitchen cabinets green.",
              "Buying a used electric car."]
    for i, t in enumerate(topics):
        mem.add("u", [{"role": "user", "content": t}, {"role": "assistant", "content": "Tell me more!"}],
                session_id=str(i))
    for views in (["session", "turn_mean", "turn_max"], ["session", "turn_mean", "turn_max", "bm25_session",
                                                           "bm25_turn"]):
        mg = MemGAS(mem, MemGASConfig(views=views, min_candidates=2))
        ranked = mg.rank_sessions("u", "What is the name of the dog?")
        assert ranked[0][0] == "0" and len(ranked) == 7
        assert mg.rank_sessions("u", "which city will they visit in autumn?")[0][0] == "1"
    with pytest.raises(ValueError, match="views"):
        MemGAS(mem, MemGASConfig(views=["nope"]))


def test_personalized_pagerank_matches_the_reference_loop():
    """The sparse-matrix PageRank equals the plain definition (neighbour lists, dangling mass to reset)."""
    import numpy as np

    from llmrec.memory.memgas import personalized_pagerank

    def reference(n, edges, reset, d, iters):
        reset = reset / reset.sum()
        nbrs = [[] for _ in range(n)]
        for a, b in edges:
            nbrs[a].append(b)
            nbrs[b].append(a)
        r = reset.copy()
        for _ in range(iters):
            nxt = (1 - d) * reset
            dangling = 0.0
            for i in range(n):
                if nbrs[i]:
                    for j in nbrs[i]:
                        nxt[j] += d * r[i] / len(nbrs[i])
                else:
                    dangling += d * r[i]
            r = nxt + dangling * reset
        return r

    rng = np.random.default_rng(0)
    n = 40
    edges = {(int(a), int(b)) for a, b in rng.integers(0, n - 5, size=(90, 2))}  # 5 dangling nodes, self loops
    reset = rng.random(n)
    got = personalized_pagerank(n, edges, reset, 0.85, 25)
    np.testing.assert_allclose(got, reference(n, edges, reset, 0.85, 25), atol=1e-12)
    assert abs(got.sum() - 1) < 1e-9
