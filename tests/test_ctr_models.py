import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from llmrec.ctr import FeatureEncoder, FeatureSpec
from llmrec.models import build_model, resolve_model_config
from llmrec.train import Trainer, TrainerConfig
from llmrec.train.export import export_onnx, load_model, save_model
from llmrec.ctr.layers import AutoDis, FMInteraction, InnerProduct, KernelProduct
from llmrec.models.ctr.optinter import OptInterConfig, OptInterModel, search_optinter
from llmrec.data import SyntheticConfig, generate_world


def mc(**fields):
    """A registered model's typed config (its defaults file layered in)."""
    return resolve_model_config(fields)



@pytest.fixture(scope="module")
def small():
    d = generate_world(SyntheticConfig(n_users=120, n_items=100, impressions_per_user=50))
    tr, va, te = d.chronological_split()
    enc = FeatureEncoder([FeatureSpec(name=n, type=t) for n, t in d.fields.items()]).fit(d.take(tr))
    return d, enc, [enc.transform(d.take(r)) for r in (tr, va, te)]


def test_interaction_layers_match_their_definitions():
    torch.manual_seed(0)
    e = torch.randn(4, 5, 3)
    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    ip = InnerProduct(5)(e)
    assert torch.allclose(ip, torch.stack([(e[:, i] * e[:, j]).sum(-1) for i, j in pairs], 1), atol=1e-6)
    fm = FMInteraction()(e)
    assert torch.allclose(fm, ip.sum(1), atol=1e-5)
    kp = KernelProduct(5, 3, "matrix")
    ref = torch.stack([torch.einsum("bd,de,be->b", e[:, i], kp.K[p], e[:, j]) for p, (i, j) in enumerate(pairs)], 1)
    assert torch.allclose(kp(e), ref, atol=1e-5)
    kv = KernelProduct(5, 3, "vector")
    with torch.no_grad():
        kv.K.fill_(1.0)
    assert torch.allclose(kv(e), ip, atol=1e-6)  # unit kernel = inner product


def test_autodis_soft_assignment():
    ad = AutoDis(n_fields=2, dim=4, buckets=6, temperature=1.0)
    x = torch.linspace(-2, 2, 50).unsqueeze(1).repeat(1, 2)
    p = ad.assignments(x)
    assert p.shape == (50, 2, 6) and torch.allclose(p.sum(-1), torch.ones(50, 2), atol=1e-5)
    ent = -(p * p.clamp_min(1e-12).log()).sum(-1)
    assert (ent > 0.05).float().mean() > 0.5  # non-degenerate at tau = 1
    sharp = AutoDis(2, 4, 6, temperature=1e-5)
    sharp.load_state_dict(ad.state_dict())
    assert torch.allclose(sharp.assignments(x).max(-1).values, torch.ones(50, 2), atol=1e-3)  # tau -> 0: one-hot
    out = ad(x)
    assert torch.allclose(out, torch.einsum("bfh,fhd->bfd", p, ad.meta), atol=1e-6)


@pytest.mark.parametrize("numeric", ["bucket", "autodis"])
def test_numeric_embeddings_work_in_any_model(small, numeric):
    d, enc, (tr, va, te) = small
    for name in ("deepfm", "ipnn"):
        torch.manual_seed(0)
        m = build_model(enc, mc(name=name, hidden_units=[32], numeric_embedding=numeric))
        t = Trainer(TrainerConfig(progress=False, epochs=3, batch_size=256))
        t.fit(m, tr, va)
        assert t.evaluate(m, te)["auc"] > 0.55


def test_save_load_and_onnx_parity(small, tmp_path):
    d, enc, (tr, va, te) = small
    m = build_model(enc, mc(name="pin", hidden_units=[16], numeric_embedding="autodis"))
    Trainer(TrainerConfig(progress=False, epochs=1, batch_size=512)).fit(m, tr, va)
    save_model(tmp_path / "m", m, enc)
    m2, enc2 = load_model(tmp_path / "m")
    b2 = enc2.transform(d.take(d.chronological_split()[2]))
    m.eval()
    with torch.no_grad():
        assert torch.allclose(m(te), m2(b2))
    pytest.importorskip("onnxruntime")
    res = export_onnx(m2, te, tmp_path / "m.onnx")
    assert res["max_abs_diff"] < 1e-5 and res["rows"] == len(te)
    with pytest.raises(FileNotFoundError, match="not a saved llmrec model"):
        load_model(tmp_path)


