"""The sequential family: the sequence view (per-position targets = every prefix's next item), the causal
and padding behaviour of SASRec and GRU4Rec, the next-item task's options, and the sequence world."""
import numpy as np
import pytest
import torch

from llmrec.data.synthetic import SequenceWorldConfig, generate_sequences
from llmrec.data.views import SeqBatch, SequenceViewConfig, sequence_stats, sequence_view
from llmrec.metrics import full_sort_metrics
from llmrec.models import build_model, resolve_model_config
from llmrec.train import NextItemTask


@pytest.fixture(scope="module")
def seqs():
    return generate_sequences(SequenceWorldConfig(n_users=40, n_items=50, min_length=5, max_length=15))


def test_per_position_targets_are_exactly_the_prefix_pairs(seqs):
    cfg = SequenceViewConfig(max_len=20, interactions="all", train="sequences")
    _, per_pos, valid, test = sequence_view(seqs, config=cfg)
    _, prefixes, valid2, test2 = sequence_view(seqs, config=cfg.model_copy(update={"train": "prefixes"}))
    pairs_a = set()
    for r in range(len(per_pos)):
        items, tgt = per_pos.items[r].tolist(), per_pos.target[r].tolist()
        for t in range(len(items)):
            if tgt[t]:
                hist = tuple(x for x in items[: t + 1] if x)
                pairs_a.add((int(per_pos.users[r]), hist, tgt[t]))
    pairs_b = {(int(u), tuple(x for x in h.tolist() if x), int(t))
               for u, h, t in zip(prefixes.users, prefixes.items, prefixes.target)}
    assert pairs_a == pairs_b and len(pairs_a) == len(prefixes)
    assert torch.equal(valid.items, valid2.items) and torch.equal(test.target, test2.target)
    # leave-one-out: a user's test history is the valid history plus the valid target
    v = valid.items[0][valid.items[0] > 0].tolist() + [int(valid.target[0])]
    assert test.items[0][test.items[0] > 0].tolist() == v[-20:]


def test_sequence_stats_count_what_is_dropped():
    world = generate_sequences(SequenceWorldConfig(n_users=10, n_items=20, min_length=3, max_length=6))
    s = sequence_stats(world, SequenceViewConfig(min_len=5, interactions="all"))
    kept = sum(1 for u in set(world.columns["user_id"]) if (world.columns["user_id"] == u).sum() >= 5)
    assert s.users == kept and s.users + s.dropped_users == 10
    assert s.interactions + s.dropped_interactions == len(world) and s.tied_timestamps == 0
    world.columns["timestamp"][:] = 0.0  # every timestamp tied: kept in file order, counted
    assert sequence_stats(world, SequenceViewConfig(min_len=3, interactions="all")).tied_timestamps == len(world) - 10
    with pytest.raises(Exception, match="min_len"):
        sequence_view(world, config=SequenceViewConfig(min_len=100, interactions="all"))


def test_user_samples_are_seeded_whole_sequences_and_differ_by_seed(seqs):
    from llmrec.data.views import user_sequences

    base = SequenceViewConfig(max_len=20, interactions="all")
    _, everyone, full = user_sequences(seqs, base)
    draws = {}
    for seed in (1, 2):
        c = base.model_copy(update={"sample_users": 0.5, "sample_seed": seed})
        _, by_user, stats = user_sequences(seqs, c)
        again = user_sequences(seqs, c)[1]
        assert again == by_user  # the same draw every time (the peer library reads the same one)
        assert stats.users == round(0.5 * full.users) and stats.sampled_out_users == full.users - stats.users
        assert stats.dropped_users == full.dropped_users
        # whole sequences: every sampled user's items are its full-data items (ids renumbered on the sample)
        space = user_sequences(seqs, c)[0]
        full_space = user_sequences(seqs, base)[0]
        back = {n: i for i, n in space.items.items()}
        full_back = {n: i for i, n in full_space.items.items()}
        assert all([back[x] for x in by_user[u]] == [full_back[x] for x in everyone[u]] for u in by_user)
        _, _, valid, test = sequence_view(seqs, config=c)
        assert len(valid) == len(test) == stats.users
        draws[seed] = set(by_user)
    assert draws[1] != draws[2]
    assert user_sequences(seqs, base.model_copy(update={"sample_users": 1.0}))[1] == everyone


def _space_and_test(seqs):
    space, _, _, test = sequence_view(seqs, config=SequenceViewConfig(max_len=12, interactions="all"))
    return space, test


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_position_logits_equal_each_prefix_logits_and_padding_is_invisible(seqs, name):
    space, test = _space_and_test(seqs)
    torch.manual_seed(0)
    extra = {"max_len": 12} if name == "sasrec" else {}
    model = build_model(space, resolve_model_config({"name": name, **extra})).eval()
    items = test.items[:6]
    n = int((items[0] > 0).sum())
    # one forward pass with a target at every real position == a forward pass per prefix (causality)
    target = torch.where(items > 0, torch.ones_like(items), torch.zeros_like(items))
    per_pos = model(SeqBatch(items, target, test.users[:6]))
    row0 = per_pos[:n]
    for t in range(n):
        prefix = torch.zeros_like(items[:1])
        real = items[0][items[0] > 0][: t + 1]
        prefix[0, -len(real):] = real
        alone = model(SeqBatch(prefix, torch.ones(1, dtype=torch.long), test.users[:1]))
        assert torch.allclose(row0[t], alone[0], atol=1e-4), (name, t)
    # the same history with less left padding scores the same
    short = items[:, -8:]
    keep = (items[:, :-8] == 0).all(1)
    a = model(SeqBatch(items[keep], torch.ones(int(keep.sum()), dtype=torch.long), test.users[:6][keep]))
    b = model(SeqBatch(short[keep], torch.ones(int(keep.sum()), dtype=torch.long), test.users[:6][keep]))
    assert keep.any() and torch.allclose(a, b, atol=1e-4)


