"""The graph family: the per-user split (RecBole's rounding), duplicate / cold handling, the normalized
adjacencies against dense formulas, the sparse matmul's gradient, BPR negatives, chunked full-sort
evaluation, LightGCN against its definition, and a saved graph model reloading to the same scores."""
import json

import numpy as np
import pytest
import torch

from llmrec.data import SyntheticConfig, generate_world
from llmrec.data.graph import InteractionGraph, split_counts
from llmrec.data.schema import RecData
from llmrec.data.views import GraphViewConfig, PairBatch, graph_stats, interaction_view
from llmrec.errors import DataError
from llmrec.models import build_model
from llmrec.models.graph.base import spmm
from llmrec.train import BPRTask, Trainer, TrainerConfig
from llmrec.train.export import load_model, save_model


@pytest.fixture(scope="module")
def world():
    return generate_world(SyntheticConfig(n_users=120, n_items=150, impressions_per_user=50))


def _table(rows):
    """A RecData of (user, item, time) rows, every row a positive."""
    u, i, t = zip(*rows)
    return RecData(name="toy", columns={"user_id": np.array(u, dtype=object), "item_id": np.array(i, dtype=object),
                                        "timestamp": np.array(t, dtype=np.float64),
                                        "label": np.ones(len(rows), np.float32)},
                   fields={"user_id": "categorical", "item_id": "categorical"})


@pytest.fixture(scope="module")
def clustered():
    """Users in 4 taste clusters, each interacting with 12 items of its cluster and 2 others: a graph with
    collaborative signal a graph model must find."""
    rng = np.random.default_rng(0)
    rows, t = [], 0
    for u in range(80):
        c = u % 4
        own = rng.choice(np.arange(c * 25, c * 25 + 25), 12, replace=False)
        for i in [*own, *rng.choice(100, 2, replace=False)]:
            rows.append((f"u{u}", f"i{i}", t))
            t += 1
    return _table(rows)


def _recbole_counts(tot, ratios):
    """RecBole 1.2.1's Dataset._calcu_split_ids as counts, written out as its loop reads."""
    cnt = [int(ratios[i] * tot) for i in range(len(ratios))]
    cnt[0] = tot - sum(cnt[1:])
    for i in range(1, len(ratios)):
        if cnt[0] <= 1:
            break
        if 0 < ratios[-i] * tot < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return cnt


def test_split_counts_follow_recbole_rounding():
    totals = np.arange(1, 60)
    for fr in ((0.8, 0.1, 0.1), (0.7, 0.2, 0.1), (0.6, 0.2, 0.2)):
        got = split_counts(totals, fr)
        assert got.tolist() == [_recbole_counts(int(t), list(fr)) for t in totals]
    assert split_counts(np.array([2, 5, 10]), (0.8, 0.1, 0.1)).tolist() == [[1, 0, 1], [3, 1, 1], [8, 1, 1]]


@pytest.mark.parametrize("split", ["random", "temporal"])
def test_per_user_split_is_disjoint_and_ordered(world, split):
    c = GraphViewConfig(split=split)
    space, train, valid, test = interaction_view(world, config=c)
    pos = np.flatnonzero(world.columns["label"] > 0.5)
    pairs = set(zip(world.columns["user_id"][pos].astype(str), world.columns["item_id"][pos].astype(str)))
    per_user: dict[str, int] = {}
    for u, _ in pairs:
        per_user[u] = per_user.get(u, 0) + 1
    tr_count = np.bincount(train.users.numpy(), minlength=space.n_users)
    for u, n in per_user.items():  # train holds exactly RecBole's share of each user's distinct items
        assert tr_count[space.users[u]] == split_counts(np.array([n]), (0.8, 0.1, 0.1))[0, 0]
    trained = set(zip(train.users.tolist(), train.items.tolist()))
    assert len(trained) == len(train)  # no duplicate edges
    for ev in (valid, test):
        for u, g, s in zip(ev.users.tolist(), ev.gold, ev.seen):
            assert not ({(u, int(i)) for i in g} & trained) and not (set(g.tolist()) & set(s.tolist()))
    if split == "temporal":
        times = {}
        for r in pos:
            times.setdefault((world.columns["user_id"][r], world.columns["item_id"][r]), []).append(world.columns["timestamp"][r])
        inv_u = {v: k for k, v in space.users.items()}
        inv_i = {v: k for k, v in space.items.items()}
        last_train = {}
        for u, i in trained:
            last_train[u] = max(last_train.get(u, -np.inf), min(times[(inv_u[u], inv_i[i])]))
        for u, g in zip(test.users.tolist(), test.gold):
            assert all(min(times[(inv_u[u], inv_i[int(i)])]) >= last_train[u] for i in g)


def test_duplicates_merged_and_cold_items_dropped_are_counted():
    # a: x (twice), y | z | w -> train x, y; valid z; test w.   b: z w y i0..i5 | i6 | cold
    rows = [("a", "x", 1), ("a", "x", 2), ("a", "y", 3), ("a", "z", 4), ("a", "w", 5)] + \
           [("b", it, k) for k, it in enumerate(["z", "w", "y", *[f"i{n}" for n in range(7)]])] + [("b", "cold", 99)]
    c = GraphViewConfig(split="temporal")
    stats = graph_stats(_table(rows), config=c)
    assert (stats.duplicate_edges, stats.train_edges, stats.cold_item_rows, stats.users_without_test) == (1, 11, 2, 1)
    space, train, valid, test = interaction_view(_table(rows), config=c)
    assert "cold" not in space.items and "i6" not in space.items
    assert test.users.tolist() == [space.users["a"]] and test.gold[0].tolist() == [space.items["w"]]
    assert space.items["z"] in test.seen[0]  # a's valid item is excluded from its test ranking


