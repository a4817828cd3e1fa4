import itertools

import numpy as np
import pytest
import torch

from llmrec.ctr import FeatureEncoder, FeatureSpec
from llmrec.models import build_model, resolve_model_config
from llmrec.train import Trainer, TrainerConfig
from llmrec.metrics import auc, group_auc, logloss
from llmrec.data import SyntheticConfig, generate_world


def mc(**fields):
    """A registered model's typed config (its defaults file layered in)."""
    return resolve_model_config(fields)


def brute_auc(y, s):
    pos, neg = s[y == 1], s[y == 0]
    return np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)])


def test_auc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200).astype(float)
    s = np.round(rng.random(200), 1)  # many ties
    assert auc(y, s) == pytest.approx(brute_auc(y, s), abs=1e-12)
    assert auc(y, y) == 1.0 and np.isnan(auc(np.ones(3), np.ones(3)))
    assert logloss(np.array([1, 0]), np.array([0.9, 0.1])) == pytest.approx(-np.log(0.9))
    g = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    yy = np.array([1, 0, 0, 1, 0, 1, 1, 1])
    ss = np.array([.9, .1, .2, .6, .5, .4, .5, .6])
    assert group_auc(yy, ss, g) == pytest.approx((1.0 * 3 + 0.5 * 3) / 6)


@pytest.fixture(scope="module")
def world():
    d = generate_world(SyntheticConfig(n_users=150, n_items=120, impressions_per_user=60))
    return d, d.chronological_split()


def test_encoder_fits_train_only_with_oov(world):
    d, (tr, va, te) = world
    enc = FeatureEncoder([FeatureSpec(name="item_id", type="categorical", min_count=3),
                          FeatureSpec(name="price", type="numerical")]).fit(d.take(tr))
    cols = d.take(te)
    cols["item_id"] = np.array(["never-seen"] * len(te), dtype=object)
    b = enc.transform(cols)
    assert (b.cat[:, 0] == 0).all()  # OOV index
    mean, std = enc.stats["price"]
    assert mean == pytest.approx(float(np.mean(d.columns["price"][tr])), rel=1e-5)
    restored = FeatureEncoder.from_json(enc.to_json())
    assert torch.equal(restored.transform(d.take(va)).cat, enc.transform(d.take(va)).cat)


def test_bad_inputs_are_named(world):
    d, (tr, _, _) = world
    with pytest.raises(KeyError, match="nope: feature column not in the data"):
        FeatureEncoder([FeatureSpec(name="nope", type="categorical")]).fit(d.take(tr))
    cols = d.take(tr)
    cols["label"] = cols["label"].copy()
    cols["label"][5] = np.nan
    enc = FeatureEncoder([FeatureSpec(name="item_id", type="categorical")]).fit(cols)
    with pytest.raises(ValueError, match="label: NaN label at row 5"):
        enc.transform(cols)
    cols = d.take(tr)
    cols["age"] = np.array(["old"] * len(tr), dtype=object)
    with pytest.raises(TypeError, match="age: numerical"):
        FeatureEncoder([FeatureSpec(name="age", type="numerical")]).fit(cols)
    with pytest.raises(ValueError, match="model.hiden_units: Extra inputs are not permitted"):
        mc(name="deepfm", hiden_units=[1])
    with pytest.raises(ValueError, match="dense feature needs"):
        FeatureEncoder([FeatureSpec(name="k", type="dense")])


def test_deepfm_learns_the_synthetic_signal(world):
    d, (tr, va, te) = world
    enc = FeatureEncoder([FeatureSpec(name=n, type=t) for n, t in d.fields.items()]).fit(d.take(tr))
    batches = [enc.transform(d.take(r)) for r in (tr, va, te)]
    results = {}
    for name in ("lr", "deepfm"):
        torch.manual_seed(0)
        model = build_model(enc, mc(name=name, **({} if name == "lr" else {"hidden_units": [64, 64]})))
        trainer = Trainer(TrainerConfig(progress=False, epochs=8, batch_size=256))
        fit = trainer.fit(model, batches[0], batches[1])
        results[name] = trainer.evaluate(model, batches[2])
        assert fit.history[0]["lr"] == 1e-3 and fit.best_epoch >= 1
        # best-on-validation weights were restored
        assert trainer.evaluate(model, batches[1])["auc"] == pytest.approx(fit.best_valid["auc"], abs=1e-6)
    assert results["deepfm"]["auc"] > 0.6
    assert results["lr"]["auc"] > 0.55


