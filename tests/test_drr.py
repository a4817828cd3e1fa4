"""The rl family (DRR, papers.md §32): the per-user split, the simulator (logged ratings first, PMF elsewhere,
named errors), PMF by alternating least squares, the four state modules against hand computations, unit
actions, the offline evaluation against a hand-made policy, and DDPG end to end on a small world."""
import json

import numpy as np
import pytest
import torch

from llmrec.data.schema import DataError, RecData
from llmrec.data.simulator import RatingLog, RatingSimulator, SimulatorError, rating_log, reward_of, split_by_user
from llmrec.experiments.rl import RLExperiment, run_rl
from llmrec.train.pmf import pmf_vectors
from llmrec.models import build_model, describe_models
from llmrec.models.rl.drr import StateModule
from llmrec.train.actor_critic import (DDPGConfig, ReferencePolicy, UserHistory, evaluate, initial_window, probe,
                                      train_ddpg)
from llmrec.train.pmf import PMFConfig, fit_pmf


def low_rank_log(n_users=60, n_items=40, per_user=25, seed=0) -> RatingLog:
    """Ratings from a rank-2 taste model with item quality, rounded to 1..5."""
    rng = np.random.default_rng(seed)
    U, V = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    quality = rng.normal(0, 1, n_items)
    rows = []
    for u in range(n_users):
        for t, i in enumerate(rng.choice(n_items, per_user, replace=False)):
            r = np.clip(np.round(3 + 0.8 * U[u] @ V[i] + 0.8 * quality[i]), 1, 5)
            rows.append((u, i, r, t))
    u, i, r, t = map(np.array, zip(*rows))
    return RatingLog(u.astype(np.int64), i.astype(np.int64), r.astype(float), t.astype(float),
                     np.array([f"u{k}" for k in range(n_users)]), np.array([f"i{k}" for k in range(n_items)]))


def test_split_by_user_cuts_each_history_in_time_order():
    log = low_rank_log()
    tr, va, te = split_by_user(log, (0.6, 0.2, 0.2))
    assert len(tr.user) + len(va.user) + len(te.user) == len(log.user)
    for u in range(log.n_users):
        a, b, c = tr.time[tr.user == u], va.time[va.user == u], te.time[te.user == u]
        assert (len(a), len(b), len(c)) == (15, 5, 5) and a.max() < b.min() and b.max() < c.min()
    with pytest.raises(DataError, match="split"):
        split_by_user(log, (0.5, 0.5, 0.0))


def test_rating_log_needs_ratings():
    d = RecData(name="clicks", columns={"user_id": np.array(["a"], dtype=object), "item_id": np.array(["x"], dtype=object),
                                       "label": np.ones(1, np.float32), "timestamp": np.zeros(1)}, fields={})
    with pytest.raises(DataError, match="rating"):
        rating_log(d)


def test_pmf_recovers_held_out_ratings_and_the_simulator_prefers_the_log():
    log = low_rank_log(n_users=120, per_user=30)
    tr, va, _ = split_by_user(log, (0.8, 0.1, 0.1))
    pmf = fit_pmf(tr, PMFConfig(dim=4, l2=1.0), va)
    base = float(np.sqrt(np.mean((tr.rating.mean() - va.rating) ** 2)))
    assert pmf.rmse["valid"] < 0.8 * base  # clearly better than the global mean
    again = fit_pmf(tr, PMFConfig(dim=4, l2=1.0), va)
    assert np.array_equal(again.U, pmf.U)  # deterministic
    sim = RatingSimulator(tr, pmf.U, pmf.V, pmf.bu, pmf.bi, pmf.mean)
    u, i, r = int(tr.user[0]), int(tr.item[0]), float(tr.rating[0])
    assert sim.rating(u, i) == r and sim.reward(u, i) == pytest.approx((r - 3) / 2)
    unseen = int(va.item[va.user == u][0])
    assert sim.rating(u, unseen) == pytest.approx(float(np.clip(pmf.predict(np.array([u]), np.array([unseen]))[0], 1, 5)))
    assert reward_of(5.0) == 1.0 and reward_of(1.0) == -1.0
    with pytest.raises(SimulatorError, match="user: the simulator has no user 'stranger'"):
        sim.index_of("stranger")
    with pytest.raises(SimulatorError, match="user: index"):
        sim.predicted(10_000, np.array([0]))


