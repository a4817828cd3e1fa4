"""Issue 4: extraction retries, requests without leakage, Ray, LLM hidden-state encoding, the KAR adaptor,
LLM4MSR meta layers, and the extract -> train path through the CLI."""
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from llmrec.cli import app
from llmrec.ctr import FeatureEncoder, FeatureSpec
from llmrec.models import build_model, resolve_model_config
from llmrec.train import Trainer, TrainerConfig
from llmrec.ctr.adaptor import AdaptorConfig, KnowledgeAdaptor
from llmrec.models.multitask.star import MetaConfig, MetaLayer
from llmrec.data.schema import RecData
from llmrec.data.synthetic import SyntheticConfig, generate_world
from llmrec.knowledge import KnowledgeRequest, LLMHiddenEncoder, build_requests, encode_kind, extract
from llmrec.jobs import malformed, read_shard
from llmrec.llm import GenerationParams, LLMConfig
from llmrec.llm.base import Generation


def mc(**fields):
    """A registered model's typed config (its defaults file layered in)."""
    return resolve_model_config(fields)

P = GenerationParams(max_new_tokens=12)
REQS = [KnowledgeRequest(str(i), {"title": f"Item {i}", "category": "books", "description": f"Book number {i}."})
        for i in range(6)]


class Corrupting:
    """The real LLM, with the first ``bad_attempts`` outputs for some ids replaced by unusable text."""

    def __init__(self, llm, bad: dict[str, int]) -> None:
        self.llm, self.bad, self.calls = llm, dict(bad), []
        self.model_id = llm.model_id

    def generate(self, prompts, params):
        self.calls.append(len(prompts))
        gens = self.llm.generate(prompts, params)
        out = []
        for p, g in zip(prompts, gens):
            rid = next(r.id for r in REQS if f"Item {r.id}\n" in p[-1]["content"])
            if self.bad.get(rid, 0) > 0:
                self.bad[rid] -= 1
                g = Generation(text=" ", prompt_tokens=g.prompt_tokens, completion_tokens=1, finish_reason="stop")
            out.append(g)
        return out


def test_malformed_detection():
    assert malformed("", 3) == "empty"
    assert malformed("too short", 3) == "fewer than 3 words"
    assert malformed("the " * 20, 3) == "degenerate repetition"
    assert malformed("A warm cozy novel for quiet evenings.", 3) is None


@pytest.mark.slow  # seconds of generation or serving: kept out of the 2-minute fast lane (CI runs it)
def test_empty_generations_are_retried_then_recorded_and_reported(llm, tmp_path):
    fake = Corrupting(llm, {"1": 1, "4": 99})  # item 1 recovers on its retry; item 4 never does
    rep = extract(fake, "item", "item_knowledge", REQS, tmp_path, P, progress=False, max_retries=2)
    assert (rep.generated, rep.retried, rep.empty, rep.failed_ids) == (6, 2, 1, ["4"])
    assert fake.calls == [6, 2, 1]  # first pass, then retries of the unusable rows only
    rows = read_shard(tmp_path / "item.jsonl")
    assert rows["1"]["status"] == "ok" and rows["1"]["attempts"] == 2 and rows["1"]["text"].split()
    assert rows["4"]["status"] == "failed" and rows["4"]["attempts"] == 3
    # a re-run with nothing changed generates nothing; --retry-failed re-attempts only the failed row
    again = Corrupting(llm, {})
    assert extract(again, "item", "item_knowledge", REQS, tmp_path, P, progress=False).generated == 0
    assert again.calls == []
    rep3 = extract(again, "item", "item_knowledge", REQS, tmp_path, P, progress=False, retry_failed=True)
    assert (rep3.generated, rep3.empty) == (1, 0) and again.calls == [1]
    assert read_shard(tmp_path / "item.jsonl")["4"]["status"] == "ok"


def test_requests_show_only_training_interactions():
    data = generate_world(SyntheticConfig(n_users=30, n_items=40, impressions_per_user=30))
    tr, va, te = data.chronological_split()
    cutoff = data.columns[data.time][tr].max()
    later = data.take(np.concatenate([va, te]))
    title_of = {i: info["title"] for i, info in data.item_info.items()}
    train = data.take(tr)
    for kind in ("user", "user_scenario"):
        reqs = build_requests(data, tr, kind, history_items=6)
        assert len(reqs) == len(data.user_info)
        for r in reqs:
            shown = [t for i, t in title_of.items() if t in r.variables["history"]]
            clicked_in_train = {title_of[str(i)] for i, u, y in zip(train["item_id"], train["user_id"], train["label"])
                                if u == r.id and y > 0}
            assert set(shown) <= clicked_in_train, (kind, r.id)
    assert (later[data.time] > cutoff).all() or (later[data.time] >= cutoff).all()
    scen = build_requests(data, tr, "scenario")
    assert [r.id for r in scen] == ["home_feed", "search", "video"]
    assert all(r.variables["click_rate"].endswith("%") for r in scen)
    nos = RecData(name="x", columns={"label": np.zeros(2, np.float32), "timestamp": np.arange(2.0)}, fields={})
    with pytest.raises(ValueError, match="kinds: x has no scenario column"):
        build_requests(nos, np.arange(2), "scenario")