def test_sym_and_left_adjacency_match_dense_formulas():
    g = InteractionGraph(3, 4, np.array([0, 0, 1, 2, 2]), np.array([1, 2, 2, 1, 3]))
    a = np.zeros((7, 7))
    for u, i in zip(g.users, g.items):
        a[u, 3 + i] = a[3 + i, u] = 1
    d = a.sum(1)
    inv = np.where(d > 0, 1 / np.where(d > 0, d, 1), 0)
    np.testing.assert_allclose(g.adjacency("sym").to_dense().numpy(), np.sqrt(inv)[:, None] * a * np.sqrt(inv)[None],
                               atol=1e-6)
    np.testing.assert_allclose(g.adjacency("left").to_dense().numpy(), inv[:, None] * a, atol=1e-6)
    a_self = a + np.eye(7)
    ds = a_self.sum(1)
    np.testing.assert_allclose(g.adjacency("sym_self").to_dense().numpy(), a_self / np.sqrt(np.outer(ds, ds)), atol=1e-6)
    assert g.adjacency("sym") is g.adjacency("sym")  # built once


def test_empty_behaviour_graph_is_a_named_error():
    with pytest.raises(DataError, match="behaviours.loved"):
        InteractionGraph(2, 3, np.array([0, 1]), np.array([1, 2]), {"loved": (np.zeros(0, int), np.zeros(0, int))})


def test_similarity_graph_keeps_top_k_without_self_loops(world):
    space, *_ = interaction_view(world)
    s = space.graph.similarity("item", 5).to_dense()
    assert torch.all(torch.diagonal(s) == 0)
    assert torch.allclose(s, s.T, atol=1e-6)
    x = np.zeros((space.n_items, space.n_users))
    x[space.graph.items, space.graph.users] = 1
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    cos = x @ x.T / np.maximum(norm * norm.T, 1e-12)
    np.fill_diagonal(cos, -1)
    fifth = np.sort(cos, axis=1)[:, -5]  # each node's 5th largest similarity (ties make the top 5 ambiguous)
    edges = list(zip(*np.nonzero(s.numpy())))
    assert edges and all(cos[a, b] > 0 and (cos[a, b] >= fifth[a] - 1e-9 or cos[a, b] >= fifth[b] - 1e-9)
                         for a, b in edges)
    must = [(a, b) for a in range(len(cos)) for b in np.flatnonzero((cos[a] > fifth[a] + 1e-9) & (cos[a] > 0))]
    assert must and all(s[a, b] > 0 for a, b in must)  # strictly inside a node's top 5: always kept


def test_spmm_gradient_matches_dense():
    g = InteractionGraph(4, 5, np.array([0, 1, 1, 2, 3, 3]), np.array([1, 2, 3, 4, 1, 4]))
    a = g.adjacency("sym")
    x = torch.randn(9, 3, requires_grad=True)
    w = torch.randn(9, 3)
    (spmm(a, spmm(a, x)) * w).sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    dense = a.to_dense()
    (dense @ (dense @ x2) * w).sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-5)


def test_uniform_negatives_avoid_training_items_and_in_batch_masks_them(world):
    space, train, _, _ = interaction_view(world)
    task = BPRTask(space.n_items)
    b = task.make_batch(train, torch.arange(len(train)), torch.Generator().manual_seed(0))
    trained = set(zip(train.users.tolist(), train.items.tolist()))
    assert not any((u, n) in trained for u, n in zip(b.users.tolist(), b.items[:, 1].tolist()))
    again = task.make_batch(train, torch.arange(len(train)), torch.Generator().manual_seed(0))
    assert torch.equal(b.items, again.items)  # drawn from the checkpointed generator
    task.negatives = "in_batch"
    ib = task.make_batch(train, torch.arange(16), torch.Generator())
    assert ib.items.shape == (16, 16) and torch.equal(ib.items[:, 0], train.items[:16])
    assert sorted(ib.items[3].tolist()) == sorted(train.items[:16].tolist())  # every positive of the batch

    class Fixed(torch.nn.Module):  # scores 1 for positives, 0 for negatives: each masked column is ignored
        def forward(self, batch):
            return torch.where(batch.items == batch.items[:, :1], 1.0, 0.0)

    loss = task.row_loss(Fixed(), ib)
    assert torch.allclose(loss, torch.full_like(loss, float(-torch.nn.functional.logsigmoid(torch.tensor(1.0)))))


class _Dot(torch.nn.Module):
    def __init__(self, users, items):
        super().__init__()
        self.u, self.i = users, items

    def full_scores(self, users):
        return self.u[users] @ self.i.T


def _random_eval(seed: int, n_users: int, n_items: int, n_gold: int, n_seen: int):
    """A dot-product model and every user's random gold / excluded items."""
    from llmrec.data.views import RankingEval

    rng = np.random.default_rng(seed)
    model = _Dot(torch.randn(n_users, 8), torch.randn(n_items, 8))
    pick = (lambda k: [rng.choice(np.arange(1, n_items), k, replace=False) for _ in range(n_users)])
    return model, RankingEval(torch.arange(n_users), pick(n_gold), pick(n_seen))


