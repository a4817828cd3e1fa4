"""A saved graph model updated on newer interactions through the training job (``update:``; GraphSAIL or
plain fine-tuning): ids kept and grown, the old weights the start, training on the new edges only, and
evaluation that never counts an edge the saved model trained on."""
import numpy as np
import pytest
import torch

import llmrec
from llmrec.data.views import ItemSpace
from llmrec.errors import ConfigError, DataError
from llmrec.models import build_model
from llmrec.train.update import extend_space, grown


@pytest.fixture
def logs(tmp_path):
    """An older log (80 users, 60 items) and the full log with 20 new users and 10 new items."""
    rng = np.random.default_rng(0)
    rows = ["who,what,when"]
    for n in range(3000):
        u, i = rng.integers(0, 80 if n < 2000 else 100), rng.integers(0, 60 if n < 2000 else 70)
        rows.append(f"u{u},sku-{i},{1_700_000_000 + 60 * n}")
    (tmp_path / "all.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "old.csv").write_text("\n".join(rows[:2001]) + "\n")
    return tmp_path


def job(root, path: str, out: str, model: str = "lightgcn", **over) -> dict:
    return {"data": {"source": "files", "files": {"interactions": {"path": str(root / path)},
                                                  "columns": {"user": "who", "item": "what", "time": "when"}}},
            "model": {"name": model, "embedding_dim": 8}, "trainer": {"epochs": 3, "progress": False},
            "output_dir": str(root / out), **over}


def test_extend_space_keeps_old_ids_and_grown_keeps_old_rows():
    old = ItemSpace(users={"a": 0, "b": 1}, items={"x": 1, "y": 2})
    new = ItemSpace(users={"b": 0, "c": 1}, items={"y": 1, "z": 2})
    space, umap, imap = extend_space(old, new)
    assert space.users == {"a": 0, "b": 1, "c": 2} and space.items == {"x": 1, "y": 2, "z": 3}
    assert umap.tolist() == [1, 2] and imap.tolist() == [0, 2, 3]
    torch.manual_seed(0)
    small = build_model(old, {"name": "mf", "embedding_dim": 4})
    big = grown(small, build_model(space, {"name": "mf", "embedding_dim": 4}), old.n_users, old.n_items)
    for k, v in small.state_dict().items():
        assert torch.equal(big.state_dict()[k][: v.shape[0]], v)  # the old rows, unchanged
    assert big.state_dict()["user.weight"].shape[0] == 3


@pytest.mark.parametrize("method", ["graphsail", "finetune"])
def test_a_saved_graph_model_is_updated_on_new_interactions(logs, method):
    llmrec.train(job(logs, "old.csv", "base"))
    rec = llmrec.train(job(logs, "all.csv", "update", update={"model_dir": str(logs / "base"), "method": method}))
    u = rec.result["update"]
    assert u["method"] == method and u["new_users"] == 20 and u["new_items"] == 10
    assert 0 < u["new_edges"] < u["edges"]  # trained on what the saved graph lacked, not on everything
    assert u["known_gold_left_out"]["test"] > 0  # a fresh split put old training edges there: left out
    loaded = llmrec.load(logs / "update")
    base = llmrec.load(logs / "base").context
    assert all(loaded.context.users[x] == n for x, n in base.users.items())  # old ids keep their index
    assert all(loaded.context.items[x] == n for x, n in base.items.items())
    assert len(loaded.context.users) == len(base.users) + 20
    newcomer = next(x for x in ("u80", "u81", "u82", "u83") if x in loaded.context.users)
    assert len(loaded.recommend(newcomer, k=5)) == 5


def test_an_update_is_refused_where_it_cannot_apply(logs):
    llmrec.train(job(logs, "old.csv", "base"))
    with pytest.raises(ConfigError, match="holds a lightgcn model; the job trains mf"):
        llmrec.train(job(logs, "all.csv", "u1", model="mf", update={"model_dir": str(logs / "base")}))
    with pytest.raises(ConfigError, match="update: updating a saved model on new data is for graph, CTR and multi-task models; sasrec"):
        llmrec.train({**job(logs, "all.csv", "u2", update={"model_dir": str(logs / "base")}),
                      "model": {"name": "sasrec"}})
    with pytest.raises(DataError, match="nothing to update on"):
        llmrec.train(job(logs, "old.csv", "u3", update={"model_dir": str(logs / "base")}))


def _ctr(tmp_path, out: str, seed: int, **over) -> dict:
    return {"data": {"source": "synthetic", "synthetic": {"n_users": 120, "n_items": 60, "impressions_per_user": 40,
                                                          "seed": seed}},
            "model": {"name": "deepfm", "embedding_dim": 4, "hidden_units": [16]},
            "trainer": {"epochs": 2, "batch_size": 256, "progress": False}, "output_dir": str(tmp_path / out), **over}


def test_a_saved_ctr_model_is_updated_with_incctrs_distillation_and_replay(tmp_path):
    """``update: {method: incctr}`` trains the saved DeepFM further on new rows (encoded with its own encoder)
    plus replayed earlier rows, distilling its saved predictions: a heavy distillation weight keeps the updated
    model's test predictions closer to the saved model's than plain fine-tuning does."""
    from llmrec.train_job import TrainJobConfig, prepare
    from llmrec.train import Trainer

    llmrec.train(_ctr(tmp_path, "base", 0))
    earlier = _ctr(tmp_path, "x", 0)["data"]
    kd = llmrec.train(_ctr(tmp_path, "kd", 1, update={"model_dir": str(tmp_path / "base"), "method": "incctr",
                                                      "kd_weight": 50.0, "replay": 0.5, "replay_data": earlier}))
    ft = llmrec.train(_ctr(tmp_path, "ft", 1, update={"model_dir": str(tmp_path / "base"), "method": "finetune"}))
    u = kd.result["update"]
    assert u["method"] == "incctr" and u["replayed_rows"] == round(0.5 * u["new_rows"]) and u["kd_weight"] == 50.0
    assert ft.result["update"]["replayed_rows"] == 0 and 0.4 < kd.result["test"]["auc"] <= 1

    base, kd_model, ft_model = (llmrec.load(tmp_path / n) for n in ("base", "kd", "ft"))
    job = TrainJobConfig.model_validate(_ctr(tmp_path, "y", 1))
    data = prepare(job).data
    from llmrec.data.registry import split_rows
    _, _, te = split_rows(data, job.data)
    rows = base.context.transform(data.take(te), label=data.label)  # the saved encoder: the same for all three
    pred = {n: Trainer(job.trainer).predict(r.model, rows) for n, r in (("base", base), ("kd", kd_model),
                                                                         ("ft", ft_model))}
    drift = {n: float(np.abs(pred[n] - pred["base"]).mean()) for n in ("kd", "ft")}
    assert drift["kd"] < drift["ft"], drift
    with pytest.raises(ConfigError, match="update.method: graphsail updates graph models"):
        llmrec.train(_ctr(tmp_path, "z", 1, update={"model_dir": str(tmp_path / "base"), "method": "graphsail"}))


def test_incctrs_feature_module_gives_new_ids_rows_of_their_own_on_ordinary_data(tmp_path):
    """``update: {method: incctr, grow_ids: true}`` on files: users and items the saved encoder lacks (seen
    ``min_count`` times in the new training rows) get rows appended after the saved ones, started from the
    unknown row; old rows keep their index, the teacher reads the unknown row for them, and the grown model
    saves, loads and scores a newcomer differently from an unseen id."""
    rng = np.random.default_rng(1)
    rows = ["who,what,clicked,when"]
    for n in range(4000):
        u, i = rng.integers(0, 60 if n < 2500 else 90), rng.integers(0, 40 if n < 2500 else 55)
        rows.append(f"u{u},sku-{i},{int(rng.random() < (0.2 + 0.6 * (i % 3 == 0)))},{1_700_000_000 + 60 * n}")
    (tmp_path / "old.csv").write_text("\n".join(rows[:2501]) + "\n")
    (tmp_path / "new.csv").write_text("\n".join(rows[:1] + rows[2501:]) + "\n")

    def ctr(path, out, **over):
        return {"data": {"source": "files", "files": {"interactions": {"path": str(tmp_path / path)},
                                                      "columns": {"user": "who", "item": "what", "time": "when",
                                                                  "label": "clicked"}}},
                "model": {"name": "deepfm", "embedding_dim": 4, "hidden_units": [16]},
                "trainer": {"epochs": 2, "batch_size": 256, "progress": False},
                "output_dir": str(tmp_path / out), **over}

    llmrec.train(ctr("old.csv", "base"))
    base = llmrec.load(tmp_path / "base")
    grown_rec = llmrec.train(ctr("new.csv", "grown", update={"model_dir": str(tmp_path / "base"), "method": "incctr",
                                                             "grow_ids": True, "min_count": 2, "kd_weight": 1.0}))
    plain = llmrec.train(ctr("new.csv", "plain", update={"model_dir": str(tmp_path / "base"), "method": "incctr",
                                                         "kd_weight": 1.0}))
    enc, old_enc = llmrec.load(tmp_path / "grown").context, base.context
    added = {f: v for f, v in enc.added.items() if v}
    assert set(added) == {"user_id", "item_id"}  # new users and new items (the mapped columns), nothing else
    assert grown_rec.result["update"]["new_id_rows"] == sum(len(v) for v in added.values()) > 20
    assert plain.result["update"]["new_id_rows"] == 0 and not any(llmrec.load(tmp_path / "plain").context.added.values())
    assert enc.vocab == old_enc.vocab and enc.offsets() == old_enc.offsets()  # old rows kept their index
    assert min(r for v in added.values() for r in v.values()) == old_enc.n_categorical_rows()
    model = llmrec.load(tmp_path / "grown").model
    weight = next(m.table.weight for m in model.modules() if hasattr(m, "grow"))
    assert weight.shape[0] == enc.n_categorical_rows()
    # a newcomer user seen in the new rows is not read as the unknown user any more
    newcomer = next(u for u in (f"u{k}" for k in range(60, 90)) if u in enc.added["user_id"])
    cols = {"user_id": np.array([newcomer, "never-seen"]), "item_id": np.array(["sku-0", "sku-0"]),
            "label": np.array([1, 1])}
    j = [s.name for s in enc.categorical].index("user_id")
    cat = enc.transform(cols).cat
    assert cat[0, j] == enc.added["user_id"][newcomer] and cat[1, j] == enc.offsets()["user_id"]
    assert llmrec.load(tmp_path / "grown").recommend(newcomer, k=3)
    with pytest.raises(ConfigError, match="update.grow_ids: new-id rows are IncCTR's feature module"):
        llmrec.train(ctr("new.csv", "x", update={"model_dir": str(tmp_path / "base"), "method": "finetune",
                                                 "grow_ids": True}))
