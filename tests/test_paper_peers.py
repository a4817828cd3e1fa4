"""The papers' own code as peers (issue 37): the peer configs and the data shim of the Helen runner (their code
itself runs in `make peers-code` environments only, through `llmrec experiment ctr_helen_code`)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from llmrec.experiments.harness import Peer

ROOT = Path(__file__).resolve().parents[1]


def test_helen_peers_name_their_optimizer_and_only_they_do():
    assert Peer(library="helen", model="dnn", optimizer="adam").key == "helen:dnn:adam"
    assert Peer(library="fuxictr", model="deepfm").key == "fuxictr:deepfm"
    with pytest.raises(ValueError, match="optimizer"):
        Peer(library="helen", model="dnn")
    with pytest.raises(ValueError, match="optimizer"):
        Peer(library="fuxictr", model="deepfm", optimizer="adam")
    with pytest.raises(ValueError, match="helen runs"):
        Peer(library="helen", model="din", optimizer="helen")
    assert Peer(library="cigf", model="lightgcn").key == "cigf:lightgcn"
    with pytest.raises(ValueError, match="cigf runs"):
        Peer(library="cigf", model="dnn")


def test_helen_shim_encodes_the_split_in_their_format():
    spec_ = importlib.util.spec_from_file_location("peer_helen", ROOT / "eval" / "peers" / "peer_helen.py")
    peer = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(peer)
    rng = np.random.default_rng(0)
    parts = {}
    for part, n in (("train", 50), ("valid", 10), ("test", 10)):
        genres = np.zeros((n, 3), np.int64)
        genres[:, 0] = rng.integers(1, 5, n)  # ids 1..4, 0 = padding
        parts[part] = {"user_id": rng.integers(0, 7, n), "age": rng.random(n).astype(np.float32),
                       "genres": genres, "hist": np.zeros((n, 2), np.int64), "label": rng.integers(0, 2, n).astype(np.float32)}
    spec = {"features": [{"name": "user_id", "type": "categorical", "vocab": 7}, {"name": "age", "type": "numerical"},
                         {"name": "genres", "type": "multi_hot", "vocab": 5, "max_len": 3},
                         {"name": "hist", "type": "behavior", "target": "user_id", "vocab": 8, "max_len": 2}]}
    feature_map, arrays = peer.encode(parts, spec)
    fmap = json.loads(json.dumps(feature_map))["feature_specs"]  # what feature_map.json holds
    assert list(fmap) == ["f00", "f01", "f02"]  # the behaviour field is not read by DNN / DeepFM
    assert fmap["f00"]["index"] == 0 and fmap["f01"]["type"] == "numeric" and fmap["f02"]["index"] == [2, 3, 4]
    rows = arrays["train"]
    t = parts["train"]
    assert rows.shape == (50, 6)
    assert np.array_equal(rows[:, 0], t["user_id"]) and np.allclose(rows[:, 1], t["age"])
    assert np.array_equal(rows[:, 5], t["label"])
    # multi-value ids 1.. become 0.., padding 0 becomes their padding row (vocab - 1 = 4)
    assert np.array_equal(rows[:, 2], t["genres"][:, 0] - 1) and (rows[:, 3:5] == 4).all()


def test_peer_commands_for_libraries_and_for_a_papers_checkout(tmp_path):
    from llmrec.errors import BackendError
    from llmrec.experiments.paper_code import peer_command

    lib = peer_command(tmp_path, tmp_path / "run", "fuxictr", "deepfm", 7, None)
    assert lib[0].endswith("eval/peers/peer_ctr.py") and lib[1:] == [
        str(tmp_path / "run" / "split.npz"), str(tmp_path / "run" / "spec.json"), "fuxictr", "7", "deepfm"]
    with pytest.raises(BackendError, match="make peers-code"):
        peer_command(tmp_path, tmp_path / "run", "helen", "dnn", 7, "helen")
    (tmp_path / ".peers" / "Helen").mkdir(parents=True)
    code = peer_command(tmp_path, tmp_path / "run", "helen", "dnn", 7, "helen")
    assert code[0].endswith("eval/peers/peer_helen.py") and code[3:] == [str(tmp_path / ".peers" / "Helen"), "7",
                                                                         "dnn", "helen"]


def _peer_cigf():
    spec_ = importlib.util.spec_from_file_location("peer_cigf", ROOT / "eval" / "peers" / "peer_cigf.py")
    peer = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(peer)
    return peer


def _behaviour_job():
    import torch
    from types import SimpleNamespace
    from llmrec.data.views import PairBatch, RankingEval

    rng = np.random.default_rng(3)
    n_users, n_items = 9, 15  # item 0 = padding
    users = torch.from_numpy(rng.integers(0, n_users, 60))
    items = torch.from_numpy(rng.integers(1, n_items, 60))
    beh = torch.from_numpy(rng.integers(0, 3, 60))
    valid = RankingEval(torch.arange(n_users), [rng.choice(np.arange(1, n_items), 2, replace=False) for _ in range(n_users)],
                        [rng.choice(np.arange(1, n_items), 4, replace=False) for _ in range(n_users)])
    test = RankingEval(torch.tensor([1, 4, 6]), [np.array([7, 2]), np.array([3]), np.array([14])], [])
    space = SimpleNamespace(users={str(u): u for u in range(n_users)}, n_items=n_items)
    return SimpleNamespace(context=space, train=PairBatch(users, items, beh), valid=valid, test=test)


def test_cigf_shim_writes_their_matrices_and_one_test_item_per_user(tmp_path):
    import pickle
    from llmrec.experiments.paper_code import graph_split_arrays

    peer, p = _peer_cigf(), _behaviour_job()
    split = graph_split_arrays(p, 3)
    assert split["test_first"].tolist() == [0, 7, 0, 0, 3, 0, 14, 0, 0]
    for model in ("cigf", "lightgcn"):
        folder = tmp_path / model
        assert peer.write_data(split, model, str(folder)) == "beibei"
        mats = {}
        for beh in ("pv", "cart", "buy"):
            with open(folder / "Datasets" / "beibei" / f"trn_{beh}", "rb") as f:
                mats[beh] = pickle.load(f).toarray()
            assert mats[beh].shape == (9, 14)  # their items start at 0: ours minus one
        for b, beh in enumerate(("pv", "cart", "buy")):
            rows = p.train.behaviour.numpy() == (b if model == "cigf" else 2)
            want = np.zeros((9, 14))
            want[p.train.users.numpy()[rows], p.train.items.numpy()[rows] - 1] = 1
            assert np.array_equal(mats[beh] != 0, want != 0)
        with open(folder / "Datasets" / "beibei" / "tst_int", "rb") as f:
            tst = pickle.load(f)
        assert [x for x in tst] == [None, 6, None, None, 2, None, 13, None, None]
    with pytest.raises(SystemExit, match="3 behaviours"):
        peer.write_data({**split, "behaviours": np.int64(2)}, "cigf", str(tmp_path / "two"))


def test_cigf_shim_validation_metric_is_llmrecs_full_ranking_ndcg():
    import torch
    from llmrec.train.tasks import ScoreMatrix
    from llmrec.experiments.paper_code import graph_split_arrays
    from llmrec.train import BPRTask, Trainer, TrainerConfig

    peer, p = _peer_cigf(), _behaviour_job()
    split = graph_split_arrays(p, 3)
    scores = np.random.default_rng(4).normal(size=(9, 15)).astype(np.float32)
    theirs = peer.ndcg10(scores, split["valid_gold_ptr"], split["valid_gold"], split["valid_seen_ptr"],
                         split["valid_seen"], split["valid_users"])
    ours = BPRTask(15).evaluate(ScoreMatrix(scores), p.valid, Trainer(TrainerConfig()))["ndcg@10"]
    assert theirs == pytest.approx(ours, abs=1e-6)
    assert 0 < ours < 1