def test_chunked_evaluation_equals_one_pass_and_scales_to_large_catalogues():
    n_items = 120_001
    model, ev = _random_eval(0, 40, n_items, 3, 50)
    ctx = Trainer(TrainerConfig(eval_batch_size=4096))
    whole = BPRTask().evaluate(model, ev, ctx)
    small = BPRTask()
    small.EVAL_SCORE_BUDGET = 3 * n_items  # three users at a time
    assert small.evaluate(model, ev, ctx) == pytest.approx(whole, abs=1e-6)
    assert set(whole) >= {"recall@10", "recall@20", "ndcg@10", "ndcg@20", "hit@10"}


def test_sampled_protocol_ranks_each_gold_item_against_eligible_negatives_only():
    from llmrec.data.views import RankingEval
    from llmrec.train.tasks import ScoreMatrix

    # 12 ids (0 = padding): user 0 excludes 1, 2 and has gold 3; the 8 eligible items 4..11 are exactly the
    # 8 negatives asked for, so the rank is fixed whatever the draw: two of them score above the gold item
    scores = np.zeros((2, 12), np.float32)
    scores[0, 1:] = [100, 100, 5, 9, 8, 1, 1, 1, 1, 1, 1]  # excluded 1, 2 score highest: they must not count
    scores[1, 1:] = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0.5, 0.2]  # user 1: gold 1 (top) and 11 (last of 9 eligible)
    ev = RankingEval(torch.arange(2), [np.array([3]), np.array([1, 11])], [np.array([1, 2]), np.array([10])])
    ctx = Trainer(TrainerConfig(eval_batch_size=1))
    out = BPRTask(12, sampled_negatives=8).evaluate(ScoreMatrix(scores), ev, ctx)
    # pairs: (0, 3) rank 3; (1, 1) rank 1; (1, 11): user 1's 8 eligible items (2..9) all drawn, all above: rank 9
    assert out["sampled8_hit@10"] == pytest.approx(1.0)
    assert out["sampled8_ndcg@10"] == pytest.approx((1 / np.log2(4) + 1 + 1 / np.log2(10)) / 3)
    assert out["sampled8_hit@20"] == pytest.approx(1.0)
    assert out["ndcg@10"] == BPRTask(12).evaluate(ScoreMatrix(scores), ev, ctx)["ndcg@10"]  # full ranking untouched
    with pytest.raises(ValueError, match="sampled_negatives: 9 negatives asked, only 8 .* user row 0"):
        BPRTask(12, sampled_negatives=9).evaluate(ScoreMatrix(scores), ev, ctx)


def test_sampled_negatives_are_the_same_for_every_model_and_a_score_matrix_judges_like_its_model():
    from llmrec.train.tasks import ScoreMatrix

    n_users, n_items = 30, 400
    model, ev = _random_eval(1, n_users, n_items, 2, 20)
    ctx = Trainer(TrainerConfig(eval_batch_size=7))
    task = BPRTask(n_items, sampled_negatives=99)
    direct = task.evaluate(model, ev, ctx)
    with torch.no_grad():
        stored = ScoreMatrix(model.full_scores(torch.arange(n_users)).numpy())
    assert task.evaluate(stored, ev, ctx) == pytest.approx(direct, abs=1e-6)
    assert task.evaluate(model, ev, Trainer(TrainerConfig(eval_batch_size=4096))) == pytest.approx(direct, abs=1e-6)
    # a gold item's rank among sampled negatives is never worse than among all items: with two gold items per
    # user, the pair mean of sampled hits bounds the full ranking's per-user recall from above
    assert direct["sampled99_hit@10"] >= direct["recall@10"] - 1e-9
    assert direct["sampled99_hit@10"] > direct["recall@10"]


def test_lightgcn_is_the_layer_mean_of_propagated_embeddings(world):
    space, train, _, _ = interaction_view(world)
    m = build_model(space, {"name": "lightgcn", "embedding_dim": 8, "n_layers": 2})
    a = space.graph.adjacency("sym").to_dense()
    e0 = torch.cat([m.user.weight, m.item.weight]).detach()
    final = (e0 + a @ e0 + a @ (a @ e0)) / 3
    m.eval()
    got = m.full_scores(torch.arange(5))
    want = final[:5] @ final[space.n_users:].T
    assert torch.allclose(got, want, atol=1e-5)
    mf = build_model(space, {"name": "lightgcn", "embedding_dim": 8, "n_layers": 0})
    mf.eval()
    assert torch.allclose(mf.full_scores(torch.arange(3)), mf.user.weight[:3] @ mf.item.weight.T, atol=1e-6)


def test_eval_cache_follows_the_weights(world):
    space, *_ = interaction_view(world)
    m = build_model(space, {"name": "lightgcn", "embedding_dim": 8})
    m.eval()
    before = m.full_scores(torch.arange(2)).clone()
    with torch.no_grad():
        m.user.weight.mul_(2)  # in place, as an optimizer step or load_state_dict
    u, i = m.representations()
    after = m.full_scores(torch.arange(2))
    assert not torch.allclose(after, before) and torch.allclose(after, u[:2] @ i.T, atol=1e-6)


def test_lightgcn_learns_and_reloads_with_its_graph(clustered, tmp_path):
    space, train, valid, test = interaction_view(clustered)
    torch.manual_seed(0)
    model = build_model(space, {"name": "lightgcn", "embedding_dim": 16})
    trainer = Trainer(TrainerConfig(batch_size=128, epochs=15, patience=15, embedding_l2=0.0, lr_decay=1.0,
                                    learning_rate=0.01, progress=False), BPRTask(space.n_items))
    untrained = trainer.evaluate(model, valid)
    fit = trainer.fit(model, train, valid)
    assert fit.best_valid["recall@20"] > untrained["recall@20"] + 0.3, (fit.best_valid, untrained)  # chance ~0.25
    save_model(tmp_path / "m", model, space)
    loaded, space2 = load_model(tmp_path / "m")
    assert space2.graph is not None and len(space2.graph.users) == len(train)
    model.eval()
    assert torch.allclose(loaded.full_scores(torch.arange(4)), model.full_scores(torch.arange(4)), atol=1e-5)


