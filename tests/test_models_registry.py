"""One test over every registered model: it trains above chance on the synthetic world with its family's
task, survives save -> load with identical predictions, and (impression families) exports to ONNX with
parity. Plus the registry's config layering and the ``llmrec models`` listing."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from llmrec.data import SyntheticConfig, generate_world
from llmrec.data.schema import RecData
from llmrec.data.synthetic import SequenceWorldConfig, generate_sequences
from llmrec.data.views import SeqBatch, add_history
from llmrec.errors import ConfigError, LLMRecError
from llmrec.train_job import TrainJobConfig, make_trainer, prepare, train_prepared
from llmrec.models import MODELS, describe_models, model_defaults, resolve_model_config
from llmrec.train.tasks import TASKS
from llmrec.train.export import export_onnx, load_model, save_model

# smaller than the defaults so every model trains in seconds on 2 cores
SMALL = {"hidden_units": [64, 64], "dropout": 0.0, "fgcnn_channels": [4, 4], "search_epochs": 1,
         "hash_buckets": 2000, "attention_layers": 2, "head_dim": 8, "embedding_dim": 16}
CHANCE = {"auc": 0.5, "ndcg@10": None}  # ndcg@10 chance is measured: an untrained model of the same family


@pytest.fixture(scope="module")
def world():
    return generate_world(SyntheticConfig(n_users=150, n_items=120, impressions_per_user=60))


@pytest.fixture(scope="module")
def sequences():  # the sequential family's world: transition structure + text-only taste
    return generate_sequences(SequenceWorldConfig(n_users=150, n_items=120, max_length=30))


@pytest.fixture(scope="module")
def graph_world():  # the graph family's world: 6 taste clusters, 16 in-cluster items and 4 others per user
    rng = np.random.default_rng(0)
    users, items, ratings = [], [], []  # in-cluster items rated 3-5, the others 1-3 (CIGF's behaviours)
    for u in range(150):
        c = u % 6
        for n, i in enumerate([*rng.choice(np.arange(c * 20, c * 20 + 20), 16, replace=False),
                               *rng.choice(120, 4, replace=False)]):
            users.append(f"u{u}")
            items.append(f"i{i}")
            ratings.append(rng.integers(3, 6) if n < 16 else rng.integers(1, 4))
    n = len(users)
    return RecData(name="clusters", columns={"user_id": np.array(users, dtype=object),
                                             "item_id": np.array(items, dtype=object),
                                             "timestamp": np.arange(n, dtype=np.float64),
                                             "label": np.ones(n, np.float32),
                                             "rating": np.array(ratings, dtype=np.float32)},
                   fields={"user_id": "categorical", "item_id": "categorical"})


# ranking families: BPR on ~4k positives needs a higher rate and almost no whole-table L2
RANKING_TRAINER = {"learning_rate": 0.01, "embedding_l2": 1e-6, "epochs": 10}


def small_job(name: str, **trainer) -> TrainJobConfig:
    entry = MODELS.get(name)
    extra = RANKING_TRAINER if entry.family in ("graph", "sequential") else {}
    if entry.family == "sequential":  # one row per user (~150): smaller batches for enough steps
        extra = {**extra, "batch_size": 16, "learning_rate": 0.005}
    # models that read more of the graph view get it (CIGF: behaviour graphs from the rating column)
    graph = {"behaviours": [{"name": "rated"}, {"name": "liked", "min": 4}], "train_on": "all"} if name == "cigf" else {}
    return TrainJobConfig(model={"name": name, **{k: v for k, v in SMALL.items() if k in entry.config.model_fields}},
                          trainer={"progress": False, "epochs": 4, "batch_size": 256, **extra, **trainer}, graph=graph)


def predictions(model, p, trainer):
    if isinstance(p.test, SeqBatch):  # next-item logits over every item after each test history
        with torch.no_grad():
            model.eval()
            return model(p.test)
    if hasattr(model, "full_scores"):
        with torch.no_grad():
            model.eval()
            return model.full_scores(p.test.users)
    return torch.from_numpy(trainer.predict(model, p.test))


# models trained by the one loop's tasks; the fit / actor-critic / policy-gradient families have their own tests
TRAINED = [n for n in MODELS.names() if MODELS.get(n).default_task in TASKS.names()]


@pytest.mark.parametrize("name", TRAINED)
def test_every_registered_model_trains_saves_loads(world, sequences, graph_world, name, tmp_path):
    job = small_job(name)
    family = MODELS.get(name).family
    data = {"sequential": sequences, "graph": graph_world}.get(family, world)
    p = prepare(job, add_history(data, 10) if name == "din" else data)  # DIN reads a behaviour sequence
    if name == "confrec":  # item vectors: the item's taste cluster, noisy (what its text would say)
        rng = np.random.default_rng(0)
        vec = np.zeros((p.context.n_items, 8), np.float32)
        for item, idx in p.context.items.items():
            vec[idx, int(item[1:]) // 20] = 1.0
        p.context = replace(p.context, item_vectors=vec + 0.3 * rng.normal(size=vec.shape).astype(np.float32))
    model, result = train_prepared(job, p)
    metric = result["primary_metric"]
    if metric == "auc":
        assert result["test"]["auc"] > 0.55, result["test"]
    else:  # ranking families: beat the same model untrained (random scores); this world is small
        torch.manual_seed(0)  # (~2.7k positives), so the clear margin is asked on validation
        untrained = MODELS.get(name).build(p.context, resolve_model_config(job.model))
        t = make_trainer(job, p)
        assert result["valid"][metric] > t.evaluate(untrained, p.valid)[metric] + 0.02, result["valid"]
        assert result["test"][metric] > t.evaluate(untrained, p.test)[metric], result["test"]
    trainer = make_trainer(job, p)
    before = predictions(model, p, trainer)
    save_model(tmp_path / "m", model, p.context)
    loaded, context = load_model(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.config == model.config
    assert torch.allclose(before, predictions(loaded, p, trainer), atol=1e-6)
    if MODELS.get(name).onnx:
        pytest.importorskip("onnxruntime")
        sample = p.test.slice(torch.arange(64))
        res = export_onnx(loaded, sample, tmp_path / "m.onnx")
        assert res["max_abs_diff"] < 1e-5 and res["rows"] == 64


def test_config_layers_class_then_defaults_file_then_user():
    assert model_defaults("optinter")["search_epochs"] == 2
    cfg = resolve_model_config({"name": "optinter"})
    assert cfg.search_epochs == 2 and cfg.hidden_units == [400, 400]  # file beats the class (3 and [400, 400])
    assert type(cfg).model_fields["search_epochs"].default == 3
    cfg = resolve_model_config({"name": "optinter", "search_epochs": 5})
    assert cfg.search_epochs == 5  # the user beats the file
    star = resolve_model_config({"name": "star", "meta": {"enabled": True}})
    assert star.meta.enabled and star.meta.rank == 8  # nested blocks merge, not replace


def test_bad_model_configs_name_the_field():
    with pytest.raises(ConfigError, match=r"model.name: unknown model 'deepfn'"):
        resolve_model_config({"name": "deepfn"})
    with pytest.raises(ConfigError, match=r"model.hidden_units: Extra inputs"):
        resolve_model_config({"name": "lr", "hidden_units": [8]})
    with pytest.raises(ConfigError, match=r"model.structure: Input should be"):
        resolve_model_config({"name": "dcnv2", "structure": "diagonal"})
    with pytest.raises(ValueError, match="model.meta.enabled: Input should be a valid boolean"):
        TrainJobConfig(model={"name": "star", "meta": {"enabled": "maybe"}})


def test_job_files_report_errors_as_llmrec_errors(tmp_path):
    from llmrec.train_job import load_job_config

    f = tmp_path / "job.yaml"
    f.write_text("model: {name: deepfm, dropout: 0.1}\ntrainer: {epochs: 2}\n")
    job = load_job_config(f, ["model.dropout=0.3", "trainer.batch_size=64"])
    assert job.model.dropout == 0.3 and job.model.hidden_units == [400, 400, 400] and job.trainer.batch_size == 64
    f.write_text("model: {name: deepfm}\ntrainer: {epoks: 2}\n")
    with pytest.raises(LLMRecError, match="trainer.epoks: Extra inputs"):
        load_job_config(f)


def test_models_listing_covers_every_model_with_its_config():
    rows = describe_models()
    assert [r["name"] for r in rows] == MODELS.names()
    by = {r["name"]: r for r in rows}
    assert by["dcnv2"]["family"] == "ctr" and by["dcnv2"]["defaults"]["structure"] == "parallel"
    assert by["star"]["family"] == "multitask" and by["mf"]["task"] == "bpr"
    assert by["optinter"]["search_stage"] and not by["deepfm"]["search_stage"]
    json.dumps(rows)  # serializable as `llmrec models --json` prints it
    assert {"mf", "lightgcn"} <= {r["name"] for r in describe_models("graph")}
    assert all(r["family"] == "graph" and r["task"] == "bpr" for r in describe_models("graph"))


def test_dcnv2_cross_layer_matches_its_formula():
    from llmrec.ctr.layers import CrossNetMix, CrossNetV2

    torch.manual_seed(0)
    x0 = torch.randn(5, 6)
    net = CrossNetV2(6, 2)
    x1 = x0 * (x0 @ net.layers[0].weight.T + net.layers[0].bias) + x0
    x2 = x0 * (x1 @ net.layers[1].weight.T + net.layers[1].bias) + x1
    assert torch.allclose(net(x0), x2, atol=1e-5)
    mix = CrossNetMix(6, 1, rank=3, experts=1)  # one expert: the gate is 1
    h = torch.tanh(torch.tanh(x0 @ mix.v[0][0]) @ mix.c[0][0])
    assert torch.allclose(mix(x0), x0 * (h @ mix.u[0][0] + mix.b[0]) + x0, atol=1e-5)


def test_interacting_layer_is_multi_head_self_attention():
    from llmrec.ctr.layers import InteractingLayer

    torch.manual_seed(0)
    x = torch.randn(3, 4, 5)
    layer = InteractingLayer(5, head_dim=2, heads=2, residual=True, scale=False)
    q, k, v = layer.q(x), layer.k(x), layer.v(x)
    heads = []
    for h in range(2):
        sl = slice(2 * h, 2 * h + 2)
        att = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2), dim=-1)
        heads.append(att @ v[..., sl])
    assert torch.allclose(layer(x), torch.relu(torch.cat(heads, -1) + layer.res(x)), atol=1e-5)


def test_optinter_search_stage_runs_inside_train(world):
    job = small_job("optinter")
    p = prepare(job, world)
    model, result = train_prepared(job, p)
    n = len(p.context.categorical) + len(p.context.numerical)
    assert len(result["model"]["choices"]) == n * (n - 1) // 2  # searched, then retrained with them
    assert set(result["model"]["choices"]) <= {"memorize", "factorize", "naive"}
    fixed = small_job("optinter").model_copy(update={"model": resolve_model_config(
        {"name": "optinter", **{k: v for k, v in SMALL.items() if k in ("hidden_units", "dropout", "hash_buckets")},
         "choices": "naive"})})
    _, r2 = train_prepared(fixed, p)
    assert r2["model"]["choices"] == "naive" and np.isfinite(r2["test"]["auc"])


def test_a_new_file_in_a_family_package_is_registered_without_editing_a_list(tmp_path, monkeypatch):
    """``import_all`` imports every module of a package: a family package (and ``llmrec.families``) picks up
    a new model or view file by itself, so adding a model touches one file (plus an optional defaults file)."""
    import sys

    from llmrec.registry import import_all

    pkg = tmp_path / "toyfam"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("SEEN = []\n")
    for name in ("alpha", "beta", "_private"):
        (pkg / f"{name}.py").write_text(f"import toyfam\ntoyfam.SEEN.append({name!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_all("toyfam") == ["alpha", "beta"]
    assert sorted(sys.modules["toyfam"].SEEN) == ["alpha", "beta"]
    import llmrec.models.graph as graph

    assert {"lightgcn", "graphsail", "confrec"} <= set(graph.MODULES)
