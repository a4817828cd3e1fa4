"""Issue 6: reranker protocol, RADIO pieces (fusion, sampler, groups, InfoNCE training with resume), QA data."""
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import shared
from llmrec.cli import app
from llmrec.rerank import BiEncoderReranker, Candidate, CrossEncoderConfig, CrossEncoderReranker, fuse, sample_group
from llmrec.rerank import radio
from llmrec.metrics import minmax
from llmrec.rerank.radio import GroupTrainConfig, RADIOConfig, TrainingQuery, build_groups, train_reranker


def test_fusion_is_the_formula():
    rat, ret = np.array([0.2, 0.9, 0.5, 0.4]), np.array([10.0, 2.0, 6.0, 4.0])
    expect = 0.5 * (rat - 0.2) / 0.7 + 0.5 * (ret - 2.0) / 8.0
    assert np.allclose(fuse(rat, ret, 0.5), expect)
    assert np.allclose(fuse(rat, ret, 0.0), (ret - 2) / 8) and np.allclose(fuse(rat, ret, 1.0), (rat - 0.2) / 0.7)
    assert np.array_equal(minmax(np.array([3.0, 3.0])), np.zeros(2))
    with pytest.raises(ValueError, match="scores: 2 rationale scores vs 1"):
        fuse(np.ones(2), np.ones(1))


def test_sampler_takes_rank_one_and_the_paper_negative_ranks():
    ranked = [Candidate(f"d{r}", f"text {r}") for r in range(1, 26)]
    pos, negs = sample_group(ranked, RADIOConfig().negative_ranks, truncate=20)
    assert pos.id == "d1" and [n.id for n in negs] == ["d4", "d5", "d7", "d10", "d14", "d19"]
    pos, negs = sample_group(ranked[:8], [4, 5, 7, 10, 14, 19])  # short list: ranks past the end are skipped
    assert [n.id for n in negs] == ["d4", "d5", "d7"]
    with pytest.raises(ValueError, match="need at least 2"):
        sample_group(ranked[:1], [4])


def test_bad_input_names_the_row(embedder):
    bi = BiEncoderReranker(embedder)
    with pytest.raises(ValueError, match="candidates: empty candidate list"):
        bi.rerank("a question", [])
    with pytest.raises(ValueError, match=r"candidates\[1\].id: duplicated id 'x'"):
        bi.rerank("a question", [Candidate("x", "a"), Candidate("x", "b")])
    cands = [Candidate(str(i), f"passage {i}", score=1.0 - i / 10) for i in range(8)]
    qs = [TrainingQuery("q1", "what?", "an answer", cands), TrainingQuery("q2", "who?", "  ", cands)]
    with pytest.raises(ValueError, match=r"queries\[1\] \(id 'q2'\).answer: missing gold answer"):
        build_groups(qs, RADIOConfig(alpha=0.0))
    dup = [qs[0], TrainingQuery("q1", "again?", "x", cands)]
    with pytest.raises(ValueError, match=r"queries\[1\].id: duplicated query id 'q1'"):
        build_groups(dup, RADIOConfig(alpha=0.0))
    with pytest.raises(ValueError, match=r"queries\[0\] \(id 'q3'\).candidates: empty candidate list"):
        build_groups([TrainingQuery("q3", "why?", "because", [])], RADIOConfig(alpha=0.0))


def test_bi_encoder_reranks_by_meaning(embedder):
    cands = [Candidate("a", "The stock market fell sharply on Monday.", 0.9),
             Candidate("b", "Cats are small domesticated carnivorous mammals.", 0.1)]
    out = BiEncoderReranker(embedder).rerank("What kind of animal is a cat?", cands)
    assert [c.id for c in out] == ["b", "a"] and out[0].retrieval_score == 0.1


def test_rationale_fusion_moves_the_answer_bearing_passage_to_the_top(embedder):
    """The retriever prefers a lexically similar distractor; the rationale (which knows the answer) does not."""
    cands = [Candidate("distractor", "The Eiffel Tower in Paris is visited by millions of tourists every year.", 0.6),
             Candidate("gold", "Gustave Eiffel's company designed and built the tower, completed in 1889.", 0.5)]
    cands += [Candidate(f"n{i}", f"Unrelated passage number {i} about farming and weather.", 0.3 - i / 100)
              for i in range(10)]
    q = TrainingQuery("q", "Who built the Eiffel Tower?", "Gustave Eiffel's company",
                      cands)
    rationales = {"q": "Gustave Eiffel's engineering company designed and constructed the tower for the 1889 fair."}
    radio_g = build_groups([q], RADIOConfig(), embedder, rationales)[0]
    retr_g = build_groups([q], RADIOConfig(alpha=0.0))[0]
    assert retr_g.positive.id == "distractor" and radio_g.positive.id == "gold"
    with pytest.raises(ValueError, match="alpha > 0: rationale scores need an embedder and rationales"):
        build_groups([q], RADIOConfig())