def test_pairbatch_slice_keeps_candidates():
    b = PairBatch(torch.arange(4), torch.arange(8).view(4, 2))
    assert b.slice(torch.tensor([1, 3])).items.tolist() == [[2, 3], [6, 7]]


def test_sampled_neighbourhoods_cap_each_mean_and_multigccf_samples_only_in_training(clustered):
    space, *_ = interaction_view(clustered)
    g = space.graph
    rng = np.random.default_rng(0)
    a, at = g.sampled_neighbours("user", 3, rng)
    dense, full = a.to_dense(), g.neighbours("user").to_dense()
    deg = (full > 0).sum(1)
    assert torch.equal((dense > 0).sum(1), deg.clamp(max=3))  # at most 3 neighbours, all of them when fewer
    assert torch.allclose(dense.sum(1)[deg > 0], torch.ones(int((deg > 0).sum())))  # each row a mean
    assert bool(((dense > 0) <= (full > 0)).all())  # only real neighbours
    assert torch.equal(at.to_dense(), dense.T)
    again, _ = g.sampled_neighbours("user", 3, np.random.default_rng(1))
    assert not torch.equal(again.to_dense(), dense)  # another draw, other neighbours
    torch.manual_seed(0)
    sampled = build_model(space, {"name": "multigccf", "embedding_dim": 16, "layers": [16, 16], "sample": [10, 5]})
    torch.manual_seed(0)
    plain = build_model(space, {"name": "multigccf", "embedding_dim": 16, "layers": [16, 16]})
    sampled.eval(), plain.eval()
    assert torch.equal(sampled.representations()[0], plain.representations()[0])  # evaluation: full neighbourhoods
    sampled.train(), plain.train()
    assert not torch.equal(sampled.representations()[0], plain.representations()[0])
    with pytest.raises(ValueError, match="sample: one size per hop"):
        build_model(space, {"name": "multigccf", "layers": [16, 16], "sample": [10]})


def test_multigccf_parts_and_ablation(clustered):
    space, train, _, _ = interaction_view(clustered)
    full = build_model(space, {"name": "multigccf", "embedding_dim": 8, "layers": [8, 8], "similarity_k": 3})
    no_mge = build_model(space, {"name": "multigccf", "embedding_dim": 8, "layers": [8, 8], "multi_graph": False})
    u, i = full.representations()
    assert u.shape == (space.n_users, 24) and i.shape == (space.n_items, 24)
    assert no_mge.representations()[0].shape == (space.n_users, 16)
    # the bipartite part is a mean over neighbours: a user's first-hop input is the mean of its items
    g = space.graph
    agg = (g.neighbours("user").to_dense() @ full.item.weight).detach()
    u0 = int(g.users[0])
    mine = g.items[g.users == u0]
    assert torch.allclose(agg[u0], full.item.weight[torch.from_numpy(mine)].mean(0).detach(), atol=1e-6)
    full(PairBatch(torch.tensor([0, 1]), torch.tensor([[1, 2], [3, 4]]))).sum().backward()
    assert full.user_graph.weight.grad is not None and full.user_layers[0].weight.grad.abs().sum() > 0
    # identity activation: the same weights give the pre-tanh values (tanh of them is the default's output)
    torch.manual_seed(0)
    lin = build_model(space, {"name": "multigccf", "embedding_dim": 8, "layers": [8], "similarity_k": 3,
                              "activation": "identity", "skip": False})
    torch.manual_seed(0)
    act = build_model(space, {"name": "multigccf", "embedding_dim": 8, "layers": [8], "similarity_k": 3, "skip": False})
    assert torch.allclose(torch.tanh(lin.representations()[0]), act.representations()[0], atol=1e-6)
    # the skip part alone is the id embedding through its linear layer; no part at all is refused
    skip = build_model(space, {"name": "multigccf", "embedding_dim": 8, "bipartite": False, "multi_graph": False})
    assert len(skip.user_layers) == 0
    assert torch.allclose(skip.representations()[0], skip.user_skip(skip.user.weight), atol=1e-6)
    with pytest.raises(ValueError, match="at least one part"):
        build_model(space, {"name": "multigccf", "bipartite": False, "multi_graph": False, "skip": False})
    # the paper's message construction: a user's first-hop message is tanh(mean of its items' vectors times Q)
    tr = build_model(space, {"name": "multigccf", "embedding_dim": 8, "layers": [8], "multi_graph": False,
                             "skip": False, "message": "transform"})
    msg = torch.tanh(tr.item.weight[torch.from_numpy(mine)] @ tr.user_messages[0].weight.T).mean(0)
    want = torch.tanh(tr.user_layers[0](torch.cat([tr.user.weight[u0], torch.tanh(
        (tr.item.weight[torch.from_numpy(mine)] @ tr.user_messages[0].weight.T).mean(0))])))
    assert torch.allclose(tr.representations()[0][u0], want, atol=1e-5)
    assert not torch.allclose(want, torch.tanh(tr.user_layers[0](torch.cat([tr.user.weight[u0], msg]))), atol=1e-4)


