"""The push family (PSP, papers.md §34): PARW exact and approximate against dense linear algebra, PPR against
its closed form, I mode's indifference to activity, the push view's periods and targets, named errors for
isolated seeds / unfitted rankers / bad columns, and the ``push`` experiment end to end."""
import json

import numpy as np
import pytest
import scipy.sparse as sp

from llmrec.data import SyntheticConfig, generate_world
from llmrec.data.push import PushConfig, push_view
from llmrec.data.schema import DataError, RecData
from llmrec.errors import ConfigError
from llmrec.experiments.push import PushExperiment, run_push
from llmrec.metrics import precision_at
from llmrec.models import MODELS, build_model, describe_models
from llmrec.models.push.base import PushError, PushGraph

# 4 users x 5 items; user 3 rated nothing, item 4 has no edge
W = sp.csr_matrix(np.array([[1, 1, 0, 0, 0],
                            [0, 1, 1, 1, 0],
                            [1, 0, 0, 1, 0],
                            [0, 0, 0, 0, 0]], float))


def dense_parw(w: np.ndarray, seeds, alpha: float, mode: str = "identity") -> np.ndarray:
    g = PushGraph(sp.csr_matrix(w))
    a = g.adjacency.toarray()
    d = a.sum(1)
    lam = alpha * (np.ones_like(d) if mode == "identity" else d)
    f0 = g.seed_vector(np.array(seeds))
    live = lam + d > 0
    f = np.zeros_like(f0)
    f[live] = np.linalg.solve((np.diag(lam + d) - a)[np.ix_(live, live)], (lam * f0)[live])
    return f[: w.shape[0]]


@pytest.mark.parametrize("mode", ["identity", "degree"])
def test_exact_parw_solves_the_absorption_system(mode):
    model = build_model(None, {"name": "parw", "alpha": 0.3, "mode": mode}).fit(W)
    got = model.score_users(np.array([0, 2]))
    assert got == pytest.approx(dense_parw(W.toarray(), [0, 2], 0.3, mode), abs=1e-12)
    assert got[3] == 0.0  # the isolated user scores 0 and the degree mode's empty row is taken out of the solve
    # absorption probabilities: in [0, 1], and every seed item above every other node
    f = model.absorption(np.array([0, 2]))
    assert f.min() >= 0 and f.max() <= 1 and min(f[4], f[6]) > np.delete(f, [4, 6]).max()


def test_truncated_walk_is_the_jacobi_iteration_and_converges_to_the_exact_walk():
    g = PushGraph(W)
    a, d = g.adjacency.toarray(), g.degree
    f0 = g.seed_vector(np.array([1]))
    f = f0.copy()
    for _ in range(3):  # by hand: f <- (alpha I + D)^-1 (W f + alpha f0)
        f = (a @ f + 0.5 * f0) / (0.5 + d)
    three = build_model(None, {"name": "a_parw", "alpha": 0.5, "iterations": 3}).fit(W)
    assert three.absorption(np.array([1])) == pytest.approx(f, abs=1e-12)
    many = build_model(None, {"name": "a_parw", "alpha": 0.5, "iterations": 2000}).fit(W)
    assert many.score_users(np.array([1])) == pytest.approx(dense_parw(W.toarray(), [1], 0.5), abs=1e-8)
    # iterations: null on a_parw is the exact solve (what the benchmark's Spearman compares against)
    exact = build_model(None, {"name": "a_parw", "alpha": 0.5, "iterations": None}).fit(W)
    assert exact.score_users(np.array([1])) == pytest.approx(dense_parw(W.toarray(), [1], 0.5), abs=1e-12)
    assert build_model(None, {"name": "a_parw"}).config.iterations == 10  # the default file's T


def test_ppr_is_the_restarting_walks_stationary_distribution():
    model = build_model(None, {"name": "ppr", "restart": 0.2}).fit(W)
    x = model.stationary(np.array([0, 3]))
    g = PushGraph(W)
    a, d = g.adjacency.toarray(), g.degree
    p = np.divide(a, d[:, None], out=np.zeros_like(a), where=d[:, None] > 0)  # row-stochastic, dangling rows 0
    jump = g.seed_vector(np.array([0, 3])) / 2
    # x = (1 - c) P^T x + (c + (1 - c) * dangling mass) jump, solved densely
    dang = (d == 0).astype(float)
    m = (1 - 0.2) * (p.T + np.outer(jump, dang)) + 0.2 * np.outer(jump, np.ones(len(d)))
    vals, vecs = np.linalg.eig(m)
    ref = np.real(vecs[:, np.argmin(abs(vals - 1))])
    assert x.sum() == pytest.approx(1.0) and x == pytest.approx(ref / ref.sum(), abs=1e-9)