def test_next_item_loss_is_the_mean_over_every_target(seqs):
    space, train, _, _ = sequence_view(seqs, config=SequenceViewConfig(max_len=12, interactions="all"))
    torch.manual_seed(0)
    model = build_model(space, resolve_model_config({"name": "sasrec", "max_len": 12})).eval()
    b = train.slice(torch.arange(4))
    rows = NextItemTask().row_loss(model, b)
    assert rows.shape == (int((b.target > 0).sum()),)
    logits = model(b)
    logits[:, 0] = -torch.inf
    expected = torch.nn.functional.cross_entropy(logits, b.target[b.target > 0], reduction="none")
    assert torch.allclose(rows, expected)


class _LovesHistory(torch.nn.Module):
    """Scores the items of the history highest, every other item by its id."""

    def __init__(self, n_items: int) -> None:
        super().__init__()
        self.n = n_items

    def forward(self, batch):
        s = torch.arange(self.n, dtype=torch.float32).repeat(len(batch), 1) / self.n
        return s.scatter(1, batch.items, 10.0)


def test_exclude_history_ranks_history_items_last(seqs):
    space, test = _space_and_test(seqs)
    ctx = type("Ctx", (), {"eval_batch_size": 64, "device": "cpu", "autocast": staticmethod(torch.autocast)})
    ctx.autocast = lambda: torch.autocast("cpu", enabled=False)
    with_history = NextItemTask().evaluate(_LovesHistory(space.n_items), test, ctx)
    without = NextItemTask(exclude_history=True).evaluate(_LovesHistory(space.n_items), test, ctx)
    def expected(exclude: bool) -> float:  # hit@10 computed by hand from the same rule
        hits = []
        for items, t in zip(test.items.tolist(), test.target.tolist()):
            hist = {x for x in items if x}
            score = {i: (10.0 if i in hist else i / space.n_items) for i in range(1, space.n_items)}
            if exclude:
                score = {i: v for i, v in score.items() if i not in hist}
            top = sorted(score, key=lambda i: -score[i])[:10]
            hits.append(t in top)
        return float(np.mean(hits))

    assert with_history["hit@10"] == pytest.approx(expected(False))
    assert without["hit@10"] == pytest.approx(expected(True))
    assert with_history["hit@10"] != without["hit@10"]


def test_sampled_negative_protocol_is_an_extra_computed_by_hand(seqs):
    space, test = _space_and_test(seqs)
    ctx = type("Ctx", (), {"eval_batch_size": 7, "device": "cpu"})
    ctx.autocast = lambda: torch.autocast("cpu", enabled=False)
    model = _LovesHistory(space.n_items)
    full = NextItemTask().evaluate(model, test, ctx)
    m = NextItemTask(sampled_negatives=20).evaluate(model, test, ctx)
    assert {k: m[k] for k in full} == full  # the full-ranking figures are untouched
    assert m == NextItemTask(sampled_negatives=20).evaluate(model, test, ctx)  # seeded: same negatives again
    hits, ndcg = [], []
    for r, (items, t) in enumerate(zip(test.items.tolist(), test.target.tolist())):
        hist = {x for x in items if x}
        pool = torch.tensor([i for i in range(1, space.n_items) if i not in hist and i != t])
        g = torch.Generator().manual_seed(r)  # seed 0 * 1_000_003 + the row's index in the split
        neg = pool[torch.randperm(len(pool), generator=g)[:20]].tolist()
        assert not (set(neg) & hist) and t not in neg
        score = lambda i: 10.0 if i in hist else i / space.n_items  # noqa: E731
        rank = 1 + sum(score(i) > score(t) for i in neg)
        hits.append(rank <= 10)
        ndcg.append((rank <= 10) / np.log2(rank + 1))
    assert m["sampled20_hit@10"] == pytest.approx(np.mean(hits))
    assert m["sampled20_ndcg@10"] == pytest.approx(np.mean(ndcg))
    assert m["sampled20_hit@10"] >= full["hit@10"]  # 20 rivals instead of every item
    with pytest.raises(ValueError, match="sampled_negatives"):
        NextItemTask(sampled_negatives=10_000).evaluate(model, test, ctx)


def test_mrr_is_reciprocal_rank_of_the_first_hit_within_k():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.9]])
    gold = torch.tensor([[False, False, True, False], [True, False, False, False]])
    m = full_sort_metrics(scores, gold, ks=(3,))
    assert m["mrr@3"].tolist() == pytest.approx([1 / 3, 0.0])


def test_sequence_world_follows_its_transitions():
    c = SequenceWorldConfig(n_users=60, n_items=80, follow=0.9, seed=3)
    w = generate_sequences(c)
    users, items = w.columns["user_id"], w.columns["item_id"].astype(int)
    within = sum(1 for u1, u2 in zip(users[:-1], users[1:]) if u1 == u2)
    assert within == len(w) - 60  # rows are grouped by user, in time order
    assert all(np.diff(w.columns["timestamp"][users == users[0]]) > 0)
    # the same consecutive pair recurs far more often than chance (80 x 80 possible pairs)
    pairs = [(a, b) for a, b, u1, u2 in zip(items[:-1], items[1:], users[:-1], users[1:]) if u1 == u2]
    top = max(pairs.count(p) for p in set(pairs[:200]))
    assert top >= 5
    with pytest.raises(ValueError, match="follow"):
        generate_sequences(SequenceWorldConfig(follow=1.5))


