"""The session family (AHC-KNN, papers.md §31): the session view (gap cutting, SR-GNN filtering, time split,
Yoochoose / Diginetica readers on tiny fixtures), the similarities against hand computations, candidate
selection, named errors, and the ``session`` experiment end to end."""
import json

import numpy as np
import pytest

from llmrec.data.schema import DataError, DataFormatError
from llmrec.data.sessions import (SessionConfig, SessionWorldConfig, cut_by_gap, load_sessions, read_diginetica,
                                  read_yoochoose, split_sessions, synthetic_sessions)
from llmrec.experiments.session import SessionExperiment, run_session
from llmrec.models.session.base import next_click_metrics
from llmrec.models import build_model, describe_models
from llmrec.models.session.base import SessionError, per_item_candidates, recent_candidates

# 6 training sessions over 6 items; item 0 is in every session but the last
TRAIN = [np.array(s) for s in ([0, 1], [0, 1, 2], [0, 3], [0, 3, 4], [0, 2, 5], [4, 5])]
STARTS = np.arange(6.0)


def fitted(name, **cfg):
    return build_model(None, {"name": name, **cfg}).fit(TRAIN, STARTS, 6)


def test_sknn_cosine_and_votes_by_hand():
    m = fitted("sknn", k=2)
    sess = np.array([0, 1])
    # cos(s,t) = |s & t| / sqrt(2 |t|): t0 = 2/2 = 1, t1 = 2/sqrt(6), t2 = t3 = t4 = 1/sqrt(2k(t)), t5 = 0
    sc = m.scores(sess)
    w0, w1 = 1.0, 2 / np.sqrt(6)
    expect = np.zeros(6)
    expect[[0, 1]] += w0
    expect[[0, 1, 2]] += w1
    assert sc == pytest.approx(expect)
    assert m.recommend(sess, 2).tolist() == [0, 1]


def test_ahc_similarity_is_the_heat_conduction_formula():
    sess = np.array([0, 2])
    k_item = np.array([5, 2, 2, 2, 2, 2], float)  # sessions holding each item
    for lam in (0.0, 0.5, 1.0):
        m = fitted("ahc_knn", lam=lam, k=10, m=100)
        cand = m.candidates(sess)
        sim = m.similarity(sess, m.index.matrix[cand], cand)
        for t, s in zip(cand, sim):
            shared = np.intersect1d(sess, TRAIN[t])
            ref = (1 / k_item[shared]).sum() / (2 ** lam * len(np.unique(TRAIN[t])) ** (1 - lam))
            assert s == pytest.approx(ref)
    # lambda = 1 (heat conduction) does not penalise long candidates; lambda = 0 does
    hc, md = fitted("ahc_knn", lam=1.0), fitted("ahc_knn", lam=0.0)
    c = np.array([0, 1])  # t0 (2 items) and t1 (3 items) share item 0 and item ... with session [0, 2]
    s_hc = hc.similarity(sess, hc.index.matrix[c], c)
    s_md = md.similarity(sess, md.index.matrix[c], c)
    assert s_hc[1] / s_hc[0] > s_md[1] / s_md[0]


def test_position_decay_weights_the_latest_click_most():
    v = fitted("vsknn", decay="linear", k=10)
    sess = np.array([3, 1])  # latest click: item 1 (weight 1), earlier item 3 (weight 1/2)
    cand = v.candidates(sess)
    sim = dict(zip(cand.tolist(), v.similarity(sess, v.index.matrix[cand], cand)))
    assert sim[0] == pytest.approx(1.0) and sim[2] == pytest.approx(0.5) and sim[1] == pytest.approx(1.0)
    d = fitted("vsknn", decay="div", k=10)
    assert d.similarity(np.array([3, 5, 1]), d.index.matrix[[3]], np.array([3]))[0] == pytest.approx(1 / 3)


def test_candidate_selection_per_item_keeps_every_clicked_item_represented():
    ix = fitted("sknn").index
    # SKNN with M = 2: the two most recent sessions holding 0 or 5 -> sessions 5 and 4 (both hold 5)
    assert sorted(recent_candidates(ix, np.array([0, 5]), 2).tolist()) == [4, 5]
    # session [0, 1]: the 2 most recent sessions with 0 or 1 are 3 and 4, and neither holds item 1; per item,
    # ceil(2 / 2) = 1 each: item 0's latest (4) and item 1's latest (1)
    assert sorted(recent_candidates(ix, np.array([0, 1]), 2).tolist()) == [3, 4]
    assert sorted(per_item_candidates(ix, np.array([0, 1]), 2).tolist()) == [1, 4]


def test_named_errors_and_counted_unknown_items():
    with pytest.raises(SessionError, match="fit"):
        build_model(None, {"name": "ahc_knn"}).scores(np.array([0]))
    m = fitted("ahc_knn")
    with pytest.raises(SessionError, match="empty session"):
        m.recommend(np.array([], np.int64))
    with pytest.raises(SessionError, match="no training sessions"):
        build_model(None, {"name": "sknn"}).fit([], np.array([]), 3)
    with pytest.raises(SessionError, match=r"sessions\[1\]"):
        build_model(None, {"name": "sknn"}).fit([np.array([0]), np.array([7])], np.arange(2.0), 3)
    assert m.recommend(np.array([99, 98]), 3).tolist() == [0, 1, 2]  # nothing known: most clicked (ties: index)
    assert m.unknown_items == 2