def test_optinter_search_then_retrain(small):
    d, enc, (tr, va, te) = small
    cfg = OptInterConfig(hidden_units=[32], hash_buckets=500, search_epochs=2, tau=1e-3)
    choices, weights = search_optinter(enc, cfg, tr, va, batch_size=256, progress=False)
    n_fields = len(enc.categorical) + len(enc.numerical)
    assert len(choices) == n_fields * (n_fields - 1) // 2
    assert set(choices) <= {"memorize", "factorize", "naive"}
    assert all(abs(sum(w) - 1) < 1e-4 for w in weights)
    model = OptInterModel(enc, cfg.model_copy(update={"choices": choices}))
    t = Trainer(TrainerConfig(progress=False, epochs=3, batch_size=256))
    t.fit(model, tr, va)
    assert t.evaluate(model, te)["auc"] > 0.55
    with pytest.raises(ValueError, match="choices: expected"):
        OptInterModel(enc, cfg.model_copy(update={"choices": ["naive"]}))


TRAIN_JOB = r"""
import json, sys
from llmrec.train_job import TrainJobConfig, run_training
from llmrec.train.distributed import init_from_env, shutdown
job = TrainJobConfig.model_validate(json.loads(sys.argv[1]))
init_from_env()
res = run_training(job)
shutdown()
import torch.distributed as dist
print("RESULT", json.dumps({"test": res["test"], "history": res["history"], "resumed": res["resumed_from_epoch"]}))
"""


def _job(tmp, epochs=4, **trainer):
    return {"data": {"source": "synthetic", "synthetic": {"n_users": 100, "n_items": 80,
                                                          "impressions_per_user": 40}},
            "model": {"name": "deepfm", "hidden_units": [32], "dropout": 0.0},
            "trainer": {"batch_size": 256, "epochs": epochs, "patience": 10, "progress": False, **trainer},
            "output_dir": str(tmp)}


def _result(out: str) -> dict:
    return json.loads(next(x for x in out.splitlines() if x.startswith("RESULT"))[7:])


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    full = subprocess.run([sys.executable, "-c", TRAIN_JOB, json.dumps(_job(tmp_path / "a", epochs=6))],
                          env=env, capture_output=True, text=True, check=True)
    job = json.dumps(_job(tmp_path / "b", epochs=6))
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_JOB, job], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    ckpt = tmp_path / "b" / "checkpoint" / "trainer_state.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not (ckpt.exists() and torch.load(ckpt, weights_only=False)["state"]["epoch"] >= 2):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run([sys.executable, "-c", TRAIN_JOB, job], env=env, capture_output=True, text=True,
                             check=True)
    a, b = _result(full.stdout), _result(resumed.stdout)
    assert b["resumed"] >= 2
    assert [h["valid_auc"] for h in a["history"]] == pytest.approx([h["valid_auc"] for h in b["history"]], abs=1e-9)
    assert a["test"]["auc"] == pytest.approx(b["test"]["auc"], abs=1e-9)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_processes_match_single_process(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.getcwd(), OMP_NUM_THREADS="1")
    single = subprocess.run([sys.executable, "-c", TRAIN_JOB, json.dumps(_job(tmp_path / "s"))],
                            env=env, capture_output=True, text=True, check=True)
    script = tmp_path / "job.py"
    script.write_text(TRAIN_JOB)
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(_free_port()), str(script), json.dumps(_job(tmp_path / "d"))],
                         env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    s = _result(single.stdout)
    d = [json.loads(x[7:]) for x in ddp.stdout.splitlines() if x.startswith("RESULT")]
    assert len(d) == 2 and d[0]["test"] == d[1]["test"]  # ranks agree
    assert d[0]["test"]["auc"] == pytest.approx(s["test"]["auc"], abs=2e-3)
    assert [h["valid_auc"] for h in d[0]["history"]] == pytest.approx([h["valid_auc"] for h in s["history"]],
                                                                      abs=2e-3)


def test_fast_dropout_statistics_and_determinism():
    from llmrec.ctr.layers import FastDropout

    d = FastDropout(0.2)
    x = torch.ones(1000, 1000)
    torch.manual_seed(0)
    a = d(x)
    torch.manual_seed(0)
    assert torch.equal(a, d(x))  # torch.manual_seed reproduces the mask
    m = (a == 0).float()
    assert abs(m.mean().item() - 0.2) < 0.005
    assert abs((m[:, :-1] * m[:, 1:]).mean().item() - 0.04) < 0.003  # neighbours independent
    assert abs(m[:500].mean().item() - m[500:].mean().item()) < 0.005  # both 16-bit halves unbiased
    assert a[a != 0].unique().tolist() == [1.25]  # inverted scaling keeps the expectation
    d.eval()
    assert torch.equal(d(x), x)
    with pytest.raises(ValueError, match="dropout"):
        FastDropout(1.0)
