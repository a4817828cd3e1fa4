"""Getting signal out of the small model: encoder-role (text) knowledge, the validation gate, the expected-score
judge, and the judge experiment's conversation split and calibration map."""
import json

import numpy as np
import pytest

from llmrec.data.synthetic import SyntheticConfig, generate_world
from llmrec.experiments.harness import ExperimentConfig, run_experiment
from llmrec.experiments.judge import conversation_split, heldout_pairs, pairwise_agreement, quantile_map
from llmrec.knowledge.text import knowledge_texts, text_knowledge

TINY = {"n_users": 40, "n_items": 40, "impressions_per_user": 12}


def test_text_knowledge_encodes_prompt_texts_and_caches(tmp_path, embedder):
    data = generate_world(SyntheticConfig(**TINY))
    train = data.chronological_split()[0]
    texts = knowledge_texts(data, train, "item")
    some = next(iter(texts))
    assert data.item_info[some]["description"] in texts[some]  # the item's own text, no generation
    user_texts = knowledge_texts(data, train, "user")
    assert any("history" in t for t in user_texts.values())
    tabs = text_knowledge(data, train, ["item", "user"], embedder, cache_dir=tmp_path)
    assert set(tabs["item"]) == set(texts) and next(iter(tabs["item"].values())).shape == (embedder.dim,)
    np.testing.assert_allclose(tabs["item"][some], embedder.encode([texts[some]])[0], atol=1e-5)
    cached = list(tmp_path.glob("item.*.npz"))
    assert cached and text_knowledge(data, train, ["item"], embedder, cache_dir=tmp_path)["item"][some].shape


@pytest.mark.slow
def test_validation_gate_reports_its_decision_and_uses_the_chosen_runs(tmp_path):
    exp = ExperimentConfig.model_validate({
        "name": "gate_test", "seeds": [1], "isolate": False,
        "datasets": {"tiny": {"data": {"source": "synthetic", "synthetic": TINY},
                              "trainer": {"epochs": 2, "batch_size": 128}}},
        "variants": [{"model": {"name": "lr"}},
                     {"label": "lr+text gated", "model": {"name": "lr"},
                      "knowledge": {"source": "text", "kinds": ["item", "user"]}, "gate": {"min_gain": 0.0}}]})
    res = run_experiment(exp, out=tmp_path / "r.json")
    g = res["datasets"]["tiny"]["variants"]["lr+text gated"]["gate"]
    assert set(g) >= {"kept", "candidate", "valid_backbone", "valid_candidate", "noise", "valid_by_subset"}
    assert "(backbone)" in g["valid_by_subset"] and g["runs_trained"] >= 2
    assert set(g["kept"]) <= {"item", "user"}
    if not g["kept"]:  # the gate fell back: the variant's test result is the backbone's own run
        base = res["datasets"]["tiny"]["variants"]["lr"]
        assert res["datasets"]["tiny"]["variants"]["lr+text gated"]["auc_mean"] == pytest.approx(base["auc_mean"])
    else:
        assert g["valid_candidate"] > g["valid_backbone"] + g["noise"]
    assert json.loads((tmp_path / "r.json").read_text())["datasets"]["tiny"]["variants"]["lr+text gated"]["gate"]


def test_gate_needs_knowledge():
    with pytest.raises(ValueError, match="gate"):
        ExperimentConfig.model_validate({"name": "x", "datasets": {"d": {}}, "variants": [
            {"model": {"name": "lr"}, "gate": {}}]})


def test_expected_score_judge_probabilities(llm):
    from llmrec.eval.judge import ExpectedScoreJudge, JudgeItem

    j = ExpectedScoreJudge(llm, "faithfulness")
    items = [JudgeItem("Where is the Eiffel Tower?", "It is in Paris.", documents=["The Eiffel Tower is in Paris."]),
             JudgeItem("Where is the Eiffel Tower?", "It is in Rome.", documents=["The Eiffel Tower is in Paris."])]
    p = j.probabilities(items)
    assert p.shape == (2, 5) and np.allclose(p.sum(1), 1) and (p >= 0).all()
    out = j.judge_many(items)
    assert all(1 <= o.score <= 5 and o.parsed == "expected" for o in out)
    assert out[0].score == pytest.approx(float(p[0] @ np.arange(1, 6)))


def test_pairwise_likelihood_preferences_are_probabilities_in_both_orders(llm):
    from llmrec.eval.judge import JudgeItem, PairwiseJudge

    good = JudgeItem("Where is the Eiffel Tower?", "It is in Paris.", documents=["The Eiffel Tower is in Paris."])
    bad = JudgeItem("Where is the Eiffel Tower?", "It is in Rome.", documents=["The Eiffel Tower is in Paris."])
    p = PairwiseJudge(llm, "faithfulness").preferences([(good, bad), (bad, good)])
    assert p.shape == (2, 2) and ((p > 0) & (p < 1)).all()
    # the second pair is the first swapped: its A/B order is the first pair's B/A order, seen from the other side
    assert p[1, 0] == pytest.approx(1 - p[0, 1], abs=1e-4) and p[1, 1] == pytest.approx(1 - p[0, 0], abs=1e-4)


