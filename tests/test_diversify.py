"""The diversify family (MDP-DIV, papers.md §33): alpha-NDCG against a hand computation, the diversity view
(named error for a query without subtopics, the TREC qrels reader), MMR, the policy's kNN pruning and NTN
prior, REINFORCE learning a planted diversification task, episodes-to-95%, and the experiment end to end."""
import json

import numpy as np
import pytest
import torch

from conftest import shared
from llmrec.data.diversity import DiversityError, DiversityQuery, read_trec_qrels
from llmrec.data.schema import DataFormatError
from llmrec.experiments.diversify import DiversifyExperiment, run_diversify
from llmrec.metrics import alpha_ndcg_at, greedy_ideal
from llmrec.models import build_model, describe_models
from llmrec.train.policy_gradient import PolicyGradientConfig, episodes_to, evaluate_policy, pretrain_ntn, train_reinforce


def test_alpha_ndcg_by_hand():
    j = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0]], float)
    # ranking 1, 0, 2 with alpha = 0.5: gains 1, 0.5 + 1, 1 -> DCG = 1 + 1.5/log2(3) + 1/2
    dcg = 1 + 1.5 / np.log2(3) + 0.5
    assert greedy_ideal(j, 3) == [0, 2, 1]  # ideal: 2, then 1, then 0.5 -> 2 + 1/log2(3) + 0.5/2
    ideal = 2 + 1 / np.log2(3) + 0.25
    assert alpha_ndcg_at([1, 0, 2], j, 3, 0.5) == pytest.approx(dcg / ideal)
    assert alpha_ndcg_at([0, 2, 1], j, 3) == pytest.approx(1.0)
    assert alpha_ndcg_at([3], np.zeros((4, 3)), 3) == 0.0


def planted_query(rng, qid, n=30, topics=5, dim=8):
    """Docs in `topics` tight clusters (one subtopic each, some duplicates), half of each cluster relevant."""
    centers = rng.normal(size=(topics, dim)) * 3
    topic = rng.integers(0, topics, n)
    feats = centers[topic] + 0.1 * rng.normal(size=(n, dim))
    relevant = rng.random(n) < 0.6
    feats[:, -1] = relevant * 2.0  # the last feature says relevance
    j = np.zeros((n, topics))
    j[np.arange(n), topic] = relevant
    return DiversityQuery(qid, feats.mean(0), np.array([f"d{i}" for i in range(n)]), feats.astype(np.float32), j,
                          [f"t{k}" for k in range(topics)])


def test_a_query_without_subtopics_is_a_named_error(tmp_path):
    with pytest.raises(DiversityError, match="query 'q1': no candidate covers a subtopic"):
        DiversityQuery("q1", np.zeros(2), np.array(["a", "b"]), np.zeros((2, 2)), np.zeros((2, 1)), ["s"])
    with pytest.raises(DiversityError, match="judgments"):
        DiversityQuery("q2", np.zeros(2), np.array(["a"]), np.zeros((1, 2)), np.ones((2, 1)), ["s"])
    f = tmp_path / "qrels.txt"
    f.write_text("1 1 clueweb09-a 1\n1 2 clueweb09-a 0\n1 2 clueweb09-b 2\n2 1 clueweb09-c 0\n")
    assert read_trec_qrels(f) == {"1": {"clueweb09-a": {"1"}, "clueweb09-b": {"2"}}, "2": {"clueweb09-c": set()}}
    f.write_text("1 1 doc\n")
    with pytest.raises(DataFormatError, match="row"):
        read_trec_qrels(f)


def test_knn_pruning_removes_the_nearest_candidates():
    rng = np.random.default_rng(0)
    q = planted_query(rng, "q", n=20)
    pol = build_model(8, {"name": "mdp_div_knn"})  # defaults file: knn_prune 3
    assert pol.config.knn_prune == 3
    ranking, logp = pol.rollout(q.vector, q.features, 10)
    assert len(ranking) == 5 and len(logp) == 5  # 20 candidates: each pick removes itself and 3 neighbours
    unit = q.features / np.linalg.norm(q.features, axis=1, keepdims=True)
    first = ranking[0]
    nearest = np.argsort(-(unit @ unit[first]))[1:4]
    assert not set(nearest) & set(ranking[1:])