def test_lr_decays_on_plateau_and_stops_early(world):
    d, (tr, va, _) = world
    enc = FeatureEncoder([FeatureSpec(name="item_id", type="categorical")]).fit(d.take(tr))
    b = [enc.transform(d.take(r)) for r in (tr, va)]
    fit = Trainer(TrainerConfig(progress=False, epochs=30, learning_rate=0.05, patience=2)).fit(
        build_model(enc, mc(name="fm")), b[0], b[1])
    assert len(fit.history) < 30
    lrs = [h["lr"] for h in fit.history]
    assert lrs[-1] < lrs[0]
    assert all(later <= earlier for earlier, later in zip(lrs, lrs[1:]))
    # lr_decay 1.0 (RecBole's fixed learning rate): the same plateau stops training without touching the rate
    fixed = Trainer(TrainerConfig(progress=False, epochs=30, learning_rate=0.05, patience=2, lr_decay=1.0)).fit(
        build_model(enc, mc(name="fm")), b[0], b[1])
    assert len(fixed.history) < 30 and {h["lr"] for h in fixed.history} == {0.05}


def test_multi_hot_and_dense_features():
    rng = np.random.default_rng(0)
    n = 2000
    tags = np.empty(n, dtype=object)
    tags[:] = [tuple(rng.choice(["a", "b", "c", "d"], size=rng.integers(1, 3), replace=False)) for _ in range(n)]
    key = rng.integers(0, 50, n).astype(str).astype(object)
    vecs = {str(k): rng.normal(size=8).astype(np.float32) for k in range(50)}
    y = np.array([("a" in t) * 1.0 if vecs[k][0] > 0 else ("b" in t) * 1.0 for t, k in zip(tags, key)], np.float32)
    cols = {"tags": tags, "key": key, "label": y}
    enc = FeatureEncoder([FeatureSpec(name="tags", type="multi_hot"),
                          FeatureSpec(name="vec", type="dense", key="key", dim=8)]).fit(cols)
    b = enc.transform(cols, dense_tables={"vec": vecs})
    assert b.seq["tags"].shape == (n, 16) and b.dense["vec"].shape == (n, 8)
    torch.manual_seed(0)
    m = build_model(enc, mc(name="deepfm", hidden_units=[32]))
    tr = Trainer(TrainerConfig(progress=False, epochs=15, batch_size=128, embedding_l2=0.0, learning_rate=5e-3))
    idx = torch.arange(n)
    tr.fit(m, b.slice(idx[:1500]), b.slice(idx[1500:]))
    assert tr.evaluate(m, b.slice(idx[1500:]))["auc"] > 0.9  # needs both the tags and the vector
    with pytest.raises(KeyError, match="vec: no vector for key='zzz'"):
        enc.transform({"tags": tags[:1], "key": np.array(["zzz"], dtype=object), "label": y[:1]},
                      dense_tables={"vec": vecs})


def test_missing_numbers_are_the_mean_and_their_own_bucket_and_counted():
    """NaN and inf in a numerical field are missing values: left out of the statistics, transformed to 0 (the
    mean) and the field's last bucket, and counted per field in ``nan_counts``."""
    cols = {"x": np.array([1.0, 2.0, np.nan, 3.0, np.inf, -np.inf]), "label": np.zeros(6, np.float32)}
    enc = FeatureEncoder([FeatureSpec(name="x", type="numerical", buckets=2)]).fit(cols)
    assert enc.stats["x"] == pytest.approx((2.0, np.std([1.0, 2.0, 3.0])))
    b = enc.transform(cols)
    assert torch.isfinite(b.num).all() and b.num[[2, 4, 5], 0].tolist() == [0.0, 0.0, 0.0]
    assert b.num_bucket[[2, 4, 5], 0].tolist() == [2, 2, 2] and b.num_bucket[:2, 0].max() < 2
    assert enc.nan_counts == {"x": 3}
    enc.transform(cols)
    assert enc.nan_counts == {"x": 6}  # counted over every transform