def test_state_modules_by_hand():
    torch.manual_seed(0)
    user, items = torch.randn(2, 3), torch.randn(2, 4, 3)
    w = torch.tensor([0.5, 1.0, 2.0, -1.0])
    out = {}
    for kind in ("n", "p", "u", "ave"):
        m = StateModule(kind, 4, 3)
        m.w.data = w.clone()
        out[kind] = m(user, items)
        assert out[kind].shape == (2, m.out_dim)
    we = w[None, :, None] * items
    assert torch.allclose(out["n"], items.reshape(2, -1))
    pooled = we.mean(1)
    assert torch.allclose(out["ave"], torch.cat([user, user * pooled, pooled], 1))
    pairs = torch.cat([we[:, a] * we[:, b] for a in range(4) for b in range(a + 1, 4)], 1)
    assert torch.allclose(out["p"], torch.cat([items.reshape(2, -1), pairs], 1))
    assert torch.allclose(out["u"], torch.cat([(user[:, None] * we).reshape(2, -1), pairs], 1))


def test_initial_window_pads_with_popular_positives():
    got = initial_window(np.array([7, 8, 9]), np.array([5.0, 2.0, 4.0]), 4, 4.0, np.array([7, 1, 2]))
    assert got.tolist() == [1, 2, 7, 9]


def test_evaluation_with_the_pmf_direction_equals_pmf_ranking():
    log = low_rank_log(n_users=80, per_user=30)
    tr, va, te = split_by_user(log, (0.6, 0.1, 0.3))
    pmf = fit_pmf(tr, PMFConfig(dim=4, l2=1.0))
    users, items = pmf_vectors(pmf)
    model = ReferencePolicy(build_model((users, items), {"name": "drr"}))  # always PMF's ranking vector
    c = DDPGConfig(k=5)
    res = evaluate(model, UserHistory.of(tr, va), te, np.arange(10), c)
    ref = []
    for u, rows in enumerate(te.by_user()):
        order = np.argsort(-pmf.predict(np.full(len(rows), u), te.item[rows]), kind="stable")[:5]
        ref.append((te.rating[rows][order] >= 4).mean())
    assert res["static_precision@5"] == pytest.approx(np.mean(ref)) == pytest.approx(res["precision@5"])
    assert res["users"] == 80


class _PMFActor(torch.nn.Module):
    def forward(self, user, items):  # the user's own [u; 1], unit length: PMF's direction
        return torch.nn.functional.normalize(user, dim=1)


class _DotCritic(torch.nn.Module):
    def forward(self, user, items, action):  # Q = a . [u; 1]
        return (action * user).sum(1)


