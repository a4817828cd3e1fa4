"""DIN and behaviour sequences: the history view (earlier rows only), the behaviour feature's encoding
(shared target rows, truncation counted), masking, and DIN learning what only the history tells."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from llmrec.ctr.features import FeatureEncoder, FeatureSpec
from llmrec.data.schema import RecData
from llmrec.data.views import add_history
from llmrec.errors import ConfigError, DataError
from llmrec.models import build_model
from llmrec.train import Trainer, TrainerConfig


def _toy() -> RecData:
    return RecData("toy", {"user_id": np.array(["a", "b", "a", "a", "b", "a"], dtype=object),
                           "item_id": np.array(["i1", "i2", "i3", "i4", "i5", "i6"], dtype=object),
                           "label": np.array([1, 0, 0, 1, 1, 1], np.float32),
                           "timestamp": np.array([5, 1, 2, 9, 3, 7], np.float64)},
                   {"user_id": "categorical", "item_id": "categorical"})


def test_history_holds_only_earlier_rows_most_recent_last():
    d = add_history(_toy(), max_len=2)
    # user a in time order: i3 (t2), i1 (t5), i6 (t7), i4 (t9)
    assert d.columns["history"].tolist() == [("i3",), ("",)[:0] + (), (), ("i1", "i6"), ("i2",), ("i3", "i1")]
    assert d.fields["history"] == "behavior"
    pos = add_history(_toy(), max_len=5, positive_only=True)
    assert pos.columns["history"][3] == ("i1", "i6")  # i3 (label 0) left out
    with pytest.raises(DataError, match="max_len"):
        add_history(_toy(), 0)


def test_behavior_feature_uses_the_target_rows_and_counts_truncation():
    d = add_history(_toy(), max_len=5)
    specs = [FeatureSpec(name="user_id", type="categorical"), FeatureSpec(name="item_id", type="categorical"),
             FeatureSpec(name="history", type="behavior", target="item_id", max_len=1)]
    enc = FeatureEncoder(specs).fit(d.columns)
    b = enc.transform(d.columns)
    off = enc.offsets()["item_id"]
    # row 3 (user a at t9): history (i3, i1, i6) cut to its most recent item, i6 -> its item row, + 1
    assert int(b.seq["history"][3, 0]) == off + enc.vocab["item_id"]["i6"] + 1
    assert int(b.seq["history"][1, 0]) == 0  # no history: padding
    assert enc.truncated["history"] == 2  # rows 3 and 5 had more than one earlier item
    with pytest.raises(ValueError, match="specs.history.target"):
        FeatureEncoder([FeatureSpec(name="history", type="behavior", target="item_id")])


def _category_world(n: int = 6000, seed: int = 0) -> RecData:
    """Click iff the candidate's category (item % 5) is among the categories of the row's 4-item history
    (histories drawn per row, so no user or item id can tell): only a model reading the history can."""
    rng = np.random.default_rng(seed)
    items = rng.integers(0, 50, n)
    hist = rng.integers(0, 50, (n, 4))
    match = (hist % 5 == (items % 5)[:, None]).any(1)
    label = np.where(rng.random(n) < 0.9, match, ~match).astype(np.float32)
    return RecData("cat", {"user_id": np.array([f"u{i}" for i in rng.integers(0, 100, n)], dtype=object),
                           "item_id": np.array([f"i{i}" for i in items], dtype=object),
                           "history": np.array([tuple(f"i{i}" for i in h) for h in hist] + [()], dtype=object)[:-1],
                           "label": label, "timestamp": np.arange(n, dtype=np.float64)},
                   {"user_id": "categorical", "item_id": "categorical", "history": "behavior"})


@pytest.mark.slow
def test_din_learns_what_only_the_history_tells_and_masks_padding():
    d = _category_world()
    specs = [FeatureSpec(name="user_id", type="categorical"), FeatureSpec(name="item_id", type="categorical"),
             FeatureSpec(name="history", type="behavior", target="item_id", max_len=6)]
    enc = FeatureEncoder(specs).fit(d.columns)
    rows = np.arange(len(d))
    train, test = enc.transform(d.take(rows[:5000])), enc.transform(d.take(rows[5000:]))
    auc = {}
    for name in ("din", "deepfm"):
        torch.manual_seed(0)
        model = build_model(enc, {"name": name, "embedding_dim": 8, "hidden_units": [32], "dropout": 0.0})
        tr = Trainer(TrainerConfig(batch_size=128, epochs=10, learning_rate=1e-2, embedding_l2=0.0,
                                   progress=False, patience=10))
        tr.fit(model, train, test)
        auc[name] = tr.evaluate(model, test)["auc"]
    assert auc["din"] > 0.65 and auc["deepfm"] < 0.56, auc  # measured: 0.72 vs 0.50
    # padding: what sits in masked positions does not matter; a real behaviour does
    din = build_model(enc, {"name": "din", "embedding_dim": 8, "hidden_units": [16]}).eval()
    b = test.slice(torch.arange(8))
    base = din(b)
    junk = b.slice(torch.arange(8))
    junk.seq["history"][:, 4:] = 0  # histories hold 4 items; positions 4, 5 are padding already
    torch.testing.assert_close(din(junk), base)
    changed = b.slice(torch.arange(8))
    changed.seq["history"][:, 0] = changed.seq["history"][:, 1]
    assert not torch.allclose(din(changed), base)
    with pytest.raises(ConfigError, match="behaviour sequence"):
        build_model(FeatureEncoder(specs[:2]).fit(d.columns), {"name": "din"})


def test_peer_export_writes_histories_as_target_field_ids(tmp_path):
    from types import SimpleNamespace

    from llmrec.experiments.harness import export_split

    d = add_history(_toy(), max_len=3)
    specs = [FeatureSpec(name="user_id", type="categorical"), FeatureSpec(name="item_id", type="categorical"),
             FeatureSpec(name="history", type="behavior", target="item_id", max_len=3)]
    enc = FeatureEncoder(specs).fit(d.columns)
    b = enc.transform(d.columns)
    export_split(enc, SimpleNamespace(train=b, valid=b, test=b), tmp_path, {})
    z = np.load(tmp_path / "split.npz")
    items, hist = z["train/item_id"], z["train/history"]
    # row 3 (user a at t9) saw i3, i1, i6: their item ids + 1 (0 = padding), oldest first
    expect = [int(items[r]) + 1 for r in (2, 0, 5)]
    assert hist[3].tolist() == expect and hist[1].tolist() == [0, 0, 0]
    spec = json.loads((tmp_path / "spec.json").read_text())
    assert {"name": "history", "type": "behavior", "target": "item_id", "vocab": enc.cardinalities()["item_id"] + 1,
            "max_len": 3} in spec["features"]


@pytest.mark.slow
@pytest.mark.parametrize("library", ["fuxictr", "deepctr"])
def test_peer_dins_read_the_behaviour_sequence(tmp_path, library):
    """The peer libraries' DIN through ``eval/peers/peer_ctr.py`` on a planted split where the label is whether
    the target item occurs in the row's behaviour sequence: only a model that reads the sequence against its
    target can rank it (ids alone carry nothing), so a high test AUC shows each library's DIN gets the history
    (the sequence's padding shifted and masked as that library needs)."""
    import subprocess

    from llmrec.config import repo_root

    root = repo_root() or Path.cwd()
    python = root / ".venv-peers" / "bin" / "python"
    if not python.exists() or subprocess.run([str(python), "-c", f"import {library}"], capture_output=True).returncode:
        pytest.skip(f"the peers environment with {library} is not built (make peers)")
    rng = np.random.default_rng(0)
    n_items, L, arrays = 30, 5, {}
    for part, n in (("train", 6000), ("valid", 1000), ("test", 1000)):
        hist = rng.integers(0, n_items, (n, L))
        lengths = rng.integers(1, L + 1, n)
        seq = np.where(np.arange(L)[None, :] < lengths[:, None], hist + 1, 0)  # ids + 1, 0 = padding
        item = rng.integers(0, n_items, n)
        inside = rng.random(n) < 0.5  # half the rows take their target from their own history
        item = np.where(inside, hist[np.arange(n), rng.integers(0, lengths)], item)
        arrays[f"{part}/user_id"] = rng.integers(0, 50, n)
        arrays[f"{part}/item_id"] = item
        arrays[f"{part}/history"] = seq
        arrays[f"{part}/label"] = ((seq == (item + 1)[:, None]).any(1)).astype(np.float32)
    np.savez(tmp_path / "split.npz", **arrays)
    spec = {"features": [{"name": "user_id", "type": "categorical", "vocab": 50},
                         {"name": "item_id", "type": "categorical", "vocab": n_items},
                         {"name": "history", "type": "behavior", "target": "item_id", "vocab": n_items + 1,
                          "max_len": L}],
            "hp": {"embedding_dim": 16, "hidden_units": [32, 16], "dropout": 0.0, "batch_size": 256,
                   "learning_rate": 0.003, "embedding_l2": 0.0, "epochs": 6, "patience": 2,
                   "attention_units": [32, 16], "activation": "dice", "attention_softmax": False}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    res = subprocess.run([str(python), str(root / "eval" / "peers" / "peer_ctr.py"), str(tmp_path / "split.npz"),
                          str(tmp_path / "spec.json"), library, "0", "din"], capture_output=True, text=True,
                         env={**os.environ, "BENCH_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["library"] == library and out["model"] == "din" and out["epochs"] >= 1
    assert len(out["history"]) == out["epochs"] and out["auc"] > 0.9, out