def test_l2q_scores_are_the_packed_one_bit_codes(clustered):
    from llmrec.models.graph.l2q import code_scores

    space, *_ = interaction_view(clustered)
    m = build_model(space, {"name": "l2q_gcn", "embedding_dim": 16, "n_layers": 2})
    m.eval()
    ub, us, ib, is_ = m.codes()
    assert ub.dtype == np.uint8 and ub.shape == (space.n_users, 3, 2) and us.dtype == np.float16
    np.testing.assert_allclose(code_scores(ub, us, ib, is_, 16), m.full_scores(torch.arange(space.n_users)).numpy(),
                               rtol=1e-4, atol=1e-6)
    cross = build_model(space, {"name": "l2q_gcn", "embedding_dim": 16, "score": "cross"})
    cross.eval()
    np.testing.assert_allclose(code_scores(*cross.codes(), 16, cross=True),
                               cross.full_scores(torch.arange(space.n_users)).numpy(), rtol=1e-4, atol=1e-6)
    levels = [e.detach() for e in cross.levels()]
    coded = [torch.where(e >= 0, 1.0, -1.0) * e.abs().mean(1, keepdim=True).half().float() for e in levels]
    u = torch.stack(coded).sum(0)  # LightGCN's score (inner product of the layer sums), each layer coded
    np.testing.assert_allclose(cross.full_scores(torch.arange(space.n_users)).numpy(),
                               (u[: space.n_users] @ u[space.n_users:].T).numpy(), rtol=1e-4, atol=1e-6)
    # the authors' (BiGeaR) increasing level weights: level l's code times (l + 1) / 3, so its scores weigh
    # level l by ((l + 1) / 3)^2; the packed codes carry the weights in their scales
    inc = build_model(space, {"name": "l2q_gcn", "embedding_dim": 16, "layer_weights": "increasing"})
    inc.load_state_dict(m.state_dict())
    inc.eval()
    np.testing.assert_allclose(code_scores(*inc.codes(), 16), inc.full_scores(torch.arange(space.n_users)).numpy(),
                               rtol=1e-3, atol=1e-6)
    levels = [e.detach() for e in m.levels()]
    coded = [torch.where(e >= 0, 1.0, -1.0) * (e.abs().mean(1, keepdim=True) * (k + 1) / 3).half().float()
             for k, e in enumerate(levels)]
    u = torch.cat(coded, 1)
    np.testing.assert_allclose(inc.full_scores(torch.arange(space.n_users)).numpy(),
                               (u[: space.n_users] @ u[space.n_users:].T).numpy(), rtol=1e-4, atol=1e-6)
    big = build_model(space, {"name": "l2q_gcn"})
    assert big.float_bytes / big.code_bytes >= 8  # 3 x (64 bits + 16-bit scale) = 30 bytes vs 256
    final = build_model(space, {"name": "l2q_gcn", "levels": "final"})
    assert final.code_bytes == 64 / 8 + 2 and len(final.levels()) == 1


def test_l2q_annealing_and_straight_through_gradient(clustered):
    space, *_ = interaction_view(clustered)
    m = build_model(space, {"name": "l2q_gcn", "embedding_dim": 8, "warmup_steps": 3, "anneal_steps": 10})
    m.train()
    warm = m.representations()[0]  # warm-up: the full-precision levels themselves
    assert torch.allclose(warm, torch.cat([e[: space.n_users] for e in m.levels()], 1))
    for _ in range(2):
        m.representations()
    assert m.temperature() == pytest.approx(1.0)
    for _ in range(10):
        m.representations()
    assert int(m.step) == 13 and m.temperature() == pytest.approx(0.01)
    ste = build_model(space, {"name": "l2q_gcn", "embedding_dim": 8, "sign": "ste", "n_layers": 0, "warmup_steps": 0})
    ste.train()
    u, _ = ste.representations()
    assert set(torch.unique((u / u.abs().mean(1, keepdim=True)).round()).tolist()) <= {-1.0, 1.0}
    u.sum().backward()
    w = ste.user.weight.detach()
    scale = w.abs().mean(1, keepdim=True)
    sign = torch.where(w >= 0, 1.0, -1.0)
    # d/dw of sign(w) * scale summed: the straight-through part (scale, only where |w| <= scale) plus the
    # scale's own gradient (sign(w) / d times the row's sum of signs)
    want = scale * (w.abs() <= scale) + sign * sign.sum(1, keepdim=True) / w.shape[1]
    assert torch.allclose(ste.user.weight.grad, want, atol=1e-6)


def _rated(rows):
    """(user, item, time, rating) rows as a RecData with a rating column."""
    data = _table([r[:3] for r in rows])
    data.columns["rating"] = np.array([r[3] for r in rows], dtype=np.float32)
    return data


BEHAVIOURS = [{"name": "rated"}, {"name": "loved", "min": 5}, {"name": "liked", "min": 4}]


def test_behaviour_graphs_never_hold_a_held_out_target_pair():
    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"i{i}", t, int(rng.integers(1, 6))) for t, (u, i) in
            enumerate((u, i) for u in range(30) for i in rng.choice(40, 15, replace=False))]
    data = _rated(rows)
    c = GraphViewConfig(behaviours=BEHAVIOURS, train_on="all")
    space, train, valid, test = interaction_view(data, config=c)
    g = space.graph
    assert list(g.behaviours) == ["rated", "loved", "liked"]
    held = {(int(u), int(i)) for ev in (valid, test) for u, gold in zip(ev.users.tolist(), ev.gold) for i in gold}
    for name, (u, i) in g.behaviours.items():
        assert not ({(int(a), int(b)) for a, b in zip(u, i)} & held), name
    # the target graph is the liked (>= 4) training edges; train rows carry their behaviour index
    liked = {(space.users[u], space.items[i]) for u, i, _, r in rows if r >= 4 and i in space.items}
    assert {(int(a), int(b)) for a, b in zip(*g.behaviours["liked"])} <= liked
    assert set(train.behaviour.tolist()) == {0, 1, 2}
    assert len(train) == sum(len(e[0]) for e in g.behaviours.values())
    stats = graph_stats(data, config=c)
    assert stats.behaviour_edges_dropped["rated"] >= len(held)  # every held pair was rated, and dropped
    only = interaction_view(data, config=c.model_copy(update={"train_on": "target"}))[1]
    assert only.behaviour is None and len(only) == len(g.behaviours["liked"][0])
    union = interaction_view(data, config=c.model_copy(update={"graph": "union"}))[0].graph
    assert len(union.users) == len({(int(a), int(b)) for e in g.behaviours.values() for a, b in zip(*e)})


