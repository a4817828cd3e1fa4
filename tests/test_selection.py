"""ERASE field selection: every selector finds a planted signal field, the protocol's helpers, the gates, the
trainer's auxiliary loss, and the ctr_select experiment end to end (retrain on top k, AUKC, resume, CLI)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.ctr.features import FeatureEncoder, FeatureSpec
from llmrec.errors import ConfigError
import llmrec.experiments.ctr_select as cs
from llmrec.experiments.ctr_select import SelectExperiment, run_ctr_select
from llmrec.models import build_model
from llmrec.train import PointwiseTask, Trainer, TrainerConfig
from llmrec.train.selection import (SELECTORS, GatedModel, LPFSGate, SelectionInput, _target_encoding,
                                    permute_field, rank_fields, select, top_k)

SPECS = [FeatureSpec(name="noise", type="categorical"), FeatureSpec(name="signal", type="categorical"),
         FeatureSpec(name="weak", type="categorical"), FeatureSpec(name="x", type="numerical"),
         FeatureSpec(name="tags", type="multi_hot")]


def _columns(n: int, seed: int) -> dict:
    """``signal`` (60 values) sets most of the click probability, ``weak`` a little, the rest is noise."""
    rng = np.random.default_rng(seed)
    sig, weak, noise = rng.integers(0, 60, n), rng.integers(0, 5, n), rng.integers(0, 40, n)
    effect = np.random.default_rng(99).normal(0, 1.6, 60)
    logit = effect[sig] + 0.3 * (weak - 2)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    tags = np.empty(n, dtype=object)
    tags[:] = [tuple(f"t{t}" for t in rng.integers(0, 8, rng.integers(0, 3))) for _ in range(n)]
    return {"noise": noise.astype(str).astype(object), "signal": sig.astype(str).astype(object),
            "weak": weak.astype(str).astype(object), "x": rng.normal(size=n), "tags": tags, "label": y}


@pytest.fixture(scope="module")
def planted() -> SelectionInput:
    enc = FeatureEncoder(SPECS).fit(_columns(6000, 1))
    train, valid = enc.transform(_columns(6000, 1)), enc.transform(_columns(2000, 2))

    def build() -> torch.nn.Module:
        torch.manual_seed(0)
        return build_model(enc, {"name": "dnn", "embedding_dim": 4, "hidden_units": [32], "dropout": 0.0})

    trainer = Trainer(TrainerConfig(batch_size=256, epochs=6, patience=1, learning_rate=0.01, embedding_l2=0.0,
                                    progress=False), PointwiseTask())
    return SelectionInput(enc, train, valid, build, trainer, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in SELECTORS.names() if n not in ("random", "sfs")])
def test_every_selector_ranks_the_planted_signal_field_first(planted, name):
    out = select(name, planted)
    assert set(out["ranking"]) == set(planted.fields) and len(out["ranking"]) == 5
    assert out["ranking"][0] == "signal", out


def test_sfs_scores_every_field_at_initialization_and_random_is_seeded(planted):
    sfs = select("sfs", planted)["scores"]
    assert all(np.isfinite(v) and v > 0 for v in sfs.values())  # a gradient reaches every field's mask
    a, b = select("random", planted), select("random", planted)
    assert a == b and sorted(a["scores"].values()) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_rank_fields_and_top_k_name_bad_input():
    assert rank_fields(["a", "b", "c"], np.array([1.0, 2.0, 1.0])) == ["b", "a", "c"]  # ties keep order
    with pytest.raises(ValueError, match="scores"):
        rank_fields(["a", "b"], np.array([1.0, np.nan]))
    with pytest.raises(ConfigError, match="k: asked for 4 fields, the data has 3"):
        top_k(["a", "b", "c"], 4)


def test_permute_field_moves_only_that_field(planted):
    b = planted.valid.slice(torch.arange(50))
    perm = torch.arange(49, -1, -1)
    for name in planted.fields:
        out = permute_field(b, planted.encoder, name, perm)
        changed = {f for f, same in [("cat", torch.equal(out.cat, b.cat)), ("num", torch.equal(out.num, b.num)),
                                     ("tags", torch.equal(out.seq["tags"], b.seq["tags"]))] if not same}
        if name == "x":
            assert changed == {"num"} and torch.equal(out.num[:, 0], b.num.flip(0)[:, 0])
        elif name == "tags":
            assert changed == {"tags"}
        else:
            col = [s.name for s in planted.encoder.categorical].index(name)
            assert changed == {"cat"} and torch.equal(out.cat[:, col], b.cat[perm, col])
            others = [c for c in range(3) if c != col]
            assert torch.equal(out.cat[:, others], b.cat[:, others])


def test_target_encoding_is_out_of_fold_and_smoothed():
    ids = np.array([1, 1, 1, 2, 2, 2])
    y = np.array([1.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    folds = np.array([0, 1, 0, 1, 0, 1])
    enc = _target_encoding(ids, y, folds, 2, m=2.0)
    prior = y.mean()
    # row 0 (fold 0, id 1): only fold 1's rows of id 1 count, i.e. row 1 (label 1)
    assert enc[0] == pytest.approx((1.0 + 2 * prior) / (1 + 2))
    # row 3 (fold 1, id 2): fold 0's row 4 (label 0)
    assert enc[3] == pytest.approx((0.0 + 2 * prior) / (1 + 2))
    tokens = np.array([[1, 0], [2, 1], [0, 0], [1, 2]])  # multi-hot, 0 = padding; a row without tokens: the prior
    enc = _target_encoding(tokens, np.array([1.0, 0.0, 1.0, 0.0]), np.array([0, 1, 0, 1]), 2, m=0.0)
    assert enc[2] == pytest.approx(0.5) and enc[0] == pytest.approx(0.0)  # fold 1 holds token 1 with labels 0, 0


@pytest.mark.slow
def test_trainer_adds_a_modules_auxiliary_loss(planted):
    def fitted(weight: float) -> LPFSGate:
        gate = LPFSGate(len(planted.fields), scale=10.0, penalty=weight, anneal=50)
        planted.trainer.fit(GatedModel(planted.build(), gate), planted.train, planted.valid)
        return gate

    free, pushed = fitted(0.0), fitted(0.05)
    # the L1 penalty on the gates pulls the noise field's gate down; without it nothing does
    noise = planted.fields.index("noise")
    assert float(pushed.x()[noise].detach().abs()) < 0.5 * float(free.x()[noise].detach().abs())


def test_gated_model_needs_a_field_embedding():
    with pytest.raises(ConfigError, match="no field-embedding layer"):
        GatedModel(torch.nn.Linear(2, 1), LPFSGate(2, 1.0, 0.0, 1))


def _experiment(tmp_path, selectors=("lasso", "random"), ks=(1, 9)) -> SelectExperiment:
    return SelectExperiment(
        name="t", seeds=[3], selectors=list(selectors), ks=list(ks), output=str(tmp_path / "sel.json"),
        backbone={"name": "dnn", "embedding_dim": 4, "hidden_units": [16]},
        datasets={"syn": {"data": {"source": "synthetic", "synthetic": {"n_users": 80, "n_items": 60,
                                                                         "impressions_per_user": 25}},
                          "trainer": {"batch_size": 256, "epochs": 3, "patience": 1, "progress": False}}})


@pytest.mark.slow
def test_ctr_select_retrains_on_top_k_and_reports_aukc(tmp_path):
    res = run_ctr_select(_experiment(tmp_path))
    s = res["summary"]["syn"]
    assert len(s["fields"]) == 9 and s["ks"] == [1, 9]
    saved = json.loads((tmp_path / "sel.json").read_text())
    for name in ("lasso", "random"):
        v = s["selectors"][name]
        curve = saved["runs"]["syn"]["curves"][name][0]
        assert [c["k"] for c in curve] == [1, 9] and len(curve[0]["fields"]) == 1
        assert curve[0]["fields"] == [v["rankings"][0][0]]
        assert v["aukc"]["mean"] == pytest.approx(np.mean([c["auc"] for c in curve]))
        assert v["all_fields_gap"] == 0.0  # keeping every field retrains exactly the unselected model
        assert v["top3_has_user_and_item"] == [{"user_id", "item_id"} <= set(v["rankings"][0][:3])]
    assert s["best"]["selector"] == "lasso"
    assert s["best"]["over_random"] == pytest.approx(s["selectors"]["lasso"]["aukc"]["mean"] -
                                                     s["selectors"]["random"]["aukc"]["mean"])
    # the runner keeps the finished items (git-ignored): a later run with more seeds or ks trains only what is new
    assert (tmp_path / "sel.png").stat().st_size > 0 and (tmp_path / "sel.partial.json").exists()


@pytest.mark.slow
def test_ctr_select_resumes_and_names_bad_config(tmp_path, monkeypatch):
    exp = _experiment(tmp_path, selectors=("random",), ks=(2,))
    calls = []
    real = cs.retrain

    def killed_in_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(cs, "retrain", killed_in_second)
    with pytest.raises(KeyboardInterrupt):  # killed in the second retrain: the first is kept
        run_ctr_select(exp)
    assert (tmp_path / "sel.partial.json").exists()
    run_ctr_select(exp)
    assert len(calls) == 3  # 2 before the kill + the one left
    with pytest.raises(ConfigError, match="k: asked for 12 fields, the data has 9"):
        run_ctr_select(_experiment(tmp_path / "b", selectors=("random",), ks=(12,)))
    with pytest.raises(ValueError, match="selectors"):
        _experiment(tmp_path, selectors=("lasso", "nope"))


@pytest.mark.slow
def test_llmrec_select_cli_prints_rankings(tmp_path):
    cfg = tmp_path / "sel.yaml"
    exp = _experiment(tmp_path, selectors=("random",), ks=(9,)).model_dump(mode="json")
    cfg.write_text(json.dumps({"kind": "ctr_select", **exp}))
    res = CliRunner().invoke(app, ["select", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "random" in res.output and (tmp_path / "sel.json").exists()


def test_field_selection_is_an_option_of_the_training_job(tmp_path):
    """``selection: {selector, k}`` in a job: the selector ranks the job's fields on a backbone, the job trains
    on the k best, and the result says what was kept. On a planted file only ``signal`` moves the label."""
    from llmrec.train_job import TrainJobConfig, run_training

    rng = np.random.default_rng(0)
    effect = np.random.default_rng(5).normal(0, 2.0, 30)
    lines = ["user,item,t,signal,noise_a,noise_b,clicked"]
    for n in range(4000):
        sig = int(rng.integers(0, 30))
        y = int(rng.random() < 1 / (1 + np.exp(-effect[sig])))
        lines.append(f"u{rng.integers(0, 300)},i{rng.integers(0, 200)},{n},s{sig},a{rng.integers(0, 30)},"
                     f"b{rng.integers(0, 30)},{y}")
    (tmp_path / "log.csv").write_text("\n".join(lines) + "\n")
    files = {"interactions": {"path": str(tmp_path / "log.csv")},
             "columns": {"user": "user", "item": "item", "time": "t", "label": "clicked"},
             "features": {"signal": "categorical", "noise_a": "categorical", "noise_b": "categorical"}}
    job = TrainJobConfig.model_validate({
        "data": {"source": "files", "files": files}, "model": {"name": "dnn", "embedding_dim": 4, "hidden_units": [16]},
        "trainer": {"epochs": 3, "batch_size": 256, "embedding_l2": 0.0, "progress": False},
        "selection": {"selector": "lasso", "k": 1}, "output_dir": str(tmp_path / "run")})
    result = run_training(job)
    assert result["selection"]["kept"] == ["signal"] and result["selection"]["ranking"][0] == "signal"
    assert result["test"]["auc"] > 0.7
    with pytest.raises(ValueError, match="selection: field selection ranks impression fields"):
        TrainJobConfig.model_validate({"model": {"name": "lightgcn"}, "selection": {"selector": "lasso", "k": 1}})
    with pytest.raises(ValueError, match="selection.selector: 'nope'"):
        TrainJobConfig.model_validate({"model": {"name": "dnn"}, "selection": {"selector": "nope", "k": 1}})
