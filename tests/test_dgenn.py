"""DG-ENN: the graphs built from training rows (attribute fields found, interaction and similarity edges),
the curriculum's switch from similarity edges to all edges, divide-and-conquer vs one attribute graph, the
combination with the id embedding, and named errors."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from llmrec.ctr.features import FeatureEncoder, FeatureSpec
from llmrec.errors import ConfigError
from llmrec.experiments.harness import user_activity_auc
from llmrec.train_job import TrainJobConfig, make_trainer, prepare, train_prepared
from llmrec.metrics import auc
from llmrec.models import build_model, resolve_model_config
from llmrec.models.ctr.dgenn import _top_cosine, build_graph, dgenn_graphs
from llmrec.models.graph.base import layer_mean
from llmrec.train import TrainerConfig


def _toy():
    # users u0..u3 (gender constant per user), items i0..i2 (genre constant per item), hour varies: context
    cols = {"user_id": np.array(["u0", "u0", "u1", "u1", "u2", "u3", "u3"], dtype=object),
            "item_id": np.array(["i0", "i1", "i0", "i2", "i1", "i0", "i1"], dtype=object),
            "gender": np.array(["f", "f", "m", "m", "f", "m", "m"], dtype=object),
            "genre": np.array(["a", "b", "a", "b", "b", "a", "b"], dtype=object),
            "hour": np.array(["1", "2", "1", "3", "2", "2", "1"], dtype=object),
            "label": np.array([1, 1, 1, 0, 1, 1, 1], np.float32)}
    specs = [FeatureSpec(name=n, type="categorical") for n in ("user_id", "item_id", "gender", "genre", "hour")]
    enc = FeatureEncoder(specs).fit(cols)
    return enc, enc.transform(cols)


def _row(enc, field, value):
    return enc.offsets()[field] + enc.vocab[field][value]


def test_graph_finds_attribute_fields_and_positive_interactions():
    enc, b = _toy()
    cfg = resolve_model_config({"name": "dgenn", "neighbors": 1})
    g = build_graph(enc, b, cfg)
    assert g.user_fields == ["gender"] and g.item_fields == ["genre"]  # hour varies per user and per item
    pairs = {(int(u), int(v)) for u, v in g.user_attr[1:].T}
    assert (_row(enc, "user_id", "u1"), _row(enc, "gender", "m")) in pairs and len(pairs) == 4
    inter = {(int(u), int(i)) for u, i in g.interactions.T}
    assert (_row(enc, "user_id", "u1"), _row(enc, "item_id", "i2")) not in inter  # label 0: no edge
    assert len(inter) == 6
    # similarity: u3 clicked i0 and i1, exactly as u0 did: each other's nearest user
    sim = {(int(a), int(c)) for a, c in g.similar.T}
    assert (_row(enc, "user_id", "u3"), _row(enc, "user_id", "u0")) in sim
    every = build_graph(enc, b, resolve_model_config({"name": "dgenn", "edges": "all"}))
    assert every.interactions.shape[1] == 7


def test_top_cosine_matches_a_dense_computation():
    rng = np.random.default_rng(0)
    x = (rng.random((12, 9)) < 0.4).astype(float)
    rows, cols = _top_cosine(sp.csr_matrix(x), 3)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    n[n == 0] = 1
    s = (x / n) @ (x / n).T
    np.fill_diagonal(s, 0)
    for r in range(12):
        got = set(cols[rows == r].tolist())
        positive = np.flatnonzero(s[r] > 0)
        best = sorted(positive, key=lambda c: (-s[r, c], c))[:3]
        assert {round(s[r, c], 9) for c in got} == {round(s[r, c], 9) for c in best}


def _model(enc, b, **kw):
    cfg = dgenn_graphs(enc, resolve_model_config({"name": "dgenn", "embedding_dim": 4, "hidden_units": [8],
                                                  "neighbors": 1, **kw}), b, b, TrainerConfig(batch_size=4))
    torch.manual_seed(0)
    model = build_model(enc, cfg)
    torch.nn.init.normal_(model.net.embedding.table.weight)
    return model, cfg


def test_curriculum_uses_similarity_edges_first_then_all():
    enc, b = _toy()
    model, cfg = _model(enc, b, curriculum_epochs=1, combine="residual")
    assert cfg.steps_per_epoch == 2  # 7 rows, batch 4
    w = model.net.embedding.table.weight
    adj = model.adjacencies()
    ju, jg = 0, 2  # user_id, gender columns
    x = w[b.cat[:, ju]]

    def expect(phase):  # one user attribute field (gender): its graph read at the row's gender value
        attr = layer_mean(adj["user"][0], w, cfg.layers)[b.cat[:, jg]]
        collab = layer_mean(adj[phase][0], w, cfg.layers)[b.cat[:, ju]]
        return x + 0.5 * (attr + collab)

    model.train()
    torch.testing.assert_close(model.entity_vectors(b, "user", x), expect("similar"))
    model.steps.fill_(2)  # one epoch done
    torch.testing.assert_close(model.entity_vectors(b, "user", x), expect("full"))
    assert not torch.allclose(expect("similar"), expect("full"))
    flat, _ = _model(enc, b, curriculum=False, combine="residual")
    flat.train()
    fw = flat.net.embedding.table.weight
    xf = fw[b.cat[:, ju]]
    full = layer_mean(flat.adjacencies()["full"][0], fw, 2)[b.cat[:, ju]]
    attr = layer_mean(flat.adjacencies()["user"][0], fw, 2)[b.cat[:, jg]]
    torch.testing.assert_close(flat.entity_vectors(b, "user", xf), xf + 0.5 * (attr + full))


def _two_user_fields():
    specs = [FeatureSpec(name=n, type="categorical") for n in ("user_id", "item_id", "gender", "age", "genre")]
    raw = {"user_id": np.array(["u0", "u1", "u2", "u0"], dtype=object),
           "item_id": np.array(["i0", "i0", "i1", "i1"], dtype=object),
           "gender": np.array(["f", "m", "f", "f"], dtype=object), "age": np.array(["y", "y", "o", "y"], dtype=object),
           "genre": np.array(["a", "a", "b", "b"], dtype=object), "label": np.ones(4, np.float32)}
    enc = FeatureEncoder(specs).fit(raw)
    return enc, enc.transform(raw)


def test_divide_and_conquer_weights_one_graph_per_attribute_field():
    enc, b = _two_user_fields()
    divided, _ = _model(enc, b, combine="replace")
    joint, _ = _model(enc, b, combine="replace", divide_and_conquer=False)
    assert len(divided.adjacencies()["user"]) == 2 and len(joint.adjacencies()["user"]) == 1
    assert divided.user_field_logits.shape == (2,) and divided.user_attr_cols.tolist() == [2, 3]
    for model in (divided, joint):
        model.eval()
        w = model.net.embedding.table.weight
        adj = model.adjacencies()
        collab = layer_mean(adj["similar"][0], w, 2)[b.cat[:, 0]]  # step 0: the curriculum's first phase
        graphs = [layer_mean(a, w, 2) for a in adj["user"]]
        if model is divided:  # each field's own graph at its value, equal weights at the start
            attr = 0.5 * (graphs[0][b.cat[:, 2]] + graphs[1][b.cat[:, 3]])
        else:  # the joint graph at both values
            attr = 0.5 * (graphs[0][b.cat[:, 2]] + graphs[0][b.cat[:, 3]])
        torch.testing.assert_close(model.entity_vectors(b, "user", w[b.cat[:, 0]]), 0.5 * (attr + collab))
    assert not torch.allclose(divided.entity_vectors(b, "user", divided.net.embedding.table.weight[b.cat[:, 0]]),
                              joint.entity_vectors(b, "user", joint.net.embedding.table.weight[b.cat[:, 0]]))


def test_an_unseen_user_still_gets_its_attribute_vector_and_gated_starts_as_the_id():
    enc, b = _toy()
    model, _ = _model(enc, b, combine="replace", curriculum=False)
    model.eval()
    new = enc.transform({"user_id": np.array(["new"], dtype=object), "item_id": np.array(["i0"], dtype=object),
                         "gender": np.array(["f"], dtype=object), "genre": np.array(["a"], dtype=object),
                         "hour": np.array(["1"], dtype=object), "label": np.ones(1, np.float32)})
    w = model.net.embedding.table.weight
    assert int(new.cat[0, 0]) == enc.offsets()["user_id"]  # the out-of-vocabulary row
    attr = layer_mean(model.adjacencies()["user"][0], w, 2)[new.cat[:, 2]]
    assert float(attr.detach().norm()) > 0
    collab = layer_mean(model.adjacencies()["full"][0], w, 2)[new.cat[:, 0]]
    torch.testing.assert_close(model.entity_vectors(new, "user", w[new.cat[:, 0]]), 0.5 * (attr + collab))
    gated, _ = _model(enc, b)  # the default: gated, the gate at 0
    x = gated.net.embedding.table.weight[b.cat[:, 1]]
    torch.testing.assert_close(gated.entity_vectors(b, "item", x), x)
    with pytest.raises(ConfigError, match="model.user_field: 'uid' is not a categorical feature"):
        build_graph(enc, b, resolve_model_config({"name": "dgenn", "user_field": "uid"}))
    with pytest.raises(ConfigError, match="embedding_table.kind"):
        build_model(enc, {"name": "dgenn", "embedding_table": {"kind": "cached"}})


def test_user_activity_auc_splits_test_rows_by_training_rows_of_their_user():
    job = TrainJobConfig(data={"source": "synthetic", "synthetic": {"n_users": 60, "n_items": 40,
                                                                     "impressions_per_user": 20}},
                         model={"name": "dnn", "hidden_units": [8]}, trainer={"epochs": 1, "progress": False})
    p = prepare(job)
    model, _ = train_prepared(job, p)
    got = user_activity_auc(job, p, model, at_most=15)
    assert got["sparse"]["rows"] + got["dense"]["rows"] == len(p.test)
    tr, _, _ = p.data.chronological_split(job.data.split)
    users, counts = np.unique(p.data.columns["user_id"][tr], return_counts=True)
    n = np.array([dict(zip(users, counts)).get(u, 0) for u in p.test_groups])
    pred = make_trainer(job, p).predict(model, p.test)
    y = p.test.label.numpy()
    assert got["sparse"]["auc"] == pytest.approx(auc(y[n <= 15], pred[n <= 15]))
    assert got["dense"]["rows"] == int((n > 15).sum()) > 0