@pytest.mark.slow
def test_mmr_and_reinforce_learn_the_planted_task():
    rng = np.random.default_rng(1)
    train = [planted_query(rng, f"tr{i}") for i in range(12)]
    valid = [planted_query(rng, f"va{i}") for i in range(4)]
    test = [planted_query(rng, f"te{i}") for i in range(6)]
    c = PolicyGradientConfig(episodes=300, k=5, eval_every=50, smooth=50, progress=False, ntn_steps=100)
    pol = build_model(8, {"name": "mdp_div", "hidden": 16})
    before = evaluate_policy(pol, test, 5, 0.5)
    t = train_reinforce(pol, train, valid, c)
    after = evaluate_policy(t.policy, test, 5, 0.5)
    assert after > before + 0.1 and after > 0.7, (before, after)
    assert max(v["alpha_ndcg"] for v in t.valid) == pytest.approx(evaluate_policy(t.policy, valid, 5, 0.5))
    mmr = build_model(8, {"name": "mmr", "lam": 0.5}).fit(train)
    assert evaluate_policy(mmr, test, 5, 0.5) > before + 0.1
    ntn_pol = build_model(8, {"name": "mdp_div_ntn", "hidden": 16})
    losses = pretrain_ntn(ntn_pol, train, c)
    assert np.mean(losses[-20:]) < np.mean(losses[:20])


def test_episodes_to_share():
    curve = [0.0] * 100 + [1.0] * 100
    assert episodes_to(curve, 0.95, 10) == 110  # the 10-episode average reaches 0.95 ten episodes in
    assert episodes_to([], 0.95, 10) == 0


def test_diversify_models_are_listed_by_family():
    rows = {r["name"]: r for r in describe_models("diversify")}
    assert set(rows) == {"mdp_div", "mdp_div_knn", "mdp_div_ntn", "mmr"}
    assert rows["mmr"]["task"] == "fit" and rows["mdp_div"]["task"] == "policy_gradient"


@pytest.mark.slow
def test_diversify_experiment_on_movielens(tmp_path):
    shared("ml-100k")
    exp = DiversifyExperiment.model_validate({
        "name": "t", "seeds": [0], "reference": "MDP", "diversity": {"samples_per_genre": 1},
        "training": {"episodes": 60, "eval_every": 30, "smooth": 20, "progress": False, "ntn_steps": 20},
        "methods": [{"label": "MMR", "model": {"name": "mmr"}}, {"label": "MDP", "model": {"name": "mdp_div"}},
                    {"label": "kNN", "model": {"name": "mdp_div_knn"}, "grid": {"knn_prune": [1, 2]}}]})
    torch.set_num_threads(1)
    out = run_diversify(exp, tmp_path / "d.json")
    r = json.loads((tmp_path / "d.json").read_text())
    assert r["queries"]["test"] >= 1 and set(out["summary"]) == {"MMR", "MDP", "kNN"}
    assert out["summary"]["MDP"]["episodes_ratio_to_reference"] == 1.0
    assert set(r["methods"]["kNN"]["valid_per_setting"]) == {"knn_prune=1", "knn_prune=2"}
    assert 0 < out["summary"]["MMR"]["test_alpha_ndcg"] <= 1 and (tmp_path / "d.png").exists()


@pytest.mark.slow
def test_mdp_div_and_mmr_train_through_the_job_as_the_experiment_scores_them(tmp_path):
    """``model: {name: mdp_div}`` (and MMR) on MovieLens through the training job: the job's test alpha-NDCG is
    the diversify experiment's at the same settings and seed; the saved model reloads and orders candidates."""
    import llmrec
    from llmrec.errors import ConfigError

    path = shared("ml-100k")
    queries = {"samples_per_genre": 1}
    training = {"episodes": 60, "eval_every": 30, "smooth": 20, "ntn_steps": 20}
    data = {"source": "movielens100k", "path": str(path)}
    torch.set_num_threads(1)
    exp = DiversifyExperiment.model_validate({
        "name": "t", "seeds": [0], "data": data, "diversity": queries,
        "training": {**training, "progress": False},
        "methods": [{"label": "MMR", "model": {"name": "mmr"}}, {"label": "MDP", "model": {"name": "mdp_div"}}]})
    bench = run_diversify(exp, tmp_path / "d.json")["summary"]
    for name, label in (("mmr", "MMR"), ("mdp_div", "MDP")):
        rec = llmrec.train({"data": data, "model": {"name": name}, "output_dir": str(tmp_path / name),
                            "diversify": {"queries": queries, "training": training},
                            "trainer": {"seed": 0, "progress": False}})
        assert rec.result["test"]["alpha_ndcg@10"] == pytest.approx(bench[label]["test_alpha_ndcg"])
        loaded = llmrec.load(tmp_path / name)
        candidates = ["50", "181", "172", "1", "100", "127", "98", "56"]
        order = loaded.diversify(candidates, k=5)
        assert len(order) == 5 and len({r.item for r in order}) == 5 and {r.item for r in order} <= set(candidates)
        assert [r.item for r in order] == [r.item for r in rec.diversify(candidates, k=5)]
        with pytest.raises(ConfigError, match="is a diversify model: it orders a set of candidate items"):
            loaded.recommend("1")