def test_probe_measures_the_actors_direction_and_ranks_by_the_critic():
    log = low_rank_log(n_users=60, per_user=30)
    tr, va, te = split_by_user(log, (0.6, 0.1, 0.3))
    pmf = fit_pmf(tr, PMFConfig(dim=4, l2=1.0))
    users, items = pmf_vectors(pmf)
    model = build_model((users, items), {"name": "drr", "state": "ave", "window": 3, "hidden": 16})
    model.actor, model.critic = _PMFActor(), _DotCritic()
    out = probe(model, UserHistory.of(tr, va), te, np.arange(10), DDPGConfig(k=5))
    assert out["cosine_to_pmf"] == pytest.approx(1.0, abs=1e-5)
    # ranking by Q(s, unit e_i) = <[u; 1], e_i / |e_i|>: each user's candidates ordered by hand
    unit = items / np.linalg.norm(items, axis=1, keepdims=True)
    hand = []
    for u, rows in enumerate(te.by_user()):
        if len(rows) >= 5:
            q = unit[te.item[rows]] @ users[u]
            hand.append((te.rating[rows][np.argsort(-q, kind="stable")[:5]] >= 4).mean())
    assert out["critic_precision@5"] == pytest.approx(np.mean(hand), abs=1e-6)
    # critic_action raw: Q(s, e_i) = <[u; 1], e_i>, PMF's predicted rating less mu + b_u: the critic ranks as PMF
    raw = probe(model, UserHistory.of(tr, va), te, np.arange(10), DDPGConfig(k=5, critic_action="raw"))
    pmf_rank = evaluate(ReferencePolicy(model), UserHistory.of(tr, va), te, np.arange(10), DDPGConfig(k=5))
    assert raw["critic_precision@5"] == pytest.approx(pmf_rank["static_precision@5"], abs=1e-6)
    assert raw["critic_precision@5"] != pytest.approx(out["critic_precision@5"], abs=1e-6)
    model.critic = _DotCritic()
    model.actor = build_model((users, items), {"name": "drr", "state": "ave", "window": 3, "hidden": 16}).actor
    assert abs(probe(model, UserHistory.of(tr, va), te, np.arange(10), DDPGConfig(k=5))["cosine_to_pmf"]) < 0.9


@pytest.mark.slow
def test_ddpg_runs_keeps_the_best_actor_and_its_actions_are_unit_vectors():
    log = low_rank_log(n_users=50, per_user=30)
    tr, va, te = split_by_user(log, (0.6, 0.2, 0.2))
    pmf = fit_pmf(tr, PMFConfig(dim=4, l2=1.0))
    sim = RatingSimulator(tr, pmf.U, pmf.V, pmf.bu, pmf.bi, pmf.mean)
    model = build_model(pmf_vectors(pmf), {"name": "drr", "state": "ave", "window": 3, "hidden": 32})
    c = DDPGConfig(episodes=40, episode_length=5, eval_every=20, batch_size=16, k=5, progress=False)
    out = train_ddpg(model, sim, tr, va, np.arange(5), c)
    assert [p["episode"] for p in out.curve] == [20, 40]
    best = max(out.curve, key=lambda p: p["valid_precision@5"])
    assert out.best_episode == best["episode"]
    assert evaluate(out.model, UserHistory.of(tr), va, np.arange(5), c)["precision@5"] == pytest.approx(
        best["valid_precision@5"])
    a = out.model.action(torch.arange(4), torch.zeros(4, 3, dtype=torch.long))
    assert torch.allclose(a.norm(dim=1), torch.ones(4), atol=1e-5)
    assert {r["name"] for r in describe_models("rl")} == {"drr"}