def test_identity_mode_does_not_favour_heavy_users_but_ppr_does():
    # user 0 rated every item (the seeds 0-1 among them); user 1 rated only the seeds
    w = sp.csr_matrix(np.array([[1.0] * 20, [1, 1] + [0] * 18]))
    seeds = np.array([0, 1])
    parw = build_model(None, {"name": "parw", "alpha": 0.01}).fit(w).score_users(seeds)
    ppr = build_model(None, {"name": "ppr"}).fit(w).score_users(seeds)
    assert parw[1] > parw[0] and ppr[0] > ppr[1]


def test_named_errors_for_bad_seeds_and_unfitted_rankers():
    model = build_model(None, {"name": "parw"})
    with pytest.raises(PushError, match="fit"):
        model.score_users(np.array([0]))
    model.fit(W)
    with pytest.raises(PushError, match="seed_items: item index 4 has no edge"):
        model.score_users(np.array([0, 4]))
    with pytest.raises(PushError, match="outside the graph"):
        model.score_users(np.array([9]))
    with pytest.raises(PushError, match="at least one seed"):
        model.score_users(np.array([], np.int64))
    assert PushGraph(W).isolated == {"users": 1, "items": 1}


def tiny_log(n_users=30, per_user=12) -> RecData:
    rng = np.random.default_rng(0)
    users = np.repeat([f"u{u}" for u in range(n_users)], per_user)
    items = rng.integers(0, 40, len(users))
    return RecData(name="tiny", columns={
        "user_id": users.astype(object), "item_id": np.array([f"i{i}" for i in items], dtype=object),
        "category": np.array(["odd" if i % 2 else "even" for i in items], dtype=object),
        "timestamp": np.tile(np.arange(per_user, dtype=float), n_users) + rng.random(len(users)),
        "label": np.ones(len(users), np.float32)}, fields={"user_id": "categorical", "item_id": "categorical"})


def test_horizon_periods_and_targets_without_the_seeds():
    data = tiny_log()
    view = push_view(data, PushConfig(campaign_by="category", split_by="user", horizon=3, min_items=5,
                                      min_targets=1, seed_items=3))
    test = view.periods["test"]
    assert np.bincount(test.user).tolist() == [3] * 30  # every user's last 3 rows
    assert view.weights.sum() <= 30 * 6 and len(view.periods["valid"].user) == 90
    t = data.columns["timestamp"]
    u = data.columns["user_id"]
    for user in range(3):  # the test rows are the user's latest
        mine = np.sort(t[u == f"u{user}"])
        assert len(mine) == 12
    seeds = view.seeds("odd", 3, 0)
    assert len(seeds) == 3 and set(view.items[seeds]) <= {f"i{i}" for i in range(1, 40, 2)}
    # a target interacts with a campaign item that is not a seed
    targets = set(test.targets("odd", seeds))
    for n in range(len(test.user)):
        if test.in_campaign["odd"][n] and test.item[n] not in seeds:
            assert test.user[n] in targets
    only_seeds = {test.user[n] for n in range(len(test.user)) if test.in_campaign["odd"][n]} - targets
    for user in only_seeds:
        rows = (test.user == user) & test.in_campaign["odd"]
        assert np.isin(test.item[rows], seeds).all()
    assert precision_at(np.arange(30.0), np.arange(30), np.array([29, 28, 0]), 2) == 1.0


def test_push_view_names_bad_settings():
    data = tiny_log()
    with pytest.raises(DataError, match="push.campaign_by"):
        push_view(data, PushConfig(campaign_by="genre"))
    with pytest.raises(DataError, match="push.horizon"):
        push_view(data, PushConfig(campaign_by="category", horizon=3))
    with pytest.raises(DataError, match="push.campaigns"):
        push_view(data, PushConfig(campaign_by="category", campaigns=["blue"], min_items=5, min_targets=1))