def test_pairwise_agreement_counts_consistency_accuracy_and_position_bias():
    # pair 0: first wins in both orders (consistent, humans agree); pair 1: whoever is shown first wins
    # (inconsistent); pair 2: second wins in both orders but humans preferred the first (consistent, wrong)
    wins = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    r = pairwise_agreement(wins, np.array([True, True, True]))
    assert r["pairs"] == 3 and r["position_consistency"] == pytest.approx(2 / 3)
    assert r["accuracy_consistent"] == pytest.approx(0.5)
    assert r["accuracy_debiased"] == pytest.approx((1 + 0.5 + 0) / 3)  # pair 1 undecided after debiasing
    assert r["first_position_win_share"] == pytest.approx(4 / 6)  # first-shown won 1+1+0 and 0+1+1 times
    assert pairwise_agreement(np.zeros((0, 2)), np.zeros(0, bool)) == {"pairs": 0}


def test_heldout_pairs_are_same_task_differing_humans_only():
    meta = [{"task_id": t} for t in ("a", "a", "a", "b", "b", "c")]
    human = np.array([1.0, 2.0, 2.0, 3.0, 3.0, 1.0])
    held = np.array([True, True, True, True, True, False])
    assert heldout_pairs(meta, human, held, 10, seed=0) == [(0, 1), (0, 2)]
    assert len(heldout_pairs(meta, human, held, 1, seed=0)) == 1


def test_conversation_split_keeps_conversations_whole_and_quantile_map_is_monotone():
    meta = [{"task_id": f"c{c}<::>{t}"} for c in range(10) for t in range(3)]
    fit = conversation_split(meta, 0.5, seed=0)
    by_conv = {}
    for m, f in zip(meta, fit):
        by_conv.setdefault(m["task_id"].split("<::>")[0], set()).add(bool(f))
    assert all(len(v) == 1 for v in by_conv.values()) and fit.sum() == 15
    assert (conversation_split(meta, 0.5, seed=0) == fit).all()
    rng = np.random.default_rng(0)
    s = rng.random(200)
    labels = rng.integers(1, 5, 200)
    mapped = quantile_map(s, labels, np.sort(s))
    assert set(mapped) <= {1.0, 2.0, 3.0, 4.0} and (np.diff(mapped) >= 0).all()


def test_option_knowledge_is_a_distribution_per_item_and_cached(tmp_path, llm):
    from llmrec.knowledge.text import option_knowledge

    data = generate_world(SyntheticConfig(n_users=6, n_items=6, impressions_per_user=8))
    train = data.chronological_split()[0]
    opts = ["cozy", "adventurous", "minimalist", "luxurious", "playful", "scholarly"]
    rep: dict = {}
    tabs = option_knowledge(data, train, ["item"], llm, opts, cache_dir=tmp_path, report=rep)
    v = np.stack(list(tabs["item"].values()))
    assert v.shape == (6, 6) and np.allclose(v.sum(1), 1, atol=1e-5) and (v > 0).all()
    assert rep["item"]["scored"] == 6 and rep["item"]["options_per_second"] > 0
    again: dict = {}
    tabs2 = option_knowledge(data, train, ["item"], llm, opts, cache_dir=tmp_path, report=again)
    assert again["item"]["scored"] == 0  # cached by text hash
    np.testing.assert_allclose(np.stack(list(tabs2["item"].values())), v)


def test_adaptor_weight_decay_is_its_own_parameter_group_and_shrinks_it():
    import torch

    from llmrec.ctr.adaptor import AdaptorConfig, KnowledgeAdaptor
    from llmrec.train.optim import param_groups

    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"head": torch.nn.Linear(4, 1), "adaptor": KnowledgeAdaptor(
        {"item": 8}, 4, AdaptorConfig(kind="mlp", hidden_units=[16], weight_decay=0.5))})
    groups = param_groups(model)
    adaptor_ids = {id(p) for p in model["adaptor"].parameters()}
    assert [g["weight_decay"] for g in groups] == [0.0, 0.5]
    assert {id(p) for p in groups[1]["params"]} == adaptor_ids
    assert not adaptor_ids & {id(p) for p in groups[0]["params"]}
    plain = param_groups(torch.nn.ModuleDict({"adaptor": KnowledgeAdaptor({"item": 8}, 4, AdaptorConfig())}))
    assert len(plain) == 1 and plain[0]["weight_decay"] == 0.0

    def norm_after(wd: float) -> float:  # the same zero-gradient steps with and without decay
        torch.manual_seed(0)
        a = KnowledgeAdaptor({"item": 8}, 4, AdaptorConfig(kind="mlp", hidden_units=[16], weight_decay=wd))
        opt = torch.optim.Adam(param_groups(a), lr=0.01)
        for _ in range(20):
            opt.zero_grad()
            (0.0 * a({"item": torch.ones(2, 8)}).sum()).backward()
            opt.step()
        return float(sum(p.pow(2).sum() for p in a.parameters()))

    assert norm_after(0.5) < 0.9 * norm_after(0.0)