def test_gap_cut_filter_and_time_split():
    user = np.array(["a"] * 5 + ["b"] * 3)
    item = np.array(["x", "y", "z", "x", "y", "x", "y", "z"])
    t = np.array([0, 10, 20, 5000, 5010, 3, 7, 9000], float)
    sessions, starts = cut_by_gap(user, item, t, 3600)
    assert sessions == [["x", "y", "z"], ["x", "y"], ["x", "y"], ["z"]] and starts.tolist() == [0, 5000, 3, 9000]
    raw = [["a", "b", "c"]] * 8 + [["a", "rare"], ["b", "c", "a"], ["c", "new"], ["a", "b"]]
    c = SessionConfig(min_item_support=2, valid_fraction=0.2, test_fraction=0.2)
    s = split_sessions(raw, np.arange(12.0), c)
    # "rare" (1 click) and "new" (1 click) dropped, so sessions 8 and 10 fall below 2 clicks
    assert s.dropped["sessions_shorter_than_2"] == 2 and len(s.train) + len(s.valid) + len(s.test) == 10
    assert len(s.test) == 2 and len(s.valid) == 2 and s.item_ids.tolist() == ["a", "b", "c"]
    prefixes, nxt = s.prefixes("test")
    assert [p.tolist() for p in prefixes] == [[1], [1, 2], [0]] and nxt.tolist() == [2, 0, 1]
    with pytest.raises(DataError, match="sessions"):
        split_sessions([["a", "b"]], np.zeros(1), c)


def test_yoochoose_and_diginetica_readers(tmp_path):
    y = tmp_path / "yoochoose-clicks.dat"
    y.write_text("1,2014-04-07T10:51:09.277Z,214536502,0\n1,2014-04-07T10:54:09.868Z,214536500,0\n"
                 "2,2014-04-07T13:56:37.614Z,214662742,0\n1,2014-04-07T10:52:00.000Z,214536506,S\n")
    sessions, starts = read_yoochoose(y)
    assert sessions == [["214536502", "214536506", "214536500"], ["214662742"]] and starts[0] < starts[1]
    y.write_text("1,yesterday,214536502,0\n")
    with pytest.raises(DataFormatError, match="timestamp"):
        read_yoochoose(y)
    g = tmp_path / "train-item-views.csv"
    g.write_text("sessionId;userId;itemId;timeframe;eventdate\n1;NA;81766;526309;2016-05-09\n"
                 "1;NA;31331;1031018;2016-05-09\n1;NA;32118;243569;2016-05-09\n2;NA;9654;75848;2016-05-10\n")
    sessions, _ = read_diginetica(g)
    assert sessions == [["32118", "81766", "31331"], ["9654"]]
    g.write_text("session;item\n1;2\n")
    with pytest.raises(DataFormatError, match="header"):
        read_diginetica(g)
    with pytest.raises(DataError, match="sessions.path"):
        load_sessions(SessionConfig(source="yoochoose"))


def test_synthetic_sessions_carry_intent_signal():
    sessions, _ = synthetic_sessions(SessionWorldConfig(n_items=200, n_sessions=3000, noise=0.0, intents=10))
    s = split_sessions(sessions, np.arange(3000.0), SessionConfig(min_item_support=1))
    knn = build_model(None, {"name": "ahc_knn"}).fit(s.train, np.arange(len(s.train), dtype=float), s.n_items)
    pop = np.argsort(-knn.index.popularity)[:20]
    prefixes, nxt = s.prefixes("test")
    assert next_click_metrics(knn, s, "test", 20)["hr@20"] > np.isin(nxt, pop).mean() + 0.3  # vs popularity


def test_session_models_are_listed_by_family():
    rows = {r["name"]: r for r in describe_models("session")}
    assert set(rows) == {"ahc_knn", "sknn", "vsknn"} and {r["task"] for r in rows.values()} == {"fit"}


@pytest.mark.slow
def test_session_experiment_end_to_end(tmp_path):
    exp = SessionExperiment.model_validate({
        "name": "t", "cutoff": 10, "progress": False,
        "datasets": {"syn": {"sessions": {"source": "synthetic", "synthetic": {"n_items": 150, "n_sessions": 800}}}},
        "methods": [{"label": "SKNN", "model": {"name": "sknn"}},
                    {"label": "AHC", "model": {"name": "ahc_knn"}, "grid": {"lam": [0.0, 1.0]}}],
        "sweep": {"method": "AHC", "field": "lam"}})
    out = run_session(exp, tmp_path / "s.json")
    r = json.loads((tmp_path / "s.json").read_text())["results"]["syn"]["methods"]["AHC"]
    assert set(r["settings"]) == {"lam=0.0", "lam=1.0"}
    best = max(r["settings"].values(), key=lambda v: v["valid"]["hr@10"])
    assert r["chosen"] == best["point"] and r["test"] == best["test"] and 0 < r["test"]["mrr@10"] <= r["test"]["hr@10"]
    assert "AHC vs SKNN" in out["summary"]["syn"]["relative"] and (tmp_path / "s.png").exists()