@pytest.mark.slow
def test_sequential_benchmark_slice_through_the_harness(tmp_path):
    """SASRec through the experiment harness on the sequence world; with the peers' environment (`make peers`),
    RecBole's SASRec on the same sequences in the same run."""
    import json
    import subprocess
    from pathlib import Path

    from typer.testing import CliRunner

    from llmrec.cli import app

    peers = Path(".venv-peers/bin/python")
    has_recbole = peers.exists() and subprocess.run([str(peers), "-c", "import recbole"], capture_output=True).returncode == 0
    out = tmp_path / "s.json"
    args = ["experiment", "sequential_benchmark", "--dataset", "sequences", "--variant", "sasrec",
            "--set", "seeds=[2021]", "--set", "datasets.sequences.trainer.epochs=2",
            "--set", "datasets.sequences.data.sequences.n_users=80", "--out", str(out)]
    if not has_recbole:
        args += ["--set", "peers=[]"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())["datasets"]["sequences"]
    s = r["variants"]["sasrec"]
    assert s["primary_metric"] == "ndcg@10" and 0 <= s["ndcg@10_mean"] <= 1 and s["train_pairs_per_second"] > 0
    assert {"hit@10_mean", "mrr@10_mean", "ndcg@20_mean"} <= set(s)
    if has_recbole:
        peer = r["peers"]["recbole:sasrec"]
        assert peer["version"] == "1.2.1" and 0 <= peer["ndcg@10_mean"] <= 1 and peer["train_pairs_per_second"] > 0


@pytest.mark.slow
def test_item_text_vectors_are_fused_saved_and_reloaded(tmp_path):
    from llmrec.data.synthetic import SequenceWorldConfig
    from llmrec.train_job import TrainJobConfig, prepare, train_prepared
    from llmrec.train.export import load_model, save_model

    job = TrainJobConfig(data={"source": "synthetic_sequences", "sequences": SequenceWorldConfig(
        n_users=30, n_items=40, max_length=12).model_dump()}, sequence={"max_len": 12, "interactions": "all"},
        model={"name": "sasrec", "max_len": 12, "hidden_size": 16, "inner_size": 32},
        knowledge={"source": "text", "kinds": ["item"]}, trainer={"epochs": 1, "batch_size": 8, "progress": False})
    p = prepare(job)
    vec = p.context.item_vectors
    assert vec.shape == (p.context.n_items, 384) and not vec[0].any() and np.abs(vec[1:]).sum(1).min() > 0
    model, result = train_prepared(job, p)
    assert model.config.text_dim == 384 and result["model"]["name"] == "sasrec"
    # the text vectors make the item table: changing them changes the scores
    with torch.no_grad():
        before = model(p.test.slice(torch.arange(4)))
        save_model(tmp_path / "m", model, p.context)
        loaded, _ = load_model(tmp_path / "m")
        assert torch.allclose(before, loaded(p.test.slice(torch.arange(4))), atol=1e-6)
        loaded.item_text.mul_(0)
        assert not torch.allclose(before, loaded(p.test.slice(torch.arange(4))), atol=1e-3)
    with pytest.raises(Exception, match="kinds"):
        prepare(job.model_copy(update={"knowledge": job.knowledge.model_copy(update={"kinds": ["item", "user"]})}))


def test_rsir_generation_respects_fidelity_and_never_repeats_history(seqs):
    from llmrec.augment import RSIRConfig, generate_continuations
    from llmrec.data.views import user_sequences

    space, by_user, _ = user_sequences(seqs, SequenceViewConfig(max_len=12, interactions="all"))
    real = [ids[:-2] for ids in by_user.values()]
    torch.manual_seed(0)
    model = build_model(space, resolve_model_config({"name": "sasrec", "max_len": 12})).eval()
    c = RSIRConfig(style="continue", generate=4, tau=3, exploit=0.5, sample_top=10)
    extra, counts = generate_continuations(model, real, 12, c)
    assert len(extra) == len(real) and counts["generated"] == 4 * len(real)
    assert 0 < counts["accepted"] < counts["generated"]  # a tight tau rejects some explored items
    with torch.no_grad():
        for seq, more in zip(real[:10], extra[:10]):
            assert not set(more) & set(seq) and len(set(more)) == len(more)
            window = torch.zeros(1, 12, dtype=torch.long)
            window[0, -len(seq[-12:]):] = torch.tensor(seq[-12:])
            logits = model(SeqBatch(window, torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long)))[0]
            logits[[0, *seq]] = -torch.inf
            for i in more:  # every accepted item ranks in the top tau under the real history alone
                assert int((logits > logits[i]).sum()) + 1 <= 3
    open_, counts_open = generate_continuations(model, real, 12, c.model_copy(update={"fidelity": False}))
    assert counts_open["accepted"] == counts_open["generated"] == 4 * len(real)