def test_push_models_are_listed_by_family():
    rows = {r["name"]: r for r in describe_models("push")}
    assert set(rows) == {"a_parw", "most_active", "parw", "ppr"} and {r["task"] for r in rows.values()} == {"fit"}
    assert MODELS.get("parw").family == "push"


@pytest.mark.slow
def test_push_experiment_end_to_end(tmp_path):
    exp = PushExperiment.model_validate({
        "name": "t", "seeds": [0, 1], "k": 20, "iterations_sweep": [1, 10],
        "datasets": {"syn": {"data": {"source": "synthetic",
                                      "synthetic": {"n_users": 150, "n_items": 60, "impressions_per_user": 30}},
                             "push": {"campaign_by": "category", "edges": "positive", "split_by": "user",
                                      "horizon": 3, "min_items": 5, "min_targets": 5, "seed_items": 3}}},
        "methods": [{"label": "PPR", "model": {"name": "ppr"}},
                    {"label": "A", "model": {"name": "a_parw"}, "grid": {"alpha": [0.01, 1.0]}}]})
    out = run_push(exp, tmp_path / "p.json")
    r = json.loads((tmp_path / "p.json").read_text())
    a = r["results"]["syn"]["methods"]["A"]
    assert a["chosen"]["alpha"] in (0.01, 1.0) and set(a["test_mean_per_setting"]) == {"alpha=0.01", "alpha=1.0"}
    assert a["valid_mean"][f"alpha={a['chosen']['alpha']}"] == max(a["valid_mean"].values())
    assert -1 <= a["spearman_with_exact"] <= 1 and set(a["iterations_sweep"]) == {"1", "10"}
    assert 0 <= r["results"]["syn"]["methods"]["PPR"]["test_mean"] <= 1 and out["summary"]["syn"]["A"]
    assert (tmp_path / "p.png").exists()
    world = generate_world(SyntheticConfig(n_users=150, n_items=60, impressions_per_user=30))
    assert r["results"]["syn"]["users"] <= len(set(world.columns["user_id"]))
    with pytest.raises(ValueError, match="methods"):
        PushExperiment.model_validate({**exp.model_dump(), "methods": [{"label": "x", "model": {"name": "nope"}}]})


PUSH_SYN = {"data": {"source": "synthetic", "synthetic": {"n_users": 150, "n_items": 60, "impressions_per_user": 30}},
            "push": {"campaign_by": "category", "edges": "positive", "split_by": "user", "horizon": 3, "min_items": 5,
                     "min_targets": 5, "seed_items": 3, "k": 20, "draws": 2}}


def test_a_push_model_trains_through_the_job_and_gets_the_experiments_precision(tmp_path):
    """``model: {name: a_parw}`` fits through the training job on the push view; its test precision@k is the
    push experiment's at the same settings and seed draws; the saved model ranks an audience for seed items."""
    import llmrec
    from llmrec.experiments.push import precisions, user_scores

    rec = llmrec.train({**PUSH_SYN, "model": {"name": "a_parw", "alpha": 1.0},
                        "trainer": {"seed": 0}, "output_dir": str(tmp_path / "run")})
    r = rec.result
    assert r["family"] == "push" and r["primary_metric"] == "precision@20"
    push = {k: v for k, v in PUSH_SYN["push"].items() if k not in ("k", "draws")}  # the experiment's own fields
    exp = PushExperiment.model_validate({"name": "t", "seeds": [0, 1], "k": 20,
                                         "datasets": {"syn": {**PUSH_SYN, "push": push}},
                                         "methods": [{"label": "A", "model": {"name": "a_parw", "alpha": 1.0}}]})
    view = push_view(llmrec.dataset(PUSH_SYN["data"]), PushConfig(**push))
    scores = user_scores(view, {"name": "a_parw", "alpha": 1.0}, exp, 3)["scores"]
    assert r["test"]["by_campaign"] == pytest.approx(precisions(view, scores, "test", exp, 3)["precision"])
    loaded = llmrec.load(tmp_path / "run")
    items = loaded.context.items[:3]
    crowd = loaded.audience(items, k=5)
    assert len(crowd) == 5 and crowd[0].score >= crowd[-1].score
    assert [m.user for m in crowd] == [m.user for m in rec.audience(items, k=5)]  # the reload refits the same walk
    with pytest.raises(ConfigError, match="is a push model: it ranks users for a campaign"):
        loaded.recommend(crowd[0].user)