class _CountingScorer:
    """Passes score_options through to the real LLM, counting the prompts it scored."""

    def __init__(self, llm) -> None:
        self.llm, self.prompts = llm, 0
        self.model_id, self.option_scoring = llm.model_id, llm.option_scoring

    def score_options(self, prompts, options, prefix="", batch_size=None):
        self.prompts += len(prompts)
        return self.llm.score_options(prompts, options, prefix=prefix, batch_size=batch_size)


def test_likelihood_rationale_scoring_prefers_the_supporting_passage_and_is_cached(llm, tmp_path):
    cands = [Candidate("distractor", "The Eiffel Tower in Paris is visited by millions of tourists every year.", 0.6),
             Candidate("gold", "Gustave Eiffel's company designed and built the tower, completed in 1889.", 0.5),
             Candidate("far", "Wheat farming in Kansas depends on spring rain.", 0.4)]
    q = TrainingQuery("q", "Who built the Eiffel Tower?", "Gustave Eiffel's company", cands)
    rationales = {"q": "The passage says Gustave Eiffel's company designed and built the tower."}
    counting = _CountingScorer(llm)
    cfg = RADIOConfig(rationale_scoring="likelihood", negative_ranks=[2, 3])
    scores = radio.likelihood_rationale_scores(counting, [q], rationales, tmp_path, cfg, progress=False)
    assert scores["q"].shape == (3,) and (scores["q"] < 0).all() and counting.prompts == 3
    assert scores["q"][1] == scores["q"].max()  # the passage that supports the rationale makes it likeliest
    assert build_groups([q], cfg, likelihoods=scores)[0].positive.id == "gold"
    again = radio.likelihood_rationale_scores(counting, [q], rationales, tmp_path, cfg, progress=False)
    assert counting.prompts == 3 and np.allclose(again["q"], scores["q"])  # from the cache, no LLM call
    with pytest.raises(ValueError, match="no likelihood scores for query 'q'"):
        build_groups([q], cfg, likelihoods={})


def _toy_groups(n: int, seed: int = 0):
    """Queries ask for a colour; the positive passage names it, negatives name other colours."""
    colours = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"]
    rng = np.random.default_rng(seed)
    groups = []
    for i in range(n):
        c = colours[i % len(colours)]
        others = [x for x in colours if x != c]
        negs = [Candidate(f"{i}-{k}", f"the box is {o}") for k, o in enumerate(rng.choice(others, 6, replace=False))]
        groups.append(radio.Group(str(i), f"which box is {c}?", Candidate(f"{i}-p", f"the box is {c}"), negs))
    return groups


def _accuracy(rr, groups) -> float:
    hits = 0
    for g in groups:
        out = rr.rerank(g.query, [g.positive, *g.negatives])
        hits += out[0].id == g.positive.id
    return hits / len(groups)


@pytest.mark.slow
def test_infonce_training_learns_and_resumes_exactly(tmp_path):
    train, held = _toy_groups(32), _toy_groups(16, seed=1)
    cfg = CrossEncoderConfig(max_length=24)
    torch.manual_seed(0)
    rr = CrossEncoderReranker(cfg)
    before = _accuracy(rr, held)
    tc = GroupTrainConfig(epochs=2, groups_per_step=4, learning_rate=1e-4, checkpoint_every=3, progress=False)
    info = train_reranker(rr, train, tc)
    after = _accuracy(rr, held)
    assert info["steps"] == 16 and info["final_loss"] < info["first_loss"]
    assert after >= 0.9 and after > before + 0.3, (before, after)

    # a run that dies at step 7 (after the step-6 checkpoint) resumes there and ends with identical weights
    class Dying:
        def __init__(self, inner, die_at):
            self.inner, self.die_at, self.calls = inner, die_at, 0

        def trainable(self):
            return self.inner.trainable()

        def pair_logits(self, q, t):
            self.calls += 1
            if self.calls == self.die_at:
                raise KeyboardInterrupt("killed")
            return self.inner.pair_logits(q, t)

    torch.manual_seed(0)
    a = CrossEncoderReranker(cfg)
    with pytest.raises(KeyboardInterrupt):
        train_reranker(Dying(a, 8), train, tc, checkpoint_dir=tmp_path)
    torch.manual_seed(123)  # a fresh process: other RNG state, fresh model
    b = CrossEncoderReranker(cfg)
    info_b = train_reranker(b, train, tc, checkpoint_dir=tmp_path)
    assert info_b["resumed_from_step"] == 6 and info_b["steps"] == 16
    torch.manual_seed(0)
    ref = CrossEncoderReranker(cfg)
    train_reranker(ref, train, tc)
    for (n, p), (_, q) in zip(b.model.named_parameters(), ref.model.named_parameters()):
        assert torch.allclose(p, q, atol=1e-6), n


