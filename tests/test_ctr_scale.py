"""CTR at scale: the Criteo-shaped generator, shard sets, real-format converters, the vectorized id encoder,
sparse embedding updates and streamed training with per-shard resume."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from llmrec.ctr.ids import IdEncoder, IdEncoderConfig, StreamData
from llmrec.data.criteo import (CATEGORICAL, NUMERICAL, CriteoSynthConfig, convert_avazu, convert_criteo,
                                generate_criteo, write_avazu_sample, write_criteo_sample)
from llmrec.data.shards import open_shards
from llmrec.errors import DataError, MissingFileError, NotFoundError
from llmrec.models.registry import build_model
from llmrec.train.loop import Trainer, TrainerConfig, clip_grad_norm

SMALL = CriteoSynthConfig(days=3, rows_per_day=6000, shard_rows=3000, max_cardinality=20_000, seed=3)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return generate_criteo(SMALL, tmp_path_factory.mktemp("criteo"), progress=False)


def _encoder(s, **kw):
    return IdEncoder(IdEncoderConfig(**kw), s.categorical, s.numerical).fit(s.select([0, 1]), progress=False)


def test_generator_shape_rate_and_signal(shards):
    assert shards.days == [0, 1, 2] and shards.rows == 18000 and len(shards.shards) == 6
    cols = shards.read_all()
    assert set(cols) == {"label", *CATEGORICAL, *NUMERICAL}
    assert abs(cols["label"].mean() - SMALL.ctr) < 0.03
    distinct = {c: len(np.unique(cols[c])) for c in CATEGORICAL}
    # Criteo's shape: C3 has the largest universe; C9 (3 values in Criteo) stays tiny (its 2 ids plus the
    # few new ids born per day)
    assert max(distinct, key=distinct.get) in ("C3", "C12") and distinct["C9"] < 20
    nan = np.mean([np.isnan(cols[c]).mean() for c in NUMERICAL])
    assert 0.05 < nan < SMALL.missing_rate
    assert 0.75 < shards.source["oracle_auc"] < 0.99


def test_generator_is_deterministic_and_resumes(shards, tmp_path):
    first = shards.read(shards.shards[1]).__next__()
    (shards.root / shards.shards[1].path).unlink()  # a killed writer: one shard missing
    again = generate_criteo(SMALL, shards.root, progress=False)
    second = again.read(again.shards[1]).__next__()
    for k in first:
        np.testing.assert_array_equal(first[k], second[k])
    with pytest.raises(DataError, match="other settings"):
        generate_criteo(SMALL.model_copy(update={"seed": 4}), shards.root, progress=False)


def test_shard_errors_name_the_file_and_column(shards, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pytest.raises(NotFoundError, match="manifest"):
        open_shards(tmp_path)
    bad = tmp_path / "bad"
    generate_criteo(SMALL.model_copy(update={"days": 1}), bad, progress=False)
    s = open_shards(bad)
    path = bad / s.shards[0].path
    table = pq.read_table(path).drop_columns(["C7"])
    pq.write_table(table, path)
    with pytest.raises(DataError, match="'C7' missing"):
        next(s.read(s.shards[0]))
    path.write_bytes(path.read_bytes()[:200])  # truncated
    with pytest.raises(DataError, match="part-00000.parquet"):
        next(s.read(s.shards[0]))
    with pytest.raises(NotFoundError, match="days"):
        s.select([5])
    assert pa is not None


def test_criteo_real_format_converts(tmp_path):
    src = write_criteo_sample(tmp_path / "train.txt", rows=300)
    s = convert_criteo([src], tmp_path / "out", rows_per_day=100, shard_rows=64, progress=False)
    assert s.days == [0, 1, 2] and s.rows == 300
    cols = s.read_all()
    lines = [ln.split("\t") for ln in src.read_text().splitlines()]
    for r in (0, 57, 299):
        assert cols["label"][r] == int(lines[r][0])
        for j, c in enumerate(CATEGORICAL):
            raw = lines[r][14 + j]
            assert cols[c][r] == (int(raw, 16) if raw else -1)
        for j, c in enumerate(NUMERICAL):
            raw = lines[r][1 + j]
            assert (np.isnan(cols[c][r]) if not raw else cols[c][r] == float(raw))
    assert (cols["C1"] == -1).any() and np.isnan(cols["I1"]).any()
    with pytest.raises(MissingFileError):
        convert_criteo([tmp_path / "nope.txt"], tmp_path / "x", progress=False)


def test_avazu_real_format_converts(tmp_path):
    src = write_avazu_sample(tmp_path / "train.csv", rows=200)
    s = convert_avazu([src], tmp_path / "out", shard_rows=50, progress=False)
    assert s.days == [0, 1] and s.rows == 200 and s.numerical == []
    cols = s.read_all()
    assert set(np.unique(cols["hour_of_day"])) == set(range(24))
    lines = src.read_text().splitlines()
    header = lines[0].split(",")
    assert cols["label"].sum() == sum(int(ln.split(",")[header.index("click")]) for ln in lines[1:])
    # equal strings -> equal ids, different strings -> different ids (the hash is stable)
    site = [ln.split(",")[header.index("site_id")] for ln in lines[1:]]
    assert len(np.unique(cols["site_id"])) == len(set(site))
    broken = tmp_path / "broken.csv"
    broken.write_text("id,click,hour,C1\n1,0,14102100,5\n")
    with pytest.raises(DataError, match="'banner_pos' missing"):
        convert_avazu([broken], tmp_path / "out2", progress=False)


def test_id_encoder_modes(shards):
    vocab = _encoder(shards, mode="vocab", min_count=2, oov_rows=3)
    cols = shards.select([0, 1]).read_all()
    ids = cols["C3"]
    u, k = np.unique(ids, return_counts=True)
    frequent, rare = u[k >= 2], u[k == 1]
    rows = vocab.encode_ids("C3", np.concatenate([frequent, rare, np.array([-12345])]))
    assert len(np.unique(rows[: len(frequent)])) == len(frequent) and (rows[: len(frequent)] >= 3).all()
    assert (rows[len(frequent):] < 3).all()  # rare and unseen ids share the OOV rows
    assert vocab.rows["C3"] == 3 + len(frequent)

    hashed = _encoder(shards, mode="hash", table_rows=5000)
    assert hashed.n_categorical_rows() == 5000
    b = hashed.transform(shards.select([2]).read_all())
    off = hashed.offsets()
    for j, f in enumerate(CATEGORICAL):
        assert (b.cat[:, j] >= off[f]).all() and (b.cat[:, j] < off[f] + hashed.rows[f]).all()
    assert hashed.nan_counts["I1"] == int(np.isnan(shards.select([2]).read_all()["I1"]).sum()) > 0
    assert torch.isfinite(b.num).all()

    ident = IdEncoder(IdEncoderConfig(mode="identity", sizes={"a": 10}), ["a"], []).fit(
        shards.select([0]), progress=False) if False else None  # identity needs no pass over ids:
    enc = IdEncoder(IdEncoderConfig(mode="identity", sizes={"C1": 10}), ["C1"], [])
    enc.fitted, enc.rows = True, {"C1": 10}
    assert ident is None and list(enc.encode_ids("C1", np.array([0, 9]))) == [0, 9]
    with pytest.raises(DataError, match="C1: id 10 outside"):
        enc.encode_ids("C1", np.array([3, 10]))
    with pytest.raises(DataError, match="C5: column missing"):
        hashed.transform({k: v for k, v in cols.items() if k != "C5"})
    bad = dict(cols)
    bad["label"] = cols["label"].astype(np.float32) * 2
    with pytest.raises(DataError, match="label: value 2.0"):
        hashed.transform(bad)


def test_sparse_step_equals_dense_adam_and_touches_only_batch_rows(shards):
    enc = _encoder(shards, mode="hash", table_rows=4000)
    data = enc.transform(shards.select([0]).read_all())
    states = {}
    for upd in ("dense", "sparse"):
        torch.manual_seed(0)
        model = build_model(enc, {"name": "deepfm", "hidden_units": [16], "dropout": 0.0})
        before = model.embedding.table.weight.detach().clone()
        tc = TrainerConfig(batch_size=len(data), epochs=1, embedding_l2=0.0, embedding_update=upd, progress=False)
        Trainer(tc).fit(model, data, data)
        states[upd] = (before, {k: v.detach().clone() for k, v in model.state_dict().items()})
    (b0, dense), (b1, sparse) = states["dense"], states["sparse"]
    torch.testing.assert_close(b0, b1)
    for k in dense:
        torch.testing.assert_close(dense[k], sparse[k], rtol=1e-4, atol=1e-6, msg=k)
    touched = torch.unique(data.cat)
    moved = (sparse["embedding.table.weight"] != b1).any(1).nonzero().squeeze(1)
    assert set(moved.tolist()) <= set(touched.tolist()) and len(moved) > 0


def test_batch_l2_only_regularizes_looked_up_rows(shards):
    enc = _encoder(shards, mode="hash", table_rows=4000)
    data = enc.transform(shards.select([0]).read_all()).slice(torch.arange(256))
    torch.manual_seed(0)
    model = build_model(enc, {"name": "deepfm", "hidden_units": [8]})
    w0 = model.embedding.table.weight.detach().clone()
    tc = TrainerConfig(batch_size=256, epochs=1, embedding_l2=1.0, embedding_update="sparse",
                       embedding_l2_scope="batch", progress=False)
    Trainer(tc).fit(model, data, data)
    untouched = torch.ones(len(w0), dtype=torch.bool)
    untouched[torch.unique(data.cat)] = False
    assert torch.equal(model.embedding.table.weight.detach()[untouched], w0[untouched])
    with pytest.raises(ValueError, match="embedding_l2_scope"):
        TrainerConfig(embedding_update="sparse", embedding_l2=0.01)


def test_clip_grad_norm_with_sparse_gradients_matches_dense():
    torch.manual_seed(0)
    a = torch.nn.Embedding(50, 4, sparse=True)
    b = torch.nn.Embedding(50, 4)
    b.weight.data.copy_(a.weight.data)
    idx = torch.tensor([1, 3, 3, 7, 7, 7])
    (a(idx).pow(2).sum() * 10).backward()
    (b(idx).pow(2).sum() * 10).backward()
    na = clip_grad_norm(list(a.parameters()), 1.0)
    nb = float(torch.nn.utils.clip_grad_norm_(b.parameters(), 1.0))
    assert na == pytest.approx(nb, rel=1e-5)
    torch.testing.assert_close(a.weight.grad.to_dense(), b.weight.grad)


class _Killed(RuntimeError):
    pass


class _KillAfter(StreamData):
    """Streamed data that dies after yielding shard ``kill_at`` (a kill mid-epoch)."""
    kill_at: int = -1

    def shard_batches(self, index, batch_size, generator):
        if index == self.kill_at:
            raise _Killed(index)
        yield from super().shard_batches(index, batch_size, generator)


def test_streamed_training_learns_and_resumes_after_the_last_shard(shards, tmp_path):
    enc = _encoder(shards, mode="vocab", min_count=2)
    train, valid = shards.select([0, 1]), shards.select([2])
    tc = TrainerConfig(batch_size=512, epochs=2, embedding_update="sparse", embedding_l2_scope="batch",
                       embedding_l2=1e-4, progress=False, learning_rate=3e-3)

    def fresh():
        torch.manual_seed(1)
        return build_model(enc, {"name": "deepfm", "hidden_units": [32, 32]})

    full_model = fresh()
    full = Trainer(tc).fit(full_model, StreamData(train, enc, chunk_rows=1000), StreamData(valid, enc))
    assert full.best_valid["auc"] > 0.6  # the labels carry signal a model can learn from streamed batches
    killed = _KillAfter(train, enc, chunk_rows=1000)
    killed.kill_at = 3  # epoch 1 dies in its last shard
    with pytest.raises(_Killed):
        Trainer(tc).fit(fresh(), killed, StreamData(valid, enc), checkpoint_dir=tmp_path)
    state = torch.load(tmp_path / "trainer_state.pt", weights_only=False)["state"]
    assert state["shard"] == 3 and state["epoch"] == 0
    resumed_model = fresh()
    res = Trainer(tc).fit(resumed_model, StreamData(train, enc, chunk_rows=1000), StreamData(valid, enc),
                          checkpoint_dir=tmp_path)
    assert res.best_valid["auc"] == pytest.approx(full.best_valid["auc"], abs=1e-9)
    for (k, v), w in zip(full_model.state_dict().items(), resumed_model.state_dict().values()):
        torch.testing.assert_close(v, w, msg=k)


def test_cli_generates_and_converts(tmp_path):
    from typer.testing import CliRunner

    from llmrec.cli import app

    r = CliRunner().invoke(app, ["data", "generate", "criteo", "--out", str(tmp_path / "g"), "--days", "2",
                                 "--rows-per-day", "500", "--shard-rows", "250", "--max-cardinality", "1000"])
    assert r.exit_code == 0, r.output
    assert open_shards(tmp_path / "g").rows == 1000
    src = write_criteo_sample(tmp_path / "day_0", rows=50)
    r = CliRunner().invoke(app, ["data", "convert", "criteo", str(src), "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert open_shards(tmp_path / "c").rows == 50
    r = CliRunner().invoke(app, ["data", "convert", "parquet", str(src), "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "not criteo or avazu" in r.output


@pytest.mark.slow
def test_ctr_scale_experiment_runs_variants_in_processes(shards, tmp_path):
    import json

    from llmrec.experiments.ctr_scale import ScaleExperiment, run_ctr_scale

    exp = ScaleExperiment.model_validate({
        "name": "tiny", "data": {"path": str(shards.root), "train_days": [0, 1], "valid_days": [2],
                                 "test_days": [2], "chunk_rows": 2000},
        "encoder": {"mode": "hash", "table_rows": 3000}, "model": {"name": "deepfm", "hidden_units": [16]},
        "trainer": {"batch_size": 512, "epochs": 1, "progress": False}, "memory_limit_mb": 3000,
        "variants": [{"label": "sparse", "trainer": {"embedding_update": "sparse", "embedding_l2_scope": "batch"}},
                     {"label": "dense"}]})
    res = run_ctr_scale(exp, tmp_path / "tiny.json")
    saved = json.loads((tmp_path / "tiny.json").read_text())
    assert set(saved["summary"]) == {"sparse", "dense"} and (tmp_path / "tiny.png").exists()
    for label in ("sparse", "dense"):
        run = saved["runs"][label][0]
        assert run["auc"] > 0.55 and run["train_rows"] == 12000 and run["table_rows"] == 3000
        assert 0 < run["peak_rss_mb"] < 3000  # it ran under the address-space limit
    # the runner keeps the finished runs (git-ignored): a later run with more seeds trains only the new ones
    assert (tmp_path / "tiny.partial.json").exists() and res["output"].endswith("tiny.json")
    with pytest.raises(ValueError, match="peers\\[0\\].variant"):
        ScaleExperiment.model_validate({**exp.model_dump(), "peers": [{"variant": "nope"}]})


def test_cached_table_equals_plain_table_under_sgd_with_evictions():
    from llmrec.ctr.cache import CacheConfig, CachedEmbedding

    torch.manual_seed(0)
    rows, dim, lr = 500, 4, 0.1
    # 70% of lookups on 40 hot ids (many repeats in a batch), the rest anywhere: ~100 distinct per batch
    batches = [torch.where(torch.rand(64, 3) < 0.7, torch.randint(0, 40, (64, 3)), torch.randint(0, rows, (64, 3)))
               for _ in range(30)]
    target = torch.randn(dim)
    for dedup in (True, False):
        cached = CachedEmbedding(rows, dim, CacheConfig(cache_rows=150, optimizer="sgd", dedup=dedup))
        plain = torch.nn.Embedding(rows, dim, sparse=True)
        with torch.no_grad():
            plain.weight.copy_(cached.full_table())
        opt = torch.optim.SGD(plain.parameters(), lr=lr)
        for i, b in enumerate(batches):
            cached.prefetch(batches[i + 1] if i + 1 < len(batches) else None)
            ((cached(b) - target) ** 2).sum().backward()
            cached.apply_gradients(lr)
            opt.zero_grad()
            ((plain(b) - target) ** 2).sum().backward()
            opt.step()
        torch.testing.assert_close(cached.full_table(), plain.weight.detach())
        st = cached.stats
        assert st["evicted_rows"] > 0  # the cache was too small: rows went back and forth
        # VSI: a batch's distinct rows are at most half its lookups here; the cache moves fewer still
        assert st["distinct_rows"] <= 0.5 * st["lookups"] and st["transferred_rows"] < st["distinct_rows"]
        if dedup:
            vsi = st["transferred_rows"]
        else:
            naive = st["transferred_rows"]
    assert vsi < naive  # without dedup, repeated missing ids are each copied
    with pytest.raises(Exception, match="outside the table"):
        cached(torch.tensor([rows]))
    with pytest.raises(Exception, match="cache_rows"):
        CachedEmbedding(rows, dim, CacheConfig(cache_rows=2))(torch.tensor([1, 2, 3]))


def test_cached_adam_in_the_trainer_equals_row_adam(shards):
    enc = _encoder(shards, mode="hash", table_rows=3000)
    data = enc.transform(shards.select([0]).read_all())
    tc = dict(batch_size=500, epochs=1, embedding_l2=1e-3, embedding_l2_scope="batch", progress=False,
              embedding_update="sparse")
    models = {}
    for label, table in (("row_adam", {"kind": "dense"}),
                         ("cached", {"kind": "cached", "cache": {"cache_rows": 2000, "optimizer": "adam"}}),
                         ("cached_int8", {"kind": "cached", "cache": {"cache_rows": 2000, "host_dtype": "int8"}})):
        torch.manual_seed(0)
        model = build_model(enc, {"name": "deepfm", "hidden_units": [16], "dropout": 0.0, "embedding_table": table})
        if label == "row_adam":
            init = {k: v.clone() for k, v in model.state_dict().items()}
        else:  # the same initial values everywhere (the tables' host copies included)
            own = model.state_dict()
            model.load_state_dict({k: init.get(k, v) for k, v in own.items()})
            with torch.no_grad():
                for name in ("embedding", "linear.emb"):
                    cached_table = model.get_submodule(name).table
                    w = init[f"{name}.table.weight"]
                    if label == "cached":
                        cached_table.host.copy_(w)
                    else:
                        cached_table._write_host(torch.arange(len(w)), w)
        Trainer(TrainerConfig(**tc)).fit(model, data, data)
        models[label] = model
    a, b = models["row_adam"], models["cached"]
    torch.testing.assert_close(b.embedding.table.full_table(), a.embedding.table.weight.detach(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(b.linear.emb.table.full_table(), a.linear.emb.table.weight.detach(), rtol=1e-4,
                               atol=1e-6)
    assert b.embedding.table.stats["evicted_rows"] > 0
    with pytest.raises(Exception, match="embedding_l2_scope"):
        Trainer(TrainerConfig(batch_size=500, epochs=1, progress=False)).fit(models["cached"], data, data)
    mem = models["cached_int8"].embedding.table.memory_bytes()
    assert mem["host_table"] == 3000 * 10 + 4 * 3000  # int8 codes + one fp32 scale per row: 35% of fp32


def test_incctr_feature_module_extends_vocab_and_grows_tables(shards):
    from llmrec.ctr.layers import FieldEmbedding

    enc = _encoder(shards, mode="vocab", min_count=2)
    day2 = shards.select([2]).read_all()
    before = {f: enc.table_rows(f, day2[f]) for f in shards.categorical}
    n0 = enc.n_categorical_rows()
    torch.manual_seed(0)
    model = build_model(enc, {"name": "deepfm", "hidden_units": [8]})
    previous = enc.extend(shards.select([2]))
    assert len(previous) == enc.n_categorical_rows() - n0 > 0
    u, k = np.unique(day2["C3"], return_counts=True)
    new_c3 = [i for i in u[k >= 2] if before["C3"][day2["C3"] == i][0] < enc.offsets()["C3"] + 1]
    after = enc.table_rows("C3", np.array(new_c3))
    assert (after >= n0).all() and len(np.unique(after)) == len(new_c3)  # each new id has its own new row
    for f in shards.categorical:  # old ids keep their rows
        old = before[f] >= enc.offsets()[f] + enc.config.oov_rows
        assert np.array_equal(enc.table_rows(f, day2[f])[old], before[f][old])
    old_w = model.embedding.table.weight.detach().clone()
    for m in model.modules():
        if isinstance(m, FieldEmbedding):
            m.grow(torch.from_numpy(previous))
    w = model.embedding.table.weight.detach()
    assert w.shape[0] == enc.n_categorical_rows()
    torch.testing.assert_close(w[:n0], old_w)
    torch.testing.assert_close(w[n0:], old_w[torch.from_numpy(previous)])  # new rows start from their OOV row
    b = enc.transform(day2)
    assert int(b.cat.max()) < enc.n_categorical_rows()
    model(b)  # the grown model reads the extended encoding
    with pytest.raises(Exception, match="extend needs 'vocab'"):
        _encoder(shards, mode="hash", table_rows=100).extend(shards.select([2]))


def test_distill_task_and_reservoir(shards):
    from llmrec.train.incctr import Reservoir
    from llmrec.train.tasks import DistillTask

    enc = _encoder(shards, mode="hash", table_rows=2000)
    b = enc.transform(shards.select([2]).read_all()).slice(torch.arange(300))
    torch.manual_seed(0)
    teacher = build_model(enc, {"name": "deepfm", "hidden_units": [8]}).eval()
    student = build_model(enc, {"name": "deepfm", "hidden_units": [8]}).eval()
    plain = DistillTask(teacher, 0.0).row_loss(student, b)
    kd = DistillTask(teacher, 0.5).row_loss(student, b)
    with torch.no_grad():
        target = torch.sigmoid(teacher(b))
        expect = plain + 0.5 * torch.nn.functional.binary_cross_entropy_with_logits(student(b), target,
                                                                                     reduction="none")
    torch.testing.assert_close(kd, expect)
    res = Reservoir(1000, seed=0)
    for d in range(4):
        res.add({"label": np.full(5000, d), "x": np.arange(5000)})
    share = np.bincount(res.rows["label"], minlength=4) / 1000
    assert len(res.rows["label"]) == 1000 and np.all(np.abs(share - 0.25) < 0.06)  # uniform over the days


@pytest.mark.slow
def test_ctr_incremental_experiment_runs(tmp_path, monkeypatch):
    import json

    from llmrec.experiments.ctr_incremental import IncrementalCTRExperiment, run_ctr_incremental

    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))
    exp = IncrementalCTRExperiment.model_validate({
        "name": "inc", "seeds": [1],
        "data": {"generate": {"days": 5, "rows_per_day": 4000, "shard_rows": 4000, "max_cardinality": 20000}},
        "test_days": [3, 4], "window": 2, "encoder": {"mode": "vocab", "min_count": 2},
        "model": {"name": "deepfm", "hidden_units": [16]}, "trainer": {"batch_size": 512, "epochs": 1,
                                                                       "progress": False}})
    run_ctr_incremental(exp, tmp_path / "inc.json")
    saved = json.loads((tmp_path / "inc.json").read_text())
    for m in ("batch", "finetune", "incctr"):
        assert [r["day"] for r in saved["runs"][0][m]] == [3, 4]
        assert saved["summary"][m]["auc_mean"] > 0.55
    assert saved["summary"]["batch"]["time_vs_batch"] == 1.0
    with pytest.raises(ValueError, match="window"):
        IncrementalCTRExperiment.model_validate({**exp.model_dump(), "window": 4})


def test_quantized_table_rounding_range_and_memory():
    from llmrec.ctr.quant import QuantConfig, QuantEmbedding

    torch.manual_seed(0)
    q = QuantEmbedding(100, 8, QuantConfig(bits=2, init_range=0.1), groups=torch.arange(100) // 50)
    assert q.step.shape == (2,) and q.codes.dtype == torch.int8
    assert int(q.codes.min()) >= -2 and int(q.codes.max()) <= 1
    ids = torch.tensor([[3, 70]])
    torch.testing.assert_close(q(ids)[0, 1], q.codes[70].float() * q.step[1])
    assert q.memory_bytes()["codes_packed"] == 100 * 8 * 2 // 8
    # stochastic rounding is unbiased: E[SR(x)] = x
    x = torch.full((200_000,), 0.3)
    assert abs(float(q._round(x.clone()).mean()) - 0.3) < 0.01
    det = QuantEmbedding(10, 4, QuantConfig(bits=2, rounding="deterministic"))
    assert float(det._round(torch.full((5,), 0.3)).abs().sum()) == 0.0


def _quant_step(cfg, grad_scale, steps=20):
    from llmrec.ctr.quant import QuantEmbedding

    torch.manual_seed(0)
    q = QuantEmbedding(4, 8, cfg)
    q.train()
    codes0 = q.codes.clone()
    for _ in range(steps):
        out = q(torch.tensor([0, 1]))
        (out.sum() * grad_scale).backward()
        q.apply_gradients(1e-3)
    return q, codes0


def test_lpt_deterministic_rounding_loses_small_updates_alpt_learns_its_step():
    from llmrec.ctr.quant import QuantConfig

    # Adam moves a weight ~1e-3 per step; with Delta = 0.05 / 1 (2-bit) deterministic rounding undoes it
    det, c0 = _quant_step(QuantConfig(bits=2, rounding="deterministic", learn_step=False), 1.0)
    assert torch.equal(det.codes, c0)
    sto, c0 = _quant_step(QuantConfig(bits=2, learn_step=False), 1.0, steps=60)
    assert not torch.equal(sto.codes[:2], c0[:2])  # stochastic rounding keeps them in expectation
    # weights pushed far outside the range: ALPT's step size grows (the clip-bound gradient), LPT's does not
    alpt, _ = _quant_step(QuantConfig(bits=2, init_range=1e-3, step_lr=0.05), -1.0, steps=50)
    lpt, _ = _quant_step(QuantConfig(bits=2, init_range=1e-3, learn_step=False), -1.0, steps=50)
    assert float(alpt.step[:2].min()) > 2 * float(lpt.step[0])
    assert torch.equal(alpt.step[2:], lpt.step[2:])  # rows not in any batch keep their step


def test_quantized_deepfm_trains_in_the_trainer(shards):
    enc = _encoder(shards, mode="vocab", min_count=2)
    train = enc.transform(shards.select([0, 1]).read_all())
    test = enc.transform(shards.select([2]).read_all())
    res = {}
    for label, table in (("fp32", {"kind": "dense"}),
                         ("alpt8", {"kind": "quantized", "quant": {"bits": 8}})):
        torch.manual_seed(0)
        model = build_model(enc, {"name": "deepfm", "hidden_units": [32], "embedding_table": table})
        tc = TrainerConfig(batch_size=512, epochs=2, embedding_update="sparse", embedding_l2_scope="batch",
                           embedding_l2=1e-4, progress=False, learning_rate=3e-3)
        trainer = Trainer(tc)
        trainer.fit(model, train, test)
        res[label] = trainer.evaluate(model, test)["auc"]
    assert res["alpt8"] > 0.6 and abs(res["alpt8"] - res["fp32"]) < 0.03
    with pytest.raises(Exception, match="only a dense table can grow"):
        model.embedding.grow(torch.tensor([0]))


def test_quantized_kind_also_quantizes_numeric_bucket_rows(shards):
    from llmrec.ctr.quant import QuantEmbedding
    from llmrec.experiments.ctr_scale import embedding_bytes

    enc = _encoder(shards, mode="vocab", min_count=2)
    spec = {"name": "deepfm", "hidden_units": [8], "numeric_embedding": "bucket"}
    fp32 = build_model(enc, spec)
    q8 = build_model(enc, {**spec, "embedding_table": {"kind": "quantized", "quant": {"bits": 8}}})
    assert all(isinstance(m.bucket_table, QuantEmbedding) for m in q8.modules() if hasattr(m, "bucket_table"))
    # every embedding row now stored at 8 bits: a quarter of fp32, plus one step size per field
    steps = sum(m.step.numel() * 4 for m in q8.modules() if isinstance(m, QuantEmbedding))
    assert embedding_bytes(q8) - steps == embedding_bytes(fp32) // 4
    batch = enc.transform(shards.select([2]).read_all()).slice(torch.arange(64))
    assert q8(batch).shape == (64,)


def test_encoder_fit_rows_bounds_the_counting_pass(shards):
    full = _encoder(shards, mode="vocab", min_count=1)
    part = _encoder(shards, mode="vocab", min_count=1, fit_rows=1000)
    first = shards.select([0]).read_all()
    assert part.distinct["C3"] == len(np.unique(first["C3"][:1000])) < full.distinct["C3"]


def test_incctr_updater_grows_rows_distills_and_replays_from_python(tmp_path):
    """IncCTR as a component, outside any experiment: a trained model and encoder updated on the next day
    gain rows for the day's new ids (started from their OOV row), and the day joins the replay reservoir."""
    from llmrec.ctr.ids import IdEncoder, IdEncoderConfig
    from llmrec.data.criteo import CriteoSynthConfig, generate_criteo
    from llmrec.models import build_model
    from llmrec.train import TrainerConfig
    from llmrec.train.incctr import IncCTRConfig, IncCTRUpdater

    s = generate_criteo(CriteoSynthConfig(days=3, rows_per_day=3000, shard_rows=3000, max_cardinality=5000,
                                          seed=1), tmp_path / "shards", progress=False)
    enc = IdEncoder(IdEncoderConfig(mode="vocab", min_count=2), s.categorical, s.numerical, s.label).fit(
        s.select([0]), progress=False)
    torch.manual_seed(0)
    model = build_model(enc, {"name": "deepfm", "embedding_dim": 4, "hidden_units": [8]})
    tc = TrainerConfig(epochs=1, batch_size=512, progress=False)
    day0, day1 = s.select([0]).read_all(), s.select([1]).read_all()
    up = IncCTRUpdater(model, enc, tc, IncCTRConfig(kd_weight=0.5, replay=0.2), seed=0)
    up.observe(day0)
    rows_before = enc.n_categorical_rows()
    seconds = up.update(day1, s.select([1]))
    assert seconds > 0 and enc.n_categorical_rows() > rows_before
    assert up.reservoir.seen == len(day0["label"]) + len(day1["label"]) and len(up.reservoir.rows["label"]) == 600
    p = torch.sigmoid(model(enc.transform(s.select([2]).read_all())))
    assert torch.isfinite(p).all()
    with pytest.raises(ValueError, match="day_shards"):
        IncCTRUpdater(model, enc, tc, IncCTRConfig()).update(day1)