def test_rsir_regenerate_follows_the_authors_procedure(seqs):
    """style regenerate: new sequences from each real sequence's first item; with local 1 every step is the
    top-scored item of S not yet written, and a sequence stops exactly when no unwritten item of S ranks within
    the top tau (or S is used up, or max_len is reached)."""
    from llmrec.augment import RSIRConfig, generate_sequences
    from llmrec.data.views import user_sequences

    space, by_user, _ = user_sequences(seqs, SequenceViewConfig(max_len=12, interactions="all"))
    real = [ids[:-2] for ids in by_user.values()]
    torch.manual_seed(0)
    model = build_model(space, resolve_model_config({"name": "sasrec", "max_len": 12})).eval()

    def scores(prefix):
        window = torch.zeros(1, 12, dtype=torch.long)
        window[0, -len(prefix[-12:]):] = torch.tensor(prefix[-12:])
        with torch.no_grad():
            return model(SeqBatch(window, torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long)))[0]

    c = RSIRConfig(sequences=2, local=1.0, tau=4, min_len=2)
    out, counts = generate_sequences(model, real, 12, c)
    assert counts["generated"] == 2 * len(real) and 0 < counts["accepted"] <= counts["generated"]
    assert len({tuple(ids) for _, ids in out}) == len(out)  # duplicates dropped
    assert len({k for k, _ in out}) == len(out)  # local 1 is deterministic: one distinct sequence per real one
    stopped_by_fidelity = 0
    for k, ids in out[:15]:
        S = set(real[k])
        assert ids[0] == real[k][0] and len(set(ids)) == len(ids) and set(ids) <= S and 2 <= len(ids) <= 12
        for t in range(1, len(ids) + 1):
            sc = scores(ids[:t])
            left = [i for i in S if i not in ids[:t]]
            within = [i for i in left if int((sc > sc[i]).sum()) + 1 <= 4]
            if t < len(ids):  # it went on: some unwritten item of S was within the top tau, the next is S's best
                assert within and ids[t] == max(left, key=lambda i: float(sc[i]))
            elif len(ids) < 12:  # it stopped: nothing of S left, or nothing of it within the top tau
                assert not within
                stopped_by_fidelity += bool(left)
    assert stopped_by_fidelity > 0
    free, free_counts = generate_sequences(model, real, 12, c.model_copy(update={"fidelity": False}))
    assert free_counts["mean_length"] > counts["mean_length"]  # without the filter, sequences run on
    mixed, _ = generate_sequences(model, real, 12, c.model_copy(update={"local": 0.0, "sequences": 1}))
    assert any(not set(ids) <= set(real[k]) for k, ids in mixed)  # global steps write items outside S


@pytest.mark.slow
def test_rsir_rounds_train_successors_on_more_rows():
    from llmrec.augment import RSIRConfig
    from llmrec.experiments.augment import run_rsir
    from llmrec.train_job import TrainJobConfig

    job = TrainJobConfig(data={"source": "synthetic_sequences", "sequences": {"n_users": 40, "n_items": 30,
                                                                             "max_length": 12}},
                         sequence={"max_len": 12, "interactions": "all"}, model={"name": "gru4rec", "embedding_size": 8,
                                                                                  "hidden_size": 8},
                         trainer={"epochs": 1, "batch_size": 8, "progress": False})
    out = run_rsir(job, RSIRConfig(rounds=2, generate=3))
    r = out["rounds"]
    assert [x["round"] for x in r] == [0, 1, 2] and r[0]["train_rows"] < r[1]["train_rows"] < r[2]["train_rows"]
    assert all("ndcg@10" in x["test"] for x in r) and r[1]["accepted"] <= r[1]["generated"]


def test_diffusion_schedule_and_rounding():
    from llmrec.augment.diffuasr import Schedule, round_to_items

    s = Schedule.linear(50, 1e-4, 0.02)
    assert (s.alpha_bar[1:] < s.alpha_bar[:-1]).all() and 0.5 < float(s.alpha_bar[-1]) < 1
    x0, eps, t = torch.randn(3, 4, 2), torch.randn(3, 4, 2), torch.tensor([0, 10, 49])
    a = s.alpha_bar[t].view(-1, 1, 1)
    assert torch.allclose(s.noised(x0, t, eps), a.sqrt() * x0 + (1 - a).sqrt() * eps)
    table = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    gen = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]]])
    # position 0 -> item 1 is excluded, so 2; position 1 -> 1 and 2 are taken, so 3 is what is left;
    # position 2 -> only padding (never chosen) would remain: -inf everywhere, argmax picks index 0's slot
    out = round_to_items(gen[:, :2], table, [{1}])[0]
    assert out == [2, 3]


@pytest.mark.slow
def test_diffusion_learns_the_prefix_distribution_of_its_guide():
    from llmrec.augment.diffuasr import DiffuASRConfig, ddim_sample, round_to_items, train_diffusion

    g = torch.Generator().manual_seed(0)
    a_dir, b_dir = torch.zeros(8), torch.zeros(8)
    a_dir[0], b_dir[1] = 1.0, 1.0
    table = torch.cat([torch.zeros(1, 8), a_dir + 0.3 * torch.randn(20, 8, generator=g),
                       b_dir + 0.3 * torch.randn(20, 8, generator=g)])  # items 1-20 "A", 21-40 "B"
    prefixes, guides = [], []
    for n in range(200):
        group = range(1, 21) if n % 2 == 0 else range(21, 41)
        ids = torch.tensor(list(group))[torch.randperm(20, generator=g)[:4]]
        prefixes.append(table[ids])
        guides.append((a_dir if n % 2 == 0 else b_dir) + 0.1 * torch.randn(8, generator=g))
    c = DiffuASRConfig(prefix=4, steps=100, hidden=128, epochs=150, batch_size=64, sample_steps=20)
    model, sched, losses = train_diffusion(torch.stack(prefixes), torch.stack(guides), c)
    assert losses[-1] < 0.6 * losses[0]
    gen = ddim_sample(model, sched, torch.stack([a_dir] * 10 + [b_dir] * 10), c.sample_steps)
    items = round_to_items(gen, table, [set() for _ in range(20)])
    right = sum(i <= 20 for row in items[:10] for i in row) + sum(i > 20 for row in items[10:] for i in row)
    assert right / 80 >= 0.85  # the guide decides which cluster the generated prefix comes from
    assert torch.equal(gen, ddim_sample(model, sched, torch.stack([a_dir] * 10 + [b_dir] * 10), c.sample_steps))