def test_behaviour_rules_name_their_field():
    data = _rated([("u", "a", 1, 3), ("u", "b", 2, 4), ("u", "c", 3, 5)])
    with pytest.raises(DataError, match=r"behaviours\[0\] \(x\).column: 'stars' is not a column"):
        interaction_view(data, config=GraphViewConfig(behaviours=[{"name": "x", "column": "stars"}]))
    with pytest.raises(DataError, match=r"target behaviour matches no row"):
        interaction_view(data, config=GraphViewConfig(behaviours=[{"name": "top", "min": 6}]))
    with pytest.raises(ValueError, match="names must be distinct"):
        GraphViewConfig(behaviours=[{"name": "a"}, {"name": "a"}])


def test_cigf_scores_each_row_by_its_behaviour_and_full_scores_the_target():
    rng = np.random.default_rng(2)
    rows = [(f"u{u}", f"i{i}", t, int(rng.integers(1, 6))) for t, (u, i) in
            enumerate((u, i) for u in range(30) for i in rng.choice(40, 15, replace=False))]
    space, train, _, _ = interaction_view(_rated(rows), config=GraphViewConfig(behaviours=BEHAVIOURS, train_on="all"))
    m = build_model(space, {"name": "cigf", "embedding_dim": 8})
    m.eval()
    users = torch.arange(4)
    full = m.full_scores(users)
    items = torch.arange(1, space.n_items).repeat(4, 1)
    as_target = m(PairBatch(users, items, torch.full((4,), 2)))
    assert torch.allclose(as_target, full[:, 1:], atol=1e-5)
    as_rated = m(PairBatch(users, items, torch.zeros(4, dtype=torch.long)))
    assert not torch.allclose(as_rated, as_target)  # another behaviour's gate and vectors
    bil = build_model(space, {"name": "cigf", "embedding_dim": 8, "decoder": "bilinear"})
    bil.eval()
    u, i = bil.representations()
    assert torch.allclose(bil.full_scores(users), u[2, :4] @ i[2].T, atol=1e-5)
    with pytest.raises(Exception, match="needs behaviour graphs"):
        build_model(interaction_view(_rated(rows))[0], {"name": "cigf"})


def test_graphsail_terms_vanish_for_an_unchanged_model_and_grow_when_it_moves(clustered):
    from llmrec.models.graph.graphsail import GraphSAIL, GraphSAILConfig

    space, train, _, _ = interaction_view(clustered)
    teacher = build_model(space, {"name": "lightgcn", "embedding_dim": 8})
    student = build_model(space, {"name": "lightgcn", "embedding_dim": 8})
    student.load_state_dict(teacher.state_dict())
    sail = GraphSAIL(student, teacher, space.graph, GraphSAILConfig(anchors=4))
    batch = BPRTask(space.n_items).make_batch(train, torch.arange(32), torch.Generator().manual_seed(0))
    student.train()
    same = sail.distillation(batch)
    assert set(same) == {"local", "global", "self"} and all(float(v.detach()) < 1e-7 for v in same.values())  # float32 round-off
    with torch.no_grad():
        student.user.weight.add_(0.05 * torch.randn_like(student.user.weight))
    moved = sail.distillation(batch)
    assert all(float(v.detach()) > 1e-8 for v in moved.values())
    loss = sail.batch_regularization(batch)
    loss.backward()
    assert student.user.weight.grad.abs().sum() > 0 and teacher.user.weight.grad is None
    off = GraphSAIL(student, teacher, space.graph, GraphSAILConfig.model_validate({"global": 0.0, "self": 0.0}))
    assert set(off.distillation(batch)) == {"local"}
    # the local term's gradient (sparse products with a stored-transpose backward) equals dense autograd's
    student.zero_grad()
    off.distillation(batch)["local"].backward()
    got = student.user.weight.grad.clone()
    student.zero_grad()
    su, si = student.representations()
    users, items = torch.unique(batch.users), torch.unique(batch.items.reshape(-1))
    cu, ci = (off.u_mean.to_dense() @ si)[users], (off.i_mean.to_dense() @ su)[items]
    lu = ((off.t_user[users] * off.t_user_centre[users]).sum(-1) - (su[users] * cu).sum(-1)).pow(2)
    li = ((off.t_item[items] * off.t_item_centre[items]).sum(-1) - (si[items] * ci).sum(-1)).pow(2)
    torch.cat([lu, li]).mean().backward()
    assert got.abs().sum() > 0 and torch.allclose(got, student.user.weight.grad, atol=1e-6)