@pytest.mark.slow
def test_rl_experiment_end_to_end(tmp_path, monkeypatch):
    log = low_rank_log(n_users=40, per_user=30)
    data = RecData(name="lowrank", columns={
        "user_id": log.user_ids[log.user].astype(object), "item_id": log.item_ids[log.item].astype(object),
        "rating": log.rating.astype(np.float32), "timestamp": log.time,
        "label": (log.rating >= 4).astype(np.float32)}, fields={})
    monkeypatch.setattr("llmrec.experiments.rl.load_data", lambda config: data)
    exp = RLExperiment.model_validate({
        "name": "t", "seeds": [0], "pmf": {"dim": 4, "l2": 1.0},
        "ddpg": {"episodes": 20, "episode_length": 5, "eval_every": 10, "batch_size": 16, "k": 5, "progress": False},
        "variants": [{"label": "ave", "model": {"name": "drr", "state": "ave", "hidden": 16}},
                     {"label": "n", "model": {"name": "drr", "state": "n", "hidden": 16}},
                     {"label": "short", "model": {"name": "drr", "state": "ave", "hidden": 16},
                      "ddpg": {"episodes": 10, "gamma": 0.0}}]})
    out = run_rl(exp, tmp_path / "r.json")
    assert set(out["summary"]["variants"]) == {"ave", "n", "short"} and out["summary"]["baselines"]["PMF"] > 0
    runs = json.loads((tmp_path / "r.json").read_text())["variants"]
    # a variant's DDPG overrides reach its training: 10 episodes there, the experiment's 20 elsewhere
    assert [p["episode"] for p in runs["short"]["runs"][0]["curve"]] == [10]
    assert [p["episode"] for p in runs["ave"]["runs"][0]["curve"]] == [10, 20]
    with pytest.raises(ValueError, match="gama"):
        RLExperiment.model_validate({"name": "t", "variants": [{"label": "x", "model": {"name": "drr"},
                                                                "ddpg": {"gama": 0.0}}]})
    assert (tmp_path / "r.png").exists()
    probed = run_rl(exp.model_copy(update={"probes": True, "variants": exp.variants[:1]}), tmp_path / "p.json")
    base = probed["summary"]["baselines"]
    assert base["PMF direction as DRR's action"] == pytest.approx(base["PMF"])  # the policy class holds PMF
    run = json.loads((tmp_path / "p.json").read_text())["variants"]["ave"]["runs"][0]
    assert set(run["probes"]) == {"untrained", "trained"} and -1 <= run["probes"]["trained"]["cosine_to_pmf"] <= 1


def test_drr_trains_through_the_job_on_your_ratings_and_matches_the_experiment(tmp_path, monkeypatch):
    """``model: {name: drr}`` on a ratings file: the job fits PMF, trains DDPG (``rl:``), reports validation and
    test precision@k as the rl experiment does at the same settings and seed, saves, reloads and recommends
    items for a user (their last positive ratings as the state), never an item they rated."""
    import json

    import llmrec

    log = low_rank_log(n_users=40, per_user=30)
    rows = ["who,what,stars,when"] + [f"{log.user_ids[u]},{log.item_ids[i]},{r:g},{1_700_000_000 + 60 * t}"
                                      for u, i, r, t in zip(log.user, log.item, log.rating, log.time)]
    (tmp_path / "ratings.csv").write_text("\n".join(rows) + "\n")
    rl = {"pmf": {"dim": 4, "l2": 1.0},
          "ddpg": {"episodes": 20, "episode_length": 5, "eval_every": 10, "batch_size": 16, "k": 5}}
    data = {"source": "files", "files": {"interactions": {"path": str(tmp_path / "ratings.csv")},
                                         "columns": {"user": "who", "item": "what", "rating": "stars", "time": "when"}}}
    model = {"name": "drr", "state": "ave", "hidden": 16}
    rec = llmrec.train({"data": data, "model": model, "rl": rl, "trainer": {"seed": 0, "progress": False},
                        "output_dir": str(tmp_path / "run")})
    r = rec.result
    assert r["family"] == "rl" and r["primary_metric"] == "precision@5" and len(r["history"]) == 2

    exp = RLExperiment.model_validate({"name": "t", "seeds": [0], "data": data, **rl,
                                       "ddpg": {**rl["ddpg"], "progress": False},
                                       "variants": [{"label": "ave", "model": model}]})
    run_rl(exp, tmp_path / "r.json")
    bench = json.loads((tmp_path / "r.json").read_text())["variants"]["ave"]["runs"][0]
    assert r["test"] == bench["test"] and r["best_episode"] == bench["best_episode"]

    loaded = llmrec.load(tmp_path / "run")
    top = loaded.recommend("u3", k=5)
    rated = {log.item_ids[i] for i in log.item[log.user == 3]}
    assert len(top) == 5 and not rated & {x.item for x in top}
    assert [x.item for x in top] == [x.item for x in rec.recommend("u3", k=5)]
