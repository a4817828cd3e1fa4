"""QueryRec (papers.md §22): the synthetic search log and interest shift, each row's earlier searches, the
query encoder (starts from the text encoder's own query-item similarity; diffusion positives), the
cross-fitted features, and QueryRec as a CTR feature end to end."""
import hashlib

import numpy as np
import pytest
import torch

from llmrec.data import SyntheticConfig, generate_world
from llmrec.data.views import add_search_history
from llmrec.errors import ConfigError, DataError
from llmrec.experiments.harness import column_auc
from llmrec.train_job import KnowledgeFeatures, TrainJobConfig, prepare, train_prepared
from llmrec.train.queryrec import (QueryEncoder, QueryPairs, QueryRecConfig, cosine_schedule,
                                   query_features)

WORLD = SyntheticConfig(n_users=120, n_items=60, impressions_per_user=30, searches_per_user=8, intents=3)


class HashEmbedder:
    """Deterministic unit vectors from a hash of each word, summed: texts sharing words are similar."""
    model_id, dim = "hash-words", 24

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().replace(".", " ").split():
                rng = np.random.default_rng(int(hashlib.md5(w.encode()).hexdigest()[:8], 16))
                out[i] += rng.normal(size=self.dim)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_search_log_and_intents_leave_the_plain_world_alone():
    plain = generate_world(SyntheticConfig(n_users=120, n_items=60, impressions_per_user=30))
    searching = generate_world(SyntheticConfig(n_users=120, n_items=60, impressions_per_user=30, searches_per_user=8))
    for k, v in plain.columns.items():
        assert (searching.columns[k] == v).all(), k
    shifted = generate_world(WORLD)
    # interest shift only adds to the click logit over the same uniform draws: clicks can only appear
    assert (shifted.columns["label"] >= plain.columns["label"]).all()
    assert shifted.columns["label"].sum() > plain.columns["label"].sum()
    s = shifted.searches
    per_user = np.unique(s["user_id"], return_counts=True)[1]
    assert (per_user == 8).all() and 0.4 < len(per_user) / 120 < 0.8  # ~60% of the users search
    assert all(len(q.split()) >= 2 for q in s["query"])


def test_search_history_holds_only_earlier_queries():
    data = add_search_history(generate_world(WORLD), max_len=3)
    s = data.searches
    for r in range(0, len(data), 37):
        u, t = data.columns["user_id"][r], data.columns["timestamp"][r]
        mine = sorted((ts, q) for uu, ts, q in zip(s["user_id"], s["timestamp"], s["query"]) if uu == u and ts < t)
        assert data.columns["queries"][r] == tuple(q for _, q in mine[-3:])
        assert data.columns["searched"][r] == ("yes" if mine else "no")
        assert data.columns["query_item_key"][r] == data.columns["query_key"][r] + "\t" + data.columns["item_id"][r]
    with pytest.raises(DataError, match="no search log"):
        add_search_history(generate_world(SyntheticConfig(n_users=20, n_items=20)), 3)
    with pytest.raises(DataError, match="max_len"):
        add_search_history(data, 0)


def test_encoder_starts_from_the_text_similarity_and_samples_items():
    rng = np.random.default_rng(0)
    text = rng.normal(size=(5, 16)).astype(np.float32)
    items = np.vstack([np.zeros((1, 16)), rng.normal(size=(3, 16))]).astype(np.float32)
    enc = QueryEncoder(text, max_len=3, n_items=4, c=QueryRecConfig(steps=10), item_text=items).eval()
    states = torch.tensor([[1, 2, 0], [3, 0, 0], [0, 0, 0]])
    q = enc.encode(states)
    mean = (text[0] + text[1]) / 2
    assert torch.allclose(q[0], torch.from_numpy(mean / np.linalg.norm(mean)), atol=1e-5)
    assert torch.all(q[2] == 0)  # no search history: zeros
    iv = enc.item_vectors()
    assert torch.allclose(iv[1:], torch.nn.functional.normalize(torch.from_numpy(items[1:]), dim=-1), atol=1e-6)
    abar = cosine_schedule(10)
    assert abar[0] < 1 and abar[-1] < 0.01 and torch.all(abar[1:] < abar[:-1])
    assert enc.sample(q[:2]).shape == (2, 16)
    enc.train()  # training forward queues the diffusion + generated-positive loss
    logits = enc(QueryPairs(states[:2], torch.tensor([1, 2])))
    assert logits.shape == (2, 4) and enc.auxiliary_loss().item() > 0 and enc.auxiliary_loss().item() == 0
    plain = QueryEncoder(text, 3, 4, QueryRecConfig(diffusion=False)).train()
    plain(QueryPairs(states[:2], torch.tensor([1, 2])))
    assert plain.auxiliary_loss().item() == 0


def test_query_features_are_cross_fitted_and_cover_every_state():
    data = add_search_history(generate_world(WORLD), max_len=4)
    tr, va, _ = data.chronological_split()
    report: dict = {}
    c = QueryRecConfig(epochs=2, dim=8, steps=5)
    out = query_features(data, tr, va, HashEmbedder(), c, report=report)
    assert set(out["query"]) == set(data.columns["query_key"])
    assert set(out["query_match"]) == set(data.columns["query_item_key"])
    assert np.all(out["query"][""] == 0) and all(out["query_match"][k][0] == 0 for k in out["query_match"]
                                                   if k.startswith("\t"))
    # one full fit for the representation, one per fold for the relevance; the folds split the pairs
    assert len(report["fits"]) == 3
    assert report["fits"][1]["pairs"] + report["fits"][2]["pairs"] == report["train_pairs"] == report["fits"][0]["pairs"]
    only = query_features(data, tr, va, HashEmbedder(), c, kinds=["query_match"])
    assert list(only) == ["query_match"]
    with pytest.raises(DataError, match="search history"):
        query_features(generate_world(WORLD), tr, va, HashEmbedder(), c)


def test_query_kinds_are_validated():
    with pytest.raises(ValueError, match="source 'queries'"):
        KnowledgeFeatures(source="queries", kinds=["item"])
    with pytest.raises(ValueError, match="come from source 'queries'"):
        KnowledgeFeatures(source="text", kinds=["query"])


def test_din_with_queryrec_trains_end_to_end_with_the_bundled_encoder():
    data = {"source": "synthetic", "history": 10, "search_history": 4,
            "synthetic": {"n_users": 150, "n_items": 60, "impressions_per_user": 30, "searches_per_user": 8,
                          "intents": 3}}
    job = TrainJobConfig(data=data, model={"name": "din", "hidden_units": [32]},
                         knowledge={"source": "queries", "kinds": ["query", "query_match"],
                                    "queryrec": {"epochs": 2, "steps": 5}},
                         trainer={"epochs": 2, "batch_size": 256, "progress": False})
    p = prepare(job)
    assert {"query_knowledge", "query_match_knowledge"} <= set(p.train.dense)
    assert p.train.dense["query_knowledge"].shape[1] == 384  # MiniLM's space
    model, r = train_prepared(job, p)
    assert 0.0 <= r["test"]["auc"] <= 1.0
    groups = column_auc(job, p, model, "searched")
    assert set(groups["groups"]) == {"yes", "no"}
    assert sum(g["rows"] for g in groups["groups"].values()) == len(p.test)
    with pytest.raises(ConfigError, match="test_by"):
        column_auc(job, p, model, "nope")
