"""The TorchRec path: a CTR model whose categorical tables are a TorchRec EmbeddingBagCollection trains to the
plain path's result in one process, and shards table-wise across 2 CPU processes under torchrun (gloo)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llmrec.ctr.ids import IdEncoder, IdEncoderConfig
from llmrec.data.criteo import CriteoSynthConfig, generate_criteo
from llmrec.errors import ConfigError
from llmrec.models.registry import build_model
from llmrec.train.loop import Trainer, TrainerConfig

torchrec = pytest.importorskip("torchrec")  # installed by `make install` (no-deps pair, see the Makefile)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return generate_criteo(CriteoSynthConfig(days=3, rows_per_day=6000, shard_rows=3000, max_cardinality=20000,
                                             seed=7), tmp_path_factory.mktemp("tr"), progress=False)


def test_torchrec_table_trains_like_the_plain_table(shards):
    enc = IdEncoder(IdEncoderConfig(mode="hash", table_rows=4000), shards.categorical, shards.numerical).fit(
        shards.select([0, 1]), progress=False)
    train = enc.transform(shards.select([0, 1]).read_all())
    test = enc.transform(shards.select([2]).read_all())
    aucs, models = {}, {}
    for kind in ("dense", "torchrec"):
        torch.manual_seed(0)
        model = build_model(enc, {"name": "deepfm", "hidden_units": [32], "dropout": 0.0, "embedding_dim": 8,
                                  "embedding_table": {"kind": kind}})
        if kind == "dense":
            init = {k: v.clone() for k, v in model.state_dict().items()}
        else:  # the same initial values: every parameter, the field tables cut from the shared table
            own = model.state_dict()
            model.load_state_dict({k: init.get(k, v) for k, v in own.items()}, strict=False)
            model.embedding.table.load_rows(init["embedding.table.weight"])
        trainer = Trainer(TrainerConfig(batch_size=512, epochs=2, progress=False))
        trainer.fit(model, train, test)
        aucs[kind] = trainer.evaluate(model, test)["auc"]
        models[kind] = model
    assert aucs["torchrec"] == pytest.approx(aucs["dense"], abs=1e-3)
    w = torch.cat(models["torchrec"].embedding.table.weights())
    torch.testing.assert_close(w, models["dense"].embedding.table.weight.detach(), rtol=1e-3, atol=1e-5)


def test_shard_model_needs_a_process_group_and_even_dims(shards):
    from llmrec.ctr.torchrec_table import shard_model

    enc = IdEncoder(IdEncoderConfig(mode="hash", table_rows=500), shards.categorical, shards.numerical).fit(
        shards.select([0]), progress=False)
    model = build_model(enc, {"name": "deepfm", "hidden_units": [8], "embedding_table": {"kind": "torchrec"}})
    with pytest.raises(ConfigError, match="process group"):
        shard_model(model)


@pytest.mark.slow
def test_two_cpu_processes_shard_tables_table_wise(shards, tmp_path):
    out = tmp_path / "sharded.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          str(ROOT / "eval" / "torchrec_sharded.py"), str(shards.root), str(out),
                          "--table-rows", "5000"], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    d = json.loads(out.read_text())
    ranks = {p["ranks"][0] for p in d["plan"]["embedding.table.ebc"].values()}
    assert ranks == {0, 1}  # both processes hold tables
    assert all(p["sharding"] == "table_wise" for p in d["plan"]["embedding.table.ebc"].values())
    a0, a1 = (r["auc"] for r in d["ranks"])
    assert a0 == a1 > 0.55  # every rank scored the same test day with the same sharded model (one short epoch)