def test_inference_never_touches_rationales(embedder, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("inference used a rationale (it depends on the gold answer)")

    monkeypatch.setattr(radio, "rationale_scores", forbidden)
    monkeypatch.setattr(radio, "extract_rationales", forbidden)
    rr = CrossEncoderReranker(CrossEncoderConfig(max_length=32))
    out = rr.rerank("who built it?", [Candidate("a", "Eiffel built it", 0.2), Candidate("b", "rain today", 0.8)], k=1)
    assert len(out) == 1 and out[0].retrieval_score in (0.2, 0.8)


def test_qa_loaders_and_query_split():
    from llmrec.data.qa import load_ares_nq, load_mtrag

    ares = load_ares_nq(shared("ares_nq_synthetic"))
    mtrag = load_mtrag(shared("mtrag_human_eval"))
    assert len(ares.queries) == 1000 and all(q.answers and q.gold for q in ares.queries)
    assert len(mtrag.passages) == 350 and all(g in mtrag.passages for q in mtrag.queries for g in q.gold)
    both = ares.merge(mtrag)
    tr, dv, te = both.split((0.6, 0.2, 0.2), seed=0)
    ids = [{q.id for q in part} for part in (tr, dv, te)]
    assert sum(map(len, ids)) == len(both.queries) and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    with pytest.raises(ValueError, match="passages: ids in both corpora"):
        both.merge(mtrag)


@pytest.mark.slow
def test_rerank_cli_train_resume_and_eval(tmp_path):
    mtrag = shared("mtrag_human_eval")
    out = tmp_path / "run"
    args = ["rerank", "train", "--mtrag", str(mtrag), "--labels", "retrieval", "--out", str(out),
            "--train-queries", "8", "--epochs", "1", "--max-length", "64"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    info = json.loads((out / "training.json").read_text())
    assert info["groups"] == 8 and info["steps"] == 2 and (out / "model").exists()
    groups = [json.loads(line) for line in (out / "groups.jsonl").read_text().splitlines()]
    assert len(groups[0]["neg"]) == 6 and len(groups[0]["pos"]) == 1
    res = CliRunner().invoke(app, args)  # finished checkpoint: resumes at the end, trains nothing
    assert res.exit_code == 0 and json.loads((out / "training.json").read_text())["resumed_from_step"] == 2
    res = CliRunner().invoke(app, ["rerank", "eval", "--mtrag", str(mtrag), "--model-dir", str(out / "model"),
                                   "--limit", "5", "--max-length", "64"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    assert m["n"] == 5 and 0 <= m["ndcg@5"] <= 1 and m["recall@5"] >= m["recall@1"]


@pytest.mark.slow
def test_llm_reranker_lora_trains_only_adapters():
    pytest.importorskip("peft")
    from llmrec.rerank.llm_reranker import LLMReranker, LLMRerankerConfig

    rr = LLMReranker(LLMRerankerConfig(max_length=48))
    base = {n: p.detach().clone() for n, p in rr.model.named_parameters()}
    groups = _toy_groups(8)
    before = rr.score(groups[0].query, [groups[0].positive.text, groups[0].negatives[0].text])
    net = rr.trainable()
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    info = train_reranker(rr, groups, GroupTrainConfig(epochs=2, groups_per_step=4, learning_rate=1e-3,
                                                       progress=False))
    assert info["steps"] == 4 and info["final_loss"] < info["first_loss"]
    after = rr.score(groups[0].query, [groups[0].positive.text, groups[0].negatives[0].text])
    assert not np.allclose(before, after)
    for n, p in rr.model.named_parameters():  # the frozen base weights did not move
        if "lora_" not in n:
            key = n.replace("base_model.model.", "").replace(".base_layer", "")
            if key in base:
                assert torch.equal(p, base[key]), n