@pytest.mark.slow
def test_ray_extraction_matches_local_and_resumes(llm, tmp_path):
    pytest.importorskip("ray")
    from llmrec.knowledge.distributed import extract_ray

    local = extract(llm, "item", "item_knowledge", REQS, tmp_path / "local", P, progress=False)
    # half the rows exist already (a killed earlier run): Ray does only the rest
    (tmp_path / "ray").mkdir()
    lines = (tmp_path / "local" / "item.jsonl").read_text().splitlines()
    (tmp_path / "ray" / "item.jsonl").write_text("\n".join(lines[:3]) + "\n")
    rep = extract_ray(LLMConfig(batch_size=2), "item", "item_knowledge", REQS, tmp_path / "ray", P, workers=2,
                      chunk_size=2, progress=False)
    assert (local.generated, rep.cached, rep.generated) == (6, 3, 3)
    ray_rows = read_shard(tmp_path / "ray" / "item.jsonl")
    local_rows = read_shard(tmp_path / "local" / "item.jsonl")
    assert len((tmp_path / "ray" / "item.jsonl").read_text().splitlines()) == 6  # no duplicates
    assert {k: v["text"] for k, v in ray_rows.items()} == {k: v["text"] for k, v in local_rows.items()}


def test_llm_hidden_state_encoder(llm):
    enc = LLMHiddenEncoder(llm, batch_size=4)
    texts = ["A cozy novel.", "A very long and detailed description of a rugged outdoor tent for mountain trips.",
             "A cozy novel.", "Loud rock album"]
    v = enc.encode(texts)
    assert v.shape == (4, enc.dim) and enc.dim == llm.model.config.hidden_size
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    alone = enc.encode(["A cozy novel."])[0]
    assert np.allclose(v[0], alone, atol=1e-4) and np.allclose(v[0], v[2], atol=1e-5)  # padding is masked out
    assert v[0] @ v[1] < 0.9999
    assert "hidden" in enc.model_id


def test_encode_kind_reencodes_only_changed_texts(embedder, tmp_path):
    rows = [{"id": str(i), "kind": "item", "prompt_hash": "h", "model_id": "m", "text": f"text number {i}",
             "status": "ok"} for i in range(5)]
    shard = tmp_path / "item.jsonl"
    shard.write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    class Counting:
        model_id, dim = embedder.model_id, embedder.dim
        seen: list[str] = []

        def encode(self, texts):
            self.seen.extend(texts)
            return embedder.encode(texts)

    c = Counting()
    v1, path = encode_kind(tmp_path, "item", c)
    assert len(c.seen) == 5 and path.exists()
    rows[2]["text"] = "a changed text"
    rows.append({**rows[0], "id": "9", "text": "", "status": "failed"})
    shard.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    c.seen.clear()
    v2, _ = encode_kind(tmp_path, "item", c)
    assert sorted(c.seen) == ["a changed text", "no information"]
    assert np.array_equal(v1["0"], v2["0"]) and not np.allclose(v1["2"], v2["2"])