def test_diffuasr_prefixes_every_user_with_the_authors_settings():
    """users: all (the authors' released code) writes a prefix for every user, short or not, before the
    user's own items; the guide's sum and mean condition the noise model differently."""
    from llmrec.augment.diffuasr import DiffuASRConfig
    from llmrec.augment.rounds import prefix_users, short_user_prefixes, short_users, with_prefixes

    rng = np.random.default_rng(0)
    real = [list(rng.choice(np.arange(1, 60), size=n, replace=False)) for n in [4, 6, 15, 20, 25, 30] * 4]
    table = torch.randn(60, 8, generator=torch.Generator().manual_seed(0))
    base = dict(prefix=3, steps=20, epochs=3, hidden=16, short_below=12, sample_steps=4)
    short = DiffuASRConfig(**base)
    every = DiffuASRConfig(**base, users="all", guide="sum")
    assert prefix_users(real, short).tolist() == short_users(real, short).tolist() and 0 < short_users(real, short).sum() < len(real)
    assert prefix_users(real, every).all()
    out, losses = short_user_prefixes(table, real, prefix_users(real, every), 60, every)
    assert len(out["diffusion"]) == len(real) and all(len(p) == 3 for p in out["diffusion"])
    for ids, pre in zip(real, out["diffusion"]):
        assert not set(pre) & set(ids)  # a prefix never repeats the user's own items
    seqs = with_prefixes(list(range(len(real))), real, prefix_users(real, every), out["diffusion"])
    assert all(s[3:] == list(r) and len(s) == len(r) + 3 for (_, s), r in zip(seqs, real))
    _, mean_losses = short_user_prefixes(table, real, prefix_users(real, every), 60,
                                         every.model_copy(update={"guide": "mean"}))
    assert mean_losses["diffusion_loss_first_last"] != losses["diffusion_loss_first_last"]


def test_guide_nearest_prefix_is_the_guides_nearest_unused_items():
    """The generator-free control: the prefix items are the guide's highest-cosine items, the user's own left out."""
    from llmrec.augment.diffuasr import DiffuASRConfig
    from llmrec.augment.rounds import short_user_prefixes

    rng = np.random.default_rng(1)
    real = [list(rng.choice(np.arange(1, 50), size=n, replace=False)) for n in [8, 12, 20] * 3]
    table = torch.randn(50, 6, generator=torch.Generator().manual_seed(1))
    c = DiffuASRConfig(prefix=4, steps=10, epochs=1, hidden=16, sample_steps=2, users="all")
    everyone = np.ones(len(real), dtype=bool)
    out, _ = short_user_prefixes(table, real, everyone, 50, c, nearest=True)
    assert set(out) == {"diffusion", "random_prefix", "guide_nearest"}
    unit = torch.nn.functional.normalize(table, dim=1)
    for ids, pre in zip(real, out["guide_nearest"]):
        sims = unit @ torch.nn.functional.normalize(table[torch.tensor(ids)].mean(0), dim=0)
        sims[[0, *ids]] = -torch.inf
        assert pre == sims.topk(4).indices.tolist()
    plain, _ = short_user_prefixes(table, real, everyone, 50, c)
    assert set(plain) == {"diffusion", "random_prefix"} and plain["diffusion"] == out["diffusion"]


@pytest.mark.slow
def test_prefix_oracle_cuts_long_users_and_measures_every_prefix():
    """diffuasr_runs: [oracle]: a share of the long users lose their first items; the oracle puts exactly those back
    (recovery 1 where they are distinct), the other prefixes recover a share in [0, 1], every variant is
    evaluated on all users and on the cut ones."""
    from llmrec.augment.diffuasr import DiffuASRConfig
    from llmrec.experiments.augment import PREFIX_VARIANTS, run_prefix_oracle
    from llmrec.train_job import TrainJobConfig

    job = TrainJobConfig(data={"source": "synthetic_sequences", "sequences": {"n_users": 40, "n_items": 60,
                                                                             "min_length": 5, "max_length": 25}},
                         sequence={"max_len": 30, "interactions": "all", "train": "sequences"},
                         model={"name": "sasrec", "max_len": 30, "hidden_size": 16, "inner_size": 32},
                         trainer={"epochs": 1, "batch_size": 8, "progress": False})
    out = run_prefix_oracle(job, DiffuASRConfig(prefix=3, steps=50, epochs=5, hidden=32), fraction=0.5)
    assert 0 < out["cut_users"] < out["users"]
    assert set(out["recovery"]) == set(PREFIX_VARIANTS[1:]) and 0 < out["recovery_chance"] < 0.2
    assert out["recovery"]["oracle"] > max(out["recovery"][v] for v in PREFIX_VARIANTS[2:])
    assert all(0 <= r <= 1 for r in out["recovery"].values())
    for name in PREFIX_VARIANTS:
        assert "ndcg@10" in out[name]["test"] and "ndcg@10" in out[name]["test_cut_users"]
    with pytest.raises(ValueError, match="diffuasr.prefix: no user has 200 training items"):
        run_prefix_oracle(job, DiffuASRConfig(prefix=100), fraction=0.5)