def test_graphsail_local_term_readings_new_centres_and_cosine(clustered):
    """``student_centres: new`` averages the student's neighbours over its own graph (the teacher's centres stay
    on the old one); ``affinity: cosine`` compares angles, so a student that only rescales its vectors pays
    nothing under cosine and does under the dot product."""
    from llmrec.models.graph.graphsail import GraphSAIL, GraphSAILConfig

    space, train, _, _ = interaction_view(clustered)
    g = space.graph
    keep = np.arange(len(g.users)) % 3 != 0  # the teacher saw two thirds of the edges
    old = InteractionGraph(n_users=g.n_users, n_items=g.n_items, users=g.users[keep], items=g.items[keep])
    teacher = build_model(space, {"name": "lightgcn", "embedding_dim": 8})
    student = build_model(space, {"name": "lightgcn", "embedding_dim": 8})
    student.load_state_dict(teacher.state_dict())
    batch = BPRTask(space.n_items).make_batch(train, torch.arange(32), torch.Generator().manual_seed(0))
    local = {"global": 0.0, "self": 0.0}
    new = GraphSAIL(student, teacher, old, GraphSAILConfig.model_validate({**local, "student_centres": "new"}),
                    new_graph=g)
    su, si = student.representations()
    users, items = torch.unique(batch.users), torch.unique(batch.items.reshape(-1))
    tu, ti = teacher.representations()
    cu_new = (g.neighbours("user").to_dense() @ si)[users]
    cu_old = (old.neighbours("user").to_dense() @ ti)[users]
    ci_new = (g.neighbours("item").to_dense() @ su)[items]
    ci_old = (old.neighbours("item").to_dense() @ tu)[items]
    want = torch.cat([((tu[users] * cu_old).sum(-1) - (su[users] * cu_new).sum(-1)).pow(2),
                      ((ti[items] * ci_old).sum(-1) - (si[items] * ci_new).sum(-1)).pow(2)]).mean()
    got = new.distillation(batch)["local"]
    assert float(want) > 1e-6 and torch.allclose(got, want, atol=1e-6)  # same weights, different neighbours
    with pytest.raises(ValueError, match="student_centres: new needs"):
        GraphSAIL(student, teacher, old, GraphSAILConfig(student_centres="new"))
    dot = GraphSAIL(student, teacher, old, GraphSAILConfig.model_validate(local))
    cos = GraphSAIL(student, teacher, old, GraphSAILConfig.model_validate({**local, "affinity": "cosine"}))
    with torch.no_grad():
        student.user.weight.mul_(2.0)
        student.item.weight.mul_(2.0)
    assert float(dot.distillation(batch)["local"]) > 1e-5
    assert float(cos.distillation(batch)["local"]) < 1e-10


def test_time_blocks_cover_every_edge_once_in_time_order(clustered):
    from llmrec.experiments.incremental import IncrementalExperiment, time_blocks

    exp = IncrementalExperiment(name="t", data={"source": "synthetic"}, methods=[{"label": "f", "kind": "full"}],
                                base_fraction=0.5, blocks=3, holdout=0.2)
    space, blocks = time_blocks(clustered, exp)
    assert len(blocks) == 4
    edges = np.concatenate([np.concatenate(b) for b in blocks])
    distinct = len(set(zip(clustered.columns["user_id"], clustered.columns["item_id"])))
    assert len(edges) == len({(int(u), int(i)) for u, i in edges}) == distinct  # duplicates: the first kept
    sizes = [len(a) + len(b) for a, b in blocks]
    assert sizes[0] == distinct // 2 and max(sizes[1:]) - min(sizes[1:]) <= 1
    held = sum(len(b) for _, b in blocks) / len(edges)
    assert 0.1 < held < 0.3
    times = {(space.users[u], space.items[i]): t for u, i, t in zip(clustered.columns["user_id"],
                                                                     clustered.columns["item_id"],
                                                                     clustered.columns["timestamp"])}
    last = [max(times[(int(u), int(i))] for u, i in np.concatenate(b)) for b in blocks]
    first = [min(times[(int(u), int(i))] for u, i in np.concatenate(b)) for b in blocks]
    assert all(a < b for a, b in zip(last, first[1:]))


@pytest.mark.slow
def test_incremental_experiment_runs_every_method(clustered, tmp_path):
    from llmrec.experiments.incremental import IncrementalExperiment, run_incremental

    csv = tmp_path / "toy.csv"
    csv.write_text("user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in zip(
        clustered.columns["user_id"], clustered.columns["item_id"], clustered.columns["timestamp"])))
    exp = IncrementalExperiment(
        name="toy", seeds=[1], data={"source": "interactions", "path": str(csv)}, model={"name": "lightgcn",
                                                                                          "embedding_dim": 8},
        base_fraction=0.5, blocks=3, trainer={"epochs": 3, "batch_size": 128, "embedding_l2": 0.0, "progress": False},
        finetune={"epochs": 2}, methods=[{"label": "full", "kind": "full"}, {"label": "ft", "kind": "finetune"},
                                         {"label": "sail", "kind": "graphsail", "graphsail": {"anchors": 3}}])
    res = run_incremental(exp, tmp_path / "r.json")
    s = res["summary"]
    assert set(s) == {"full", "ft", "sail"} and s["full"]["seconds_vs_full"] == 1.0
    assert all(0 <= s[m]["next_recall@20_mean"] <= 1 and 0 <= s[m]["old_recall@20_mean"] <= 1 for m in s)
    assert (tmp_path / "r.png").exists()
    steps = json.loads((tmp_path / "r.json").read_text())["runs"][0]["steps"]
    base = steps[0]["base"]  # every trained model keeps its validation curve
    assert len(base["curve"]) == base["epochs"] == 3 and all(0 <= v <= 1 for v in base["curve"])
    assert all(len(row[m]["curve"]) == row[m]["epochs"] for row in steps[1:] for m in s)


