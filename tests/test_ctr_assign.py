"""AutoAssign+ (llmrec.ctr.assign): shared / exclusive id rows, the fixed rules, eviction, the critic's
counterfactual values, the memory budget; a RecData as time-ordered shard chunks; the generator's
popularity effect; the ctr_assign experiment."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llmrec.ctr.assign import AssignConfig, IdAssigner
from llmrec.ctr.ids import IdEncoder, IdEncoderConfig
from llmrec.data.criteo import CriteoSynthConfig, generate_criteo
from llmrec.data.schema import RecData
from llmrec.data.shards import open_shards, write_recdata_shards
from llmrec.errors import DataError
from llmrec.experiments.ctr_assign import AssignExperiment, run_ctr_assign
from llmrec.train.assign import grow_assigned
from llmrec.models import build_model
from llmrec.train import PointwiseTask, Trainer, TrainerConfig

SMALL = CriteoSynthConfig(days=3, rows_per_day=3000, shard_rows=3000, max_cardinality=20_000,
                          popularity_effect=1.0, seed=4)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return generate_criteo(SMALL, tmp_path_factory.mktemp("assign"), progress=False)


def _assigner(s, **kw) -> IdAssigner:
    numbers = IdEncoder(IdEncoderConfig(mode="hash", table_rows=len(s.categorical)), s.categorical,
                        s.numerical, s.label).fit(s.select([0]), progress=False)
    return IdAssigner(AssignConfig(**kw), numbers, 3)


def test_min_count_rule_shares_first_then_starts_an_own_row_from_the_slot(shards):
    a = _assigner(shards, policy="min_count", min_count=2, shared=4)
    day0 = shards.select([0]).read_all()
    torch.manual_seed(0)
    model = build_model(a, {"name": "deepfm", "hidden_units": [8]})
    grow_assigned(model, a, a.decide(day0, 0), "slot")
    ids, counts = np.unique(day0["C3"], return_counts=True)
    j = a.fields.index("C3")
    # an id seen twice or more owns a row; a once-seen id shares its field's slot
    assert all((int(i) in a.own[j]) == (c >= 2) for i, c in zip(ids, counts))
    once = int(ids[counts == 1][0])
    rows = a.rows_of(j, np.array([once]), 1)
    assert j * 4 <= rows[0] < (j + 1) * 4
    # table layout: 26 fields x 4 shared rows, then the exclusive rows
    assert a.memory_rows() == 26 * 4 + a.exclusive_rows() and model.embedding.table.weight.shape[0] == a.n_categorical_rows()
    # the once-seen id comes back: it gets a row that starts as a copy of its slot's row
    w = model.embedding.table.weight.detach().clone()
    again = {k: v[:1].copy() for k, v in day0.items()}
    again["C3"] = np.array([once])
    starts = a.decide(again, 1)
    grow_assigned(model, a, starts, "slot")
    own = a.own[j][once]
    torch.testing.assert_close(model.embedding.table.weight[own], w[j * 4 + a.slot[j][once]])


def test_keep_all_gives_every_id_its_own_row(shards):
    a = _assigner(shards, policy="keep_all")
    day0 = shards.select([0]).read_all()
    a.decide(day0, 0)
    assert a.exclusive_rows() == sum(len(np.unique(day0[f])) for f in a.fields) == a.ids_seen()
    assert a.memory_rows() == a.exclusive_rows()  # the unused shared rows are not counted for the baseline


def test_learned_policy_scores_rows_counterfactually_and_evicts_only_stale_rows(shards):
    a = _assigner(shards, policy="learned", warmup=1, shared=4, updates=5)
    cfg = TrainerConfig(batch_size=512, epochs=1, progress=False)
    torch.manual_seed(0)
    model = build_model(a, {"name": "deepfm", "hidden_units": [8]})
    day0, day1 = (shards.select([d]).read_all() for d in (0, 1))
    grow_assigned(model, a, a.decide(day0, 0), "slot")
    train = a.transform(day0, 0)
    Trainer(cfg).fit(model, train, train.slice(torch.arange(500)))
    predict = lambda b: PointwiseTask().predict(model, b, Trainer(cfg))  # noqa: E731
    a.learn(day1, predict, 1)
    # the value of one held id's row = next chunk's summed log loss on its slot minus on its own row
    sc = a.last_scored
    j = a.fields.index("C3")
    present = np.isin(sc["ids"], day1["C3"]) & (sc["field"] == j)
    held = np.array([int(i) in a.own[j] for i in sc["ids"]]) & present
    k = int(np.nonzero(held)[0][0])
    i = int(sc["ids"][k])
    b = a.transform(day1, 1)
    y = b.label.numpy()
    mask = day1["C3"] == i
    alt = b.slice(torch.arange(len(y)))
    alt.cat[torch.from_numpy(np.nonzero(mask)[0]), j] = j * 4 + a.slot[j][i]

    def loss(p):
        p = np.clip(p, 1e-7, 1 - 1e-7)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert sc["value"][k] == pytest.approx(float((loss(predict(alt)) - loss(predict(b)))[mask].sum()), abs=1e-4)
    # a held id absent from the next chunk was worth exactly 0 there
    absent = (sc["field"] == j) & ~np.isin(sc["ids"], day1["C3"]) & np.array([int(i) in a.own[j] for i in sc["ids"]])
    assert absent.any() and np.all(sc["value"][absent] == 0)
    # an actor that keeps nothing: stale rows are evicted, rows of ids active in the chunk are not
    with torch.no_grad():
        a.actor.keep.weight.zero_()
        a.actor.keep.bias.fill_(-20.0)
    a.config = a.config.model_copy(update={"explore": 0.0})
    before = dict(a.own[j])
    a.decide(day1, 1)
    active = set(day1["C3"].tolist())
    assert all(i in a.own[j] for i in before if i in active)
    assert not any(i in a.own[j] for i in before if i not in active)


def test_memory_budget_raises_the_keep_threshold_when_over_budget(shards):
    a = _assigner(shards, policy="learned", warmup=5, budget=0.2, budget_step=0.5, updates=2)
    cfg = TrainerConfig(batch_size=512, epochs=1, progress=False)
    torch.manual_seed(0)
    model = build_model(a, {"name": "deepfm", "hidden_units": [8]})
    day0, day1 = (shards.select([d]).read_all() for d in (0, 1))
    a.config = a.config.model_copy(update={"min_count": 1})  # warm-up rule: every id a row -> over budget
    grow_assigned(model, a, a.decide(day0, 0), "slot")
    stats = a.learn(day1, lambda b: PointwiseTask().predict(model, b, Trainer(cfg)), 1)
    assert stats["rows_fraction"] > 0.9 and stats["threshold"] == pytest.approx(0.5 * (stats["rows_fraction"] - 0.2))


def test_recdata_as_time_ordered_chunks(tmp_path):
    n = 50
    rng = np.random.default_rng(0)
    data = RecData("toy", {"user_id": np.array([f"u{i % 7}" for i in range(n)], dtype=object),
                           "item_id": np.array([f"i{i % 5}" for i in range(n)], dtype=object),
                           "age": rng.uniform(10, 60, n).astype(np.float32),
                           "label": (rng.random(n) < 0.5).astype(np.float32),
                           "timestamp": rng.permutation(n).astype(np.float64)},
                   {"user_id": "categorical", "item_id": "categorical", "age": "numerical"})
    s = write_recdata_shards(data, tmp_path / "toy", 4)
    again = open_shards(tmp_path / "toy")
    assert again.days == [0, 1, 2, 3] and again.rows == n and again.categorical == ["user_id", "item_id"]
    t = np.concatenate([again.select([d]).read_all()["age"] for d in again.days])
    order = np.argsort(data.columns["timestamp"], kind="stable")
    np.testing.assert_array_equal(t, data.columns["age"][order])  # time order kept across chunks
    ids = np.concatenate([again.select([d]).read_all()["user_id"] for d in again.days])
    users = data.columns["user_id"][order]
    assert all(len(set(ids[users == u])) == 1 for u in set(users))  # one string, one id
    assert len(set(ids)) == 7 and s.source["chunks"] == 4
    with pytest.raises(DataError, match="chunks"):
        write_recdata_shards(data, tmp_path / "bad", n + 1)


def test_popularity_effect_makes_rare_ids_click_less_and_keeps_old_identities(shards, tmp_path):
    assert "popularity_effect" not in CriteoSynthConfig(seed=4).settings()
    assert SMALL.settings()["popularity_effect"] == 1.0
    plain = generate_criteo(SMALL.model_copy(update={"popularity_effect": 0.0}), tmp_path, progress=False)

    def gap(s, f):  # click rate of rows with frequent ids minus rows with rare ids
        c = s.read_all([f, "label"])
        _, inv, counts = np.unique(c[f], return_inverse=True, return_counts=True)
        return c["label"][counts[inv] >= 20].mean() - c["label"][counts[inv] <= 2].mean()
    for f in ("C3", "C4", "C12", "C16", "C21"):  # the fields with many rare and many frequent rows
        assert gap(shards, f) > gap(plain, f), f


@pytest.mark.slow
def test_ctr_assign_experiment_runs_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))
    raw = {"name": "assign", "seeds": [1],
           "data": {"generate": {"days": 4, "rows_per_day": 4000, "shard_rows": 4000, "max_cardinality": 20000,
                                 "popularity_effect": 1.0}},
           "chunks": [0, 1, 2, 3], "model": {"name": "deepfm", "hidden_units": [16]},
           "trainer": {"batch_size": 512, "epochs": 1, "progress": False}, "assign": {"warmup": 1},
           "variants": [{"label": "base", "assign": {"policy": "keep_all", "init": "random"}},
                        {"label": "autoassign", "assign": {"policy": "learned"}}]}
    exp = AssignExperiment.model_validate(raw)
    run_ctr_assign(exp, tmp_path / "a.json")
    saved = json.loads((tmp_path / "a.json").read_text())
    assert [c["chunk"] for c in saved["runs"]["base"][0]] == [1, 2, 3] and (tmp_path / "a.png").exists()
    sm = saved["summary"]
    assert sm["base"]["rows_vs_baseline"] == 1.0 and sm["autoassign"]["rows_vs_baseline"] < 0.8
    assert sm["autoassign"]["auc_mean"] > 0.55
    with pytest.raises(ValueError, match="chunks"):
        AssignExperiment.model_validate({**raw, "chunks": [0]})
    with pytest.raises(ValueError, match="variants.0.assign.policy"):
        AssignExperiment.model_validate({**raw, "variants": [{"label": "x", "assign": {"policy": "nope"}}]})


def _export(tmp_path, n=3000):
    rng = np.random.default_rng(3)
    rows = ["who,what,clicked,when,price"]
    for k in range(n):  # users and items arrive over time; a few are busy, most are rare
        u = int(rng.zipf(1.6)) % (40 + k // 20)
        i = int(rng.zipf(1.4)) % (30 + k // 40)
        rows.append(f"u{u},sku-{i},{int(rng.random() < 0.15 + 0.5 * (i % 4 == 0))},{1_700_000_000 + 60 * k},"
                    f"{rng.uniform(1, 50):.2f}")
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    return {"source": "files", "files": {"interactions": {"path": str(tmp_path / "log.csv")},
                                         "columns": {"user": "who", "item": "what", "time": "when",
                                                     "label": "clicked"},
                                         "features": {"price": "numeric"}}}


def test_autoassign_is_an_option_of_the_training_job_and_its_model_saves_loads_and_recommends(tmp_path):
    """``assign:`` streams a CTR job's training rows (time order, ``chunks``) through AutoAssign+: every
    training chunk is trained on, the validation rows are the last tested chunk, the result has the stream's
    per-chunk figures, and the saved assignment scores raw rows again after ``llmrec.load``."""
    import llmrec
    from llmrec.data.registry import load_data, split_rows
    from llmrec.train_job import TrainJobConfig
    from llmrec.train.assign import AssignedIds

    data = _export(tmp_path)
    job = {"data": data, "model": {"name": "deepfm", "embedding_dim": 4, "hidden_units": [16],
                                   "numeric_embedding": "bucket"},
           "trainer": {"batch_size": 128, "progress": False, "seed": 5}, "output_dir": str(tmp_path / "run"),
           "assign": {"chunks": 5, "assigner": {"policy": "learned", "warmup": 1, "updates": 5}}}
    rec = llmrec.train(job)
    a = rec.result["assign"]
    assert [c["chunk"] for c in a["chunks"]] == [1, 2, 3, 4, 5]  # chunk 5 = the validation rows
    assert a["rare_fields"] == ["user_id", "item_id"] and 0 < a["rows_in_use"]
    assert 0.4 < rec.result["test"]["auc"] <= 1 and rec.result["valid"]["auc"] == pytest.approx(a["chunks"][-1]["auc"])
    loaded = llmrec.load(tmp_path / "run")
    assert isinstance(loaded.context, AssignedIds)
    ctx = loaded.context.assigner
    assert ctx.rows_total == rec.context.assigner.rows_total and ctx.own == rec.context.assigner.own
    cfg = TrainJobConfig.model_validate(job)
    d = load_data(cfg.data)
    _, _, te = split_rows(d, cfg.data)
    from llmrec.train import PointwiseTask, Trainer
    t = Trainer(cfg.trainer, PointwiseTask())
    before = t.predict(rec.model, rec.context.transform(d.take(te), label=d.label))
    after = t.predict(loaded.model, loaded.context.transform(d.take(te), label=d.label))
    np.testing.assert_allclose(before, after, rtol=1e-5, atol=1e-6)  # the saved assignment encodes alike
    from llmrec.metrics import auc
    assert auc(d.columns[d.label][te], after) == pytest.approx(rec.result["test"]["auc"], abs=1e-6)
    recs = loaded.recommend("u1", k=3)
    assert len(recs) == 3
    with pytest.raises(Exception, match="assign: not combined with"):
        llmrec.train({**job, "selection": {"selector": "lasso", "k": 1}})
