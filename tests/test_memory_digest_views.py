"""Digest views that help or step aside: the extractive (no-LLM) digester, MemGAS view priors and their fit on
development questions."""
import numpy as np
import pytest
from pydantic import ValidationError

from llmrec.memory import Memory
from llmrec.memory.api import namespace
from llmrec.memory.memgas import MemGAS, MemGASConfig, fit_view_prior, router_weights
from llmrec.memory.units import ExtractiveConfig, ExtractiveDigester, SessionDigest
from llmrec.store import VectorStore

TOPICS = ["We talked about adopting a rescue dog named Biscuit.", "Planning a trip to Kyoto in autumn.",
          "My new job as a nurse at the city hospital.", "Learning to bake sourdough bread at home.",
          "The marathon training schedule for spring.", "Repainting the kitchen cabinets green."]
QUESTIONS = ["What is the name of the dog?", "Which city will they visit in autumn?", "Where does she work as a nurse?",
             "What kind of bread is she baking?", "When is the marathon?", "What colour are the cabinets?"]


class ShiftedDigester:
    """A digester that is confidently wrong: each session's summary is the NEXT session's topic (what a
    small LLM's fluent but unfaithful summary does to a view)."""
    config = ExtractiveConfig()
    model_id = "shifted"

    def digest(self, sessions, dates=None):
        out = []
        for s in sessions:
            i = next(j for j, t in enumerate(TOPICS) if t in s)
            out.append(SessionDigest(TOPICS[(i + 1) % len(TOPICS)], [f"word{i}"]))
        return out


def _memory(tmp_path, embedder, digester):
    mem = Memory(VectorStore(tmp_path / "s"), embedder, digester=digester)
    for i, t in enumerate(TOPICS):
        mem.add("u", [{"role": "user", "name": "Ana", "content": t},
                      {"role": "user", "name": "Ben", "content": "Tell me more about that!"}], session_id=str(i))
    mem.consolidate("u", progress=False)
    return mem


def test_router_prior_scales_and_can_silence_a_view():
    scores = {"a": np.array([1.0, 0.0, 0.0]), "b": np.array([0.0, 1.0, 0.0])}
    even = router_weights(scores, 0.2)
    assert even["a"] == pytest.approx(even["b"])
    w = router_weights(scores, 0.2, {"a": 0.25})
    assert w["a"] == pytest.approx(0.2) and w["b"] == pytest.approx(0.8)
    assert router_weights(scores, 0.2, {"b": 0.0})["b"] == 0.0


def test_view_prior_is_validated_naming_the_field():
    with pytest.raises(ValidationError, match="view_prior.summary"):
        MemGASConfig(views=["turn_mean"], view_prior={"summary": 1.0})
    with pytest.raises(ValidationError, match="view_prior.turn_mean"):
        MemGASConfig(views=["turn_mean"], view_prior={"turn_mean": -1.0})
    with pytest.raises(ValidationError, match="at least one view"):
        MemGASConfig(views=["turn_mean", "summary"], view_prior={"turn_mean": 0.0, "summary": 0.0})


def test_extractive_digester_picks_central_distinct_turns_in_order(embedder):
    d = ExtractiveDigester(embedder, ExtractiveConfig(turns=2, max_keywords=4))
    turns = ["Ana: I adopted a rescue dog named Biscuit last week.", "Ben: Oh nice.",
             "Ana: Biscuit is a beagle and loves long walks with the dog park crowd.", "Ben: Ok.",
             "Ana: The dog sleeps on my bed, Biscuit snores."]
    keep = d.key_turns(turns)
    assert len(keep) == 2 and keep == sorted(keep) and all(turns[i].startswith("Ana") for i in keep)
    kw = d.keywords(turns)  # three mentions each; "dog" was seen first
    assert kw[:2] == ["dog", "Biscuit"] and not {"ana", "ben", "the", "and"} & {k.lower() for k in kw}
    out = d.digest(["\n".join(turns), "Ana: short."])
    assert out[0].summary.splitlines() == [turns[i] for i in keep] and out[1].summary == "Ana: short."
    with pytest.raises(ValueError, match="dates"):
        d.digest(["a"], ["x", "y"])


def test_consolidate_with_the_extractive_digester_and_redo_when_the_digester_changes(embedder, tmp_path):
    mem = _memory(tmp_path, embedder, ExtractiveDigester(embedder))
    recs = mem.store.find(namespace("u"), {"granularity": "summary"})
    assert len(recs) == len(TOPICS) and all(r.metadata["model_id"].startswith("extractive:") for r in recs)
    assert mem.consolidate("u", progress=False) == 0  # nothing changed
    mem.digester = ExtractiveDigester(embedder, ExtractiveConfig(turns=1))
    assert mem.consolidate("u", progress=False) == len(TOPICS)  # another digester: every session redone


def test_fitted_prior_weighs_out_a_confidently_wrong_view(embedder, tmp_path):
    mem = _memory(tmp_path, embedder, ShiftedDigester())
    questions = [("u", q, {str(i)}) for i, q in enumerate(QUESTIONS)]
    mg = MemGAS(mem, MemGASConfig(views=["turn_max", "summary"], min_candidates=2, router_temperature=0.05))
    prior, before, after = fit_view_prior(mg, questions, k=1)
    assert after > before and after == 1.0
    assert prior["summary"] < prior["turn_max"]
    fitted = MemGAS(mem, mg.config.model_copy(update={"view_prior": prior}))
    assert [fitted.rank_sessions("u", q)[0][0] for _, q, _ in questions] == [str(i) for i in range(len(TOPICS))]