def test_confrec_concatenates_graph_and_content_and_keeps_its_vectors(clustered, tmp_path):
    from dataclasses import replace

    space, train, valid, test = interaction_view(clustered)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(space.n_items, 6)).astype(np.float32)
    vectors[0] = 0
    space = replace(space, item_vectors=vectors)
    m = build_model(space, {"name": "confrec", "embedding_dim": 8})
    assert m.config.text_dim == 6
    u, i = m.representations()
    assert u.shape == (space.n_users, 16) and i.shape == (space.n_items, 16)
    content = m.content(torch.from_numpy(vectors))
    assert torch.allclose(i[:, 8:], content, atol=1e-6)
    mine = space.graph.items[space.graph.users == 0]
    assert torch.allclose(u[0, 8:], content[torch.from_numpy(mine)].mean(0), atol=1e-5)  # mean of its items
    only = build_model(space, {"name": "confrec", "embedding_dim": 8, "branches": "content"})
    assert only.representations()[0].shape == (space.n_users, 8)
    save_model(tmp_path / "c", m, space)
    loaded, _ = load_model(tmp_path / "c")  # the vectors are a buffer: the reload needs no knowledge job
    m.eval()
    assert torch.allclose(loaded.full_scores(torch.arange(3)), m.full_scores(torch.arange(3)), atol=1e-5)
    with pytest.raises(Exception, match="needs item vectors"):
        build_model(replace(space, item_vectors=None), {"name": "confrec"})


def test_tail_metrics_judge_only_rarely_trained_items(clustered):
    space, train, valid, test = interaction_view(clustered, config=GraphViewConfig(tail_degree=9))
    deg = np.bincount(train.items.numpy(), minlength=space.n_items)
    assert 0 < len(test.tail) < space.n_items - 1 and all(0 < deg[i] < 9 for i in test.tail)
    model = _Dot(torch.randn(space.n_users, 4), torch.randn(space.n_items, 4))
    got = BPRTask().evaluate(model, test, Trainer(TrainerConfig()))
    tail = set(test.tail.tolist())
    keep = [k for k, g in enumerate(test.gold) if set(g.tolist()) & tail]
    from llmrec.data.views import RankingEval

    only = RankingEval(test.users[keep], [np.array(sorted(set(test.gold[k].tolist()) & tail)) for k in keep],
                       [test.seen[k] for k in keep])
    want = BPRTask().evaluate(model, only, Trainer(TrainerConfig()))
    assert got["tail_recall@20"] == pytest.approx(want["recall@20"], abs=1e-6)
    assert got["recall@20"] != pytest.approx(got["tail_recall@20"])


def test_peer_split_files_are_the_view_s_split(clustered, tmp_path):
    from llmrec.experiments.harness import graph_split_files, recbole_graph_hyperparameters
    from llmrec.train_job import TrainJobConfig

    csv = tmp_path / "toy.csv"
    csv.write_text("user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in zip(
        clustered.columns["user_id"], clustered.columns["item_id"], clustered.columns["timestamp"])))
    job = TrainJobConfig(data={"source": "interactions", "path": str(csv)}, model={"name": "lightgcn"})
    files = graph_split_files(job)
    space, train, valid, test = interaction_view(clustered)
    inv_u = {v: k for k, v in space.users.items()}
    inv_i = {v: k for k, v in space.items.items()}
    assert sorted(map(tuple, files["train"])) == sorted((inv_u[u], inv_i[i]) for u, i in
                                                        zip(train.users.tolist(), train.items.tolist()))
    for part, ev in (("valid", valid), ("test", test)):
        want = sorted((inv_u[u], inv_i[int(i)]) for u, g in zip(ev.users.tolist(), ev.gold) for i in g)
        assert sorted(map(tuple, files[part])) == want  # the same gold pairs RecBole will rank
    assert recbole_graph_hyperparameters(job, "lightgcn") == {"embedding_size": 64, "n_layers": 2, "reg_weight": 1e-5,
                                                              "require_pow": False}


@pytest.mark.slow
def test_recommender_experiment_resumes_finished_variants(clustered, tmp_path, monkeypatch):
    from llmrec.experiments import harness

    csv = tmp_path / "toy.csv"
    csv.write_text("user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in zip(
        clustered.columns["user_id"], clustered.columns["item_id"], clustered.columns["timestamp"])))
    raw = {"name": "resume_test", "seeds": [1], "isolate": False,
           "datasets": {"toy": {"data": {"source": "interactions", "path": str(csv)},
                                "trainer": {"epochs": 2, "batch_size": 256, "embedding_l2": 0.0}}},
           "variants": [{"model": {"name": "mf", "embedding_dim": 8}},
                        {"model": {"name": "lightgcn", "embedding_dim": 8}}]}
    first = harness.run_experiment(harness.ExperimentConfig.model_validate(raw), out=tmp_path / "r.json")
    assert (tmp_path / "r.partial.json").exists()
    trained = []
    real = harness.run_variant
    monkeypatch.setattr(harness, "run_variant", lambda exp, ds, v, seeds: trained.append(v.key) or real(exp, ds, v, seeds))
    raw["variants"][1]["model"]["n_layers"] = 1  # lightgcn's settings change: only it trains again
    again = harness.run_experiment(harness.ExperimentConfig.model_validate(raw), out=tmp_path / "r.json")
    assert trained == ["lightgcn"]
    a, b = first["datasets"]["toy"]["variants"], again["datasets"]["toy"]["variants"]
    assert a["mf"]["ndcg@10_mean"] == b["mf"]["ndcg@10_mean"] and a["mf"]["runs"] == b["mf"]["runs"]
