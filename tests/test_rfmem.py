import numpy as np
import pytest

from llmrec.memory import Memory
from llmrec.memory.rfmem import RFMem, RFMemConfig, familiarity, kmeans
from llmrec.store import VectorStore


def test_familiarity_decision():
    c = RFMemConfig(theta_hi=0.6, theta_lo=0.1, theta_h=0.1, beta=20)
    assert familiarity(np.array([0.9, 0.8, 0.7]), c)[0] == "familiarity"
    assert familiarity(np.array([0.05, 0.02]), c)[0] == "recollection"
    assert familiarity(np.array([]), c)[0] == "recollection"
    path, mean, h = familiarity(np.array([0.5, 0.1, 0.1, 0.1]), c)  # one clear winner: low entropy
    flat_path, _, flat_h = familiarity(np.array([0.3, 0.3, 0.3, 0.3]), c)
    assert h < flat_h and path == "familiarity" and flat_path == "recollection"
    assert mean == pytest.approx(0.2)


def test_kmeans_separates_clusters():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.05, (10, 3)) + [1, 0, 0], rng.normal(0, 0.05, (10, 3)) + [0, 1, 0]])
    labels = kmeans(x, 2)
    assert len(set(labels[:10])) == 1 and len(set(labels[10:])) == 1 and labels[0] != labels[10]


def test_rfmem_paths_over_memory(tmp_path, embedder):
    mem = Memory(VectorStore(tmp_path / "s"), embedder)
    facts = ["Maya's daughter plays the violin.", "Maya moved to Denver in 2021.", "Maya loves hiking in the Rockies.",
             "Maya's violin teacher is called Mr. Ortiz.", "Maya works as an architect.", "Maya's dog is a beagle."]
    for i, f in enumerate(facts):
        mem.add("maya", f, session_id=str(i))
    fast = RFMem(mem, RFMemConfig(theta_hi=-1.0)).retrieve("maya", "Who teaches the violin?", k=3)
    assert fast.path == "familiarity"
    dense = [h.id for h in mem.search("maya", "Who teaches the violin?", k=3, method="dense")]
    assert [h.id for h in fast.hits] == dense
    slow = RFMem(mem, RFMemConfig(theta_hi=2.0, theta_lo=1.5)).retrieve("maya", "Who teaches the violin?", k=4)
    assert slow.path == "recollection"
    ids = [h.id for h in slow.hits]
    assert len(ids) == len(set(ids)) == 4
    assert any("Ortiz" in h.text for h in slow.hits)
    with pytest.raises(ValueError, match="k: must be a positive"):
        RFMem(mem).retrieve("maya", "x", k=0)


def test_rfmem_over_turns_and_pairs_stays_in_the_user(tmp_path, embedder):
    mem = Memory(VectorStore(tmp_path / "s"), embedder)
    mem.add("maya", [{"role": "user", "content": "My violin teacher is Mr. Ortiz."},
                     {"role": "assistant", "content": "How long have you studied with him?"},
                     {"role": "user", "content": "Three years, every Tuesday."}], session_id="a")
    mem.add("tom", [{"role": "user", "content": "My violin teacher is Ms. Lee."},
                    {"role": "assistant", "content": "Nice."}], session_id="a")
    cfg = RFMemConfig(granularity=["turn", "pair"], theta_hi=2.0, theta_lo=1.5, beam=3, fanout=2, mmr_lambda=0.95)
    res = RFMem(mem, cfg).retrieve("maya", "Who teaches the violin?", k=5)
    assert res.path == "recollection" and len(res.hits) == 5  # 3 turns + 2 pairs of maya
    kinds = {h.metadata["granularity"] for h in res.hits}
    assert kinds == {"turn", "pair"} and all("Lee" not in h.text for h in res.hits)
    assert "Ortiz" in res.hits[0].text