@pytest.mark.slow
def test_diffuasr_run_prepends_to_short_users_only():
    from llmrec.augment.diffuasr import DiffuASRConfig
    from llmrec.experiments.augment import run_diffuasr
    from llmrec.train_job import TrainJobConfig

    job = TrainJobConfig(data={"source": "synthetic_sequences", "sequences": {"n_users": 40, "n_items": 40,
                                                                             "min_length": 5, "max_length": 25}},
                         sequence={"max_len": 30, "interactions": "all"},
                         model={"name": "sasrec", "max_len": 30, "hidden_size": 16, "inner_size": 32},
                         trainer={"epochs": 1, "batch_size": 8, "progress": False})
    out = run_diffuasr(job, DiffuASRConfig(prefix=3, steps=50, epochs=5, hidden=32, short_below=12))
    assert 0 < out["short_users"] < out["users"]
    for name in ("base", "diffusion", "random_prefix"):
        assert "ndcg@10" in out[name]["test"] and "ndcg@10" in out[name]["test_short_users"]


def _experiment(tmp_path, name: str, settings: list[str]) -> dict:
    """Run ``llmrec experiment NAME --set ...`` into a temporary result file and read it back."""
    import json

    from typer.testing import CliRunner

    from llmrec.cli import app

    out = tmp_path / f"{name}.json"
    # output= as well: the experiments keep their resume caches beside the configured output, not --out
    args = ["experiment", name, *[x for kv in settings for x in ("--set", kv)], "--set", f"output={out}",
            "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert out.with_suffix(".png").exists()
    return json.loads(out.read_text())


@pytest.mark.slow
def test_augment_experiment_slice(tmp_path):
    r = _experiment(tmp_path, "sequential_augment", [
        "seeds=[2021]", "job.trainer.epochs=1", "job.data.sequences.n_users=40", "job.data.sequences.n_items=40",
        "job.data.sequences.min_length=5", "job.data.sequences.max_length=20", "job.model.hidden_size=16",
        "job.model.inner_size=32", "rsir.rounds=1", "diffuasr.epochs=3", "diffuasr.prefix=3",
        "diffuasr.short_below=10"])["summary"]
    assert [x["round"] for x in r["rsir"]] == [0, 1] and r["rsir_no_filter"][1]["acceptance"] == 1.0
    assert 0 <= r["rsir"][1]["acceptance"] <= 1 and "ndcg@10_mean" in r["rsir"][1]
    assert r["rsir_duplicates"][1]["acceptance"] is None and "ndcg@10_mean" in r["rsir_duplicates"][1]
    assert set(r["diffuasr"]) >= {"base", "diffusion", "random_prefix"}


@pytest.mark.slow
def test_performance_law_experiment_slice(tmp_path):
    r = _experiment(tmp_path, "performance_law", [
        "job.trainer.epochs=1", "job.data.sequences.n_users=40", "job.data.sequences.n_items=30",
        "job.data.sequences.max_length=15", "layers=[1,2]", "widths=[8,16]", "fractions=[0.5,1.0]",
        "data_variants=[{}, {sequences: {follow: 0.95}}]", "budgets=[100, 100000]", "seed_repeats=[7]"])
    assert len(r["points"]) == 16 and sum(r["heldout"]) == 5
    # every point trained again under seed 7: the spread between the runs is reported as the noise floor
    assert all(len(p["repeats"]) == 1 and 0 <= p["repeats"][0] <= 1 for p in r["points"])
    assert r["noise"]["seed_floor"] == pytest.approx(r["noise"]["between_seeds"] / 2 ** 0.5)
    assert r["noise"]["test_sampling"] > 0 and all(p["test_users"] == r["points"][0]["test_users"] for p in r["points"])
    assert set(r["fits"]) == {"d_prime", "tokens", "d_prime_seed_mean"}
    assert r["fits"]["d_prime_seed_mean"]["mape_heldout"] >= 0
    assert [p["data_variant"] for p in r["points"]] == [0] * 8 + [1] * 8 and -1 <= r["apen_spearman"] <= 1
    assert r["fits"]["d_prime"]["mape_heldout"] >= 0
    pts = r["points"]
    assert pts[0]["tokens"] < pts[-1]["tokens"] and pts[-1]["d_prime"] == pytest.approx(pts[-1]["tokens"] * pts[-1]["apen"])
    assert r["recommended"]["layers"] in (1, 2)
    budgets = r["recommended_for_budgets"]  # a size per (data variant, token budget), D' from its full-data ApEn
    assert [(b["data_variant"], b["tokens"]) for b in budgets] == [(0, 100), (0, 100000), (1, 100), (1, 100000)]
    assert budgets[3]["d_prime"] == pytest.approx(100000 * pts[-1]["apen"])
    assert all(b["layers"] in (1, 2) and b["width"] in (8, 16) for b in budgets)


def test_a_variant_overrides_the_data_sets_sequence_view():
    from llmrec.experiments.harness import job_config, load_experiment

    exp = load_experiment("sequential_benchmark")
    by_key = {v.key: v for v in exp.variants}
    rows = job_config(exp, "ml100k", by_key["sasrec"], 1)
    positions = job_config(exp, "ml100k", by_key["sasrec (all positions)"], 1)
    assert (rows.sequence.train, rows.trainer.batch_size) == ("prefixes", 256)  # RecBole's batches, for the peer
    assert (positions.sequence.train, positions.trainer.batch_size) == ("sequences", 32)
    assert rows.sequence.max_len == positions.sequence.max_len == 50 and rows.trainer.lr_decay == 1.0


def test_augment_experiment_resumes_after_a_kill(tmp_path, monkeypatch):
    """A run killed after RSIR keeps RSIR's finished runs; the rerun trains only what is missing, and a run
    over more seeds only the new seed."""
    import json

    import llmrec.experiments.augment as aug
    from llmrec.experiments.kinds import load_kind

    out = tmp_path / "aug.json"
    exp = load_kind("sequential_augment", "augment", ["seeds=[7]", "rsir.rounds=1", f"output={out}",
                                                     "rsir_control=false"])
    metrics = {m: 0.1 for m in exp.metrics}
    calls = []

    def fake_rsir(job, c, data=None, duplicates=False):  # the bookkeeping is under test, not RSIR itself
        calls.append(("duplicates" if duplicates else "rsir", c.fidelity, c.seed))
        return {"rounds": [{"test": metrics, "acceptance": None}, {"test": metrics, "acceptance": 0.5}]}

    def killed(job, c, data=None):
        raise KeyboardInterrupt

    def fake_diffuasr(job, c, data=None):
        calls.append(("diffuasr", c.seed))
        part = {"test": metrics, "test_short_users": metrics}
        return {"short_users": 3, "users": 10, "base": part, "diffusion": part, "random_prefix": part}

    monkeypatch.setattr(aug, "load_data", lambda c: type("D", (), {"name": "fake"})())
    monkeypatch.setattr(aug, "run_rsir", fake_rsir)
    monkeypatch.setattr(aug, "run_diffuasr", killed)
    partial = out.with_suffix(".partial.json")
    with pytest.raises(KeyboardInterrupt):
        aug.run_augment(exp)
    assert calls == [("rsir", True, 7), ("rsir", False, 7)] and partial.exists()
    monkeypatch.setattr(aug, "run_diffuasr", fake_diffuasr)
    aug.run_augment(exp)
    assert calls[2:] == [("diffuasr", 7)]  # RSIR was not trained again
    kept = {(d["label"], d["seed"]) for d in map(json.loads, json.loads(partial.read_text())["runs"])}
    assert out.exists() and kept == {("rsir", 7), ("rsir_no_filter", 7), ("diffuasr", 7)}
    more = load_kind("sequential_augment", "augment", ["seeds=[7, 8]", "rsir.rounds=1", f"output={out}",
                                                      "rsir_control=false"])
    aug.run_augment(more)
    assert calls[3:] == [("rsir", True, 8), ("rsir", False, 8), ("diffuasr", 8)]  # seed 7 reused
    # adding the duplicates control trains only the control; its summary sits beside RSIR's
    control = load_kind("sequential_augment", "augment", ["seeds=[7]", "rsir.rounds=1", f"output={out}"])
    result = aug.run_augment(control)
    assert calls[6:] == [("duplicates", True, 7)] and "rsir_duplicates" in result["summary"]
    del calls[6:]
    changed = load_kind("sequential_augment", "augment", ["seeds=[7]", "rsir.rounds=2", f"output={out}",
                                                         "rsir_control=false"])
    monkeypatch.setattr(aug, "run_diffuasr", killed)
    with pytest.raises(KeyboardInterrupt):
        aug.run_augment(changed)  # other settings never reuse the saved runs
    assert calls[6:] == [("rsir", True, 7), ("rsir", False, 7)]


def test_fast_dropout_keeps_the_distribution_of_nn_dropout():
    from llmrec.models.sequential.base import dropout
    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = dropout(x, 0.3, True)
    kept = (y > 0).float().mean().item()
    assert abs(kept - 0.7) < 0.005 and torch.allclose(y[y > 0], torch.full_like(y[y > 0], 1 / 0.7))
    assert abs(y.mean().item() - 1.0) < 0.01 and torch.equal(dropout(x, 0.3, False), x)


def test_sasrec_written_out_attention_equals_the_fused_kernel(seqs):
    # training mode with (almost) no dropout takes the written-out attention path; eval takes the fused kernel
    space, test = _space_and_test(seqs)
    torch.manual_seed(0)
    model = build_model(space, resolve_model_config({"name": "sasrec", "max_len": 12, "hidden_dropout": 1e-12,
                                                     "attn_dropout": 1e-12}))
    batch = SeqBatch(test.items[:8], test.target[:8], test.users[:8])
    train_out = model.train()(batch)
    eval_out = model.eval()(batch)
    assert torch.allclose(train_out, eval_out, atol=1e-5)


def _pairs(batch):
    """(user, context, target) for every target of a per-position batch."""
    out = []
    for r in range(len(batch)):
        items, tgt = batch.items[r].tolist(), batch.target[r].tolist()
        for t in range(len(items)):
            if tgt[t]:
                out.append((int(batch.users[r]), tuple(x for x in items[: t + 1] if x), tgt[t]))
    return out


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_windows_make_every_prefix_pair_a_target_once(seqs, stride):
    from collections import Counter

    L = 4  # the fixture's sequences are 5-15 long, so most users need several windows
    cfg = SequenceViewConfig(max_len=L, interactions="all", train="sequences", stride=stride)
    _, windows, _, _ = sequence_view(seqs, config=cfg)
    _, prefixes, _, _ = sequence_view(seqs, config=cfg.model_copy(update={"train": "prefixes", "stride": None}))
    got = _pairs(windows)
    rows = Counter((int(u), tuple(x for x in h.tolist() if x), int(t))
                   for u, h, t in zip(prefixes.users, prefixes.items, prefixes.target))
    assert len(got) == sum(rows.values())  # every pair once
    if stride == 1:  # RecBole's prefix rows exactly
        assert Counter(got) == rows
    # each target's window context is the end of its prefix row, at least L - stride items (or all of it)
    for u, ctx, t in sorted(got, key=lambda g: -len(g[1])):
        match = [k for k, n in rows.items() if n and k[0] == u and k[2] == t and k[1][-len(ctx):] == ctx
                 and len(ctx) >= min(len(k[1]), L - stride)]
        assert match, (u, ctx, t)
        rows[match[0]] -= 1
    last_only = sequence_view(seqs, config=cfg.model_copy(update={"stride": None}))[1]
    assert len(_pairs(last_only)) < len(got)


def test_rsir_duplicates_control_repeats_the_real_rows_and_generates_nothing():
    from llmrec.augment.rsir import RSIRConfig
    from llmrec.experiments.augment import run_rsir
    from llmrec.train_job import TrainJobConfig

    job = TrainJobConfig.model_validate({
        "data": {"source": "synthetic_sequences", "sequences": {"n_users": 20, "n_items": 20, "min_length": 5,
                                                                 "max_length": 10}},
        "sequence": {"max_len": 10, "interactions": "all", "train": "sequences"},
        "model": {"name": "sasrec", "hidden_size": 8, "inner_size": 16, "max_len": 10},
        "trainer": {"epochs": 1, "batch_size": 8, "progress": False}})
    r = run_rsir(job, RSIRConfig(rounds=2), duplicates=True)["rounds"]
    assert [x["train_rows"] for x in r] == [20, 40, 60] and r[1]["generated"] == 0


def _augment_job(tmp_path, augment: dict) -> dict:
    return {"data": {"source": "synthetic_sequences", "sequences": {"n_users": 40, "n_items": 40, "min_length": 5,
                                                                    "max_length": 25}},
            "sequence": {"max_len": 30, "interactions": "all"},
            "model": {"name": "sasrec", "max_len": 30, "hidden_size": 16, "inner_size": 32},
            "trainer": {"epochs": 1, "batch_size": 8, "progress": False}, "augment": augment,
            "output_dir": str(tmp_path / "run")}


def test_rsir_is_a_job_option_with_the_benchmarks_rounds(tmp_path):
    """``augment: {method: rsir}`` trains the rounds through the training job, saves the last model and
    reports every round; the benchmark's ``run_rsir`` is the same procedure (identical metrics)."""
    import llmrec
    from llmrec.augment import RSIRConfig
    from llmrec.experiments.augment import run_rsir
    from llmrec.train_job import TrainJobConfig

    raw = _augment_job(tmp_path, {"method": "rsir", "rsir": {"rounds": 2, "generate": 3}})
    rec = llmrec.train(raw)
    rounds = rec.result["augment"]["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert rounds[0]["train_rows"] < rounds[1]["train_rows"] < rounds[2]["train_rows"]
    assert rec.result["test"] == rounds[-1]["test"]  # the saved model is the last round's
    bench = run_rsir(TrainJobConfig.model_validate({**raw, "augment": None}), RSIRConfig(rounds=2, generate=3))
    assert [r["test"] for r in bench["rounds"]] == [r["test"] for r in rounds]
    assert (tmp_path / "run" / "checkpoint" / "augment-2").is_dir()  # each training resumes on its own
    user = next(iter(llmrec.load(tmp_path / "run").context.users))
    assert len(llmrec.load(tmp_path / "run").recommend(user, k=3)) == 3


def test_diffuasr_is_a_job_option_and_augment_is_refused_where_it_cannot_apply(tmp_path):
    import llmrec
    from llmrec.errors import ConfigError

    rec = llmrec.train(_augment_job(tmp_path, {"method": "diffuasr", "diffuasr": {
        "prefix": 3, "steps": 50, "epochs": 5, "hidden": 32, "short_below": 12}}))
    a = rec.result["augment"]
    assert a["method"] == "diffuasr" and 0 < a["prefixed_users"] < a["users"]
    assert "ndcg@5" in a["base"]["test"] and len(a["diffusion_loss_first_last"]) == 2
    assert (tmp_path / "run" / "checkpoint" / "augment-1").is_dir()  # retrained after the prefixes were added
    with pytest.raises(ConfigError, match="augment: RSIR and DiffuASR augment user sequences; mf is a graph"):
        llmrec.train({**_augment_job(tmp_path, {"method": "rsir"}), "model": {"name": "mf"}, "sequence": {}})
    with pytest.raises(ConfigError, match="set sequence.train: sequences"):
        llmrec.train({**_augment_job(tmp_path, {"method": "rsir"}), "sequence": {"train": "prefixes"}})