def _hidden_signal_data(n_users=60, n_items=80, per_user=60, seed=0):
    """Clicks depend on a hidden item vector and a hidden user vector; the 'knowledge' tables are noisy
    copies of them, so a model that uses the knowledge well must beat one that only has the ids."""
    rng = np.random.default_rng(seed)
    iv, uv = rng.normal(size=(n_items, 8)), rng.normal(size=(n_users, 8))
    u = np.repeat(np.arange(n_users), per_user)
    i = rng.integers(0, n_items, len(u))
    scen = rng.integers(0, 3, len(u))
    logit = 1.5 * (iv[i] * uv[u]).sum(1) / np.sqrt(8) + np.array([-0.5, 0.0, 0.5])[scen]
    y = (rng.random(len(u)) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    cols = {"user_id": u.astype(str).astype(object), "item_id": i.astype(str).astype(object),
            "scenario": np.array(["a", "b", "c"], dtype=object)[scen], "label": y,
            "timestamp": rng.permutation(len(u)).astype(np.float64)}
    data = RecData(name="hidden", columns=cols, fields={"user_id": "categorical", "item_id": "categorical",
                                                         "scenario": "categorical"}, scenario_col="scenario")
    proj = rng.normal(size=(8, 32))
    tables = {
        "item_knowledge": {str(k): (iv[k] @ proj + 0.1 * rng.normal(size=32)).astype(np.float32) for k in range(n_items)},
        "user_knowledge": {str(k): (uv[k] @ proj + 0.1 * rng.normal(size=32)).astype(np.float32) for k in range(n_users)},
        "scenario_knowledge": {s: rng.normal(size=32).astype(np.float32) for s in "abc"},
    }
    return data, tables


def _fit(data, tables, specs, cfg, seed=0):
    tr, va, te = data.chronological_split()
    enc = FeatureEncoder(specs).fit(data.take(tr))
    b = [enc.transform(data.take(r), label=data.label, dense_tables=tables) for r in (tr, va, te)]
    torch.manual_seed(seed)
    model = build_model(enc, cfg)
    trainer = Trainer(TrainerConfig(epochs=6, batch_size=256, learning_rate=3e-3, progress=False, seed=seed))
    trainer.fit(model, b[0], b[1])
    return model, trainer.evaluate(model, b[2])["auc"]


def test_hea_adaptor_shapes_gates_and_learns_from_knowledge():
    ad = KnowledgeAdaptor({"a": 32, "b": 32}, 10, AdaptorConfig(kind="hea", shared_experts=2, specific_experts=3))
    out = ad({"a": torch.randn(5, 32), "b": torch.randn(5, 32)})
    assert out.shape == (5, 2, 10)
    assert len(ad.shared) == 2 and all(len(v) == 3 for v in ad.specific.values())
    assert ad.gates["a"].out_features == 5
    with pytest.raises(ValueError, match="knowledge_adaptor: hea shares experts"):
        KnowledgeAdaptor({"a": 32, "b": 16}, 10, AdaptorConfig(kind="hea"))
    data, tables = _hidden_signal_data()
    base = [FeatureSpec(name=n, type=t) for n, t in data.fields.items()]
    know = base + [FeatureSpec(name="item_knowledge", type="dense", key="item_id", dim=32),
                   FeatureSpec(name="user_knowledge", type="dense", key="user_id", dim=32)]
    cfg = mc(name="deepfm", hidden_units=[64, 64], dropout=0.0, embedding_dim=8)
    _, auc_base = _fit(data, tables, base, cfg)
    _, auc_hea = _fit(data, tables, know, cfg.model_copy(update={"knowledge_adaptor": AdaptorConfig(kind="hea")}))
    assert auc_hea > auc_base + 0.03, (auc_base, auc_hea)


def test_llm4msr_meta_layers_generate_per_sample_weights_and_use_user_knowledge():
    layer = MetaLayer(k_dim=4, in_dim=6, out_dim=3, rank=2, hidden=8)
    torch.nn.init.normal_(layer.bias.weight)
    x = torch.randn(1, 6).repeat(2, 1)
    y = layer(torch.randn(2, 4), x)
    assert y.shape == (2, 3) and not torch.allclose(y[0], y[1])  # same input, different knowledge -> different layer
    data, tables = _hidden_signal_data(seed=1)
    tables = {"user_scenario_knowledge": tables["user_knowledge"], "scenario_knowledge": tables["scenario_knowledge"]}
    specs = [FeatureSpec(name=n, type=t) for n, t in data.fields.items()] + [
        FeatureSpec(name="user_scenario_knowledge", type="dense", key="user_id", dim=32),
        FeatureSpec(name="scenario_knowledge", type="dense", key="scenario", dim=32)]
    star = mc(name="star", hidden_units=[64], dropout=0.0, embedding_dim=8)
    m_star, auc_star = _fit(data, tables, specs, star)
    assert m_star.embedding.n_fields == 5  # without meta layers the knowledge vectors are plain fields
    msr = star.model_copy(update={"meta": MetaConfig(enabled=True)})
    m_msr, auc_msr = _fit(data, tables, specs, msr)
    assert m_msr.embedding.n_fields == 3 and m_msr.user_meta is not None and m_msr.scen_meta is not None
    assert auc_msr > 0.6 and auc_star > 0.6
    with pytest.raises(ValueError, match="model.meta.user_knowledge: 'nope'"):
        bad = msr.model_copy(update={"meta": MetaConfig(enabled=True, user_knowledge="nope")})
        _fit(data, tables, specs, bad)


@pytest.mark.slow
def test_extract_cli_then_train_with_knowledge(tmp_path):
    out = tmp_path / "k"
    args = ["extract", "--users", "12", "--items", "10", "--impressions", "12", "--kinds", "item,user",
            "--max-new-tokens", "8", "--dtype", "float32", "--out", str(out), "--report", str(tmp_path / "r.json")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "r.json").read_text())
    assert [r["generated"] for r in rep["extraction"]] == [10, 12]
    assert len(list(out.glob("*.npz"))) == 2
    res = CliRunner().invoke(app, args)  # cached: nothing generated
    assert json.loads((tmp_path / "r.json").read_text())["extraction"][0]["generated"] == 0
    cfg = tmp_path / "job.yaml"
    cfg.write_text(f"""
data: {{source: synthetic, synthetic: {{n_users: 12, n_items: 10, impressions_per_user: 12}}}}
knowledge: {{dir: {out}, kinds: [item, user]}}
model: {{name: deepfm, hidden_units: [16], knowledge_adaptor: {{kind: hea}}}}
trainer: {{epochs: 1, batch_size: 32, progress: false}}
output_dir: {tmp_path / "run"}
""")
    res = CliRunner().invoke(app, ["train", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert 0 <= result["test"]["auc"] <= 1
    res = CliRunner().invoke(app, ["evaluate", "--config", str(cfg)])
    assert res.exit_code == 0 and json.loads(res.output)["test"]["auc"] == pytest.approx(result["test"]["auc"])
    res = CliRunner().invoke(app, ["extract", "--kinds", "item,bogus", "--out", str(out)])
    assert res.exit_code != 0


def test_experiment_knowledge_variants_shuffle_control_and_per_scenario_auc(tmp_path):
    """A harness experiment with knowledge variants: the shuffled control permutes the vectors across ids,
    the experiment's extraction LLM reaches every job (also through the isolated worker's round trip), and
    pointwise runs on data with scenarios report AUC per scenario."""
    from llmrec.data.registry import DataConfig, load_data
    from llmrec.experiments.harness import ExperimentConfig, Variant, job_config, run_experiment
    from llmrec.train_job import KnowledgeFeatures, knowledge_inputs
    from llmrec.knowledge.encode import save_vectors, vectors_path

    data_cfg = {"synthetic": {"n_users": 40, "n_items": 30, "impressions_per_user": 25}}
    data = load_data(DataConfig.model_validate(data_cfg))
    rng = np.random.default_rng(0)
    for kind, col in (("item", "item_id"), ("user", "user_id")):
        ids = sorted({str(x) for x in data.columns[col]})
        save_vectors(vectors_path(tmp_path, kind, "test-encoder"), {i: rng.normal(size=8).astype(np.float32) for i in ids},
                     "test-encoder")
    real = knowledge_inputs(KnowledgeFeatures(dir=str(tmp_path)), data)[1]["item_knowledge"]
    shuf = knowledge_inputs(KnowledgeFeatures(dir=str(tmp_path), shuffle=["item"]), data)[1]["item_knowledge"]
    assert set(real) == set(shuf)
    assert sorted(v.tobytes() for v in real.values()) == sorted(v.tobytes() for v in shuf.values())
    assert sum(np.array_equal(real[i], shuf[i]) for i in real) < len(real) // 2  # moved to other ids
    with pytest.raises(ValueError, match="shuffle: \\['scenario'\\] are not among kinds"):
        KnowledgeFeatures(kinds=["item"], shuffle=["scenario"])

    exp = ExperimentConfig.model_validate({
        "name": "k", "seeds": [3], "isolate": False, "knowledge": {"llm": {"dtype": "bfloat16"}},
        "datasets": {"s": {"data": data_cfg, "trainer": {"epochs": 1, "batch_size": 256}}},
        "variants": [{"label": "fm+k", "model": {"name": "fm"}, "knowledge": {"dir": str(tmp_path)}},
                     {"label": "fm+k shuffled", "model": {"name": "fm"},
                      "knowledge": {"dir": str(tmp_path), "shuffle": ["item", "user"]}}]})
    v = exp.variants[1]
    sent = Variant.model_validate(v.model_dump(mode="json", exclude_unset=True))  # what the worker receives
    for variant in (v, sent):
        assert job_config(exp, "s", variant, 3).knowledge.llm.dtype == "bfloat16"
    exp_no_extraction = exp.model_copy(update={"knowledge": None})
    res = run_experiment(exp_no_extraction, out=tmp_path / "r.json")["datasets"]["s"]["variants"]
    for label in ("fm+k", "fm+k shuffled"):
        by = res[label]["by_scenario_mean"]
        assert set(by) == {str(s) for s in set(data.columns["scenario"])}
        assert all(0.0 < m["auc"] < 1.0 for m in by.values())
    assert res["fm+k"]["runs"][0]["test"]["auc"] != res["fm+k shuffled"]["runs"][0]["test"]["auc"]
