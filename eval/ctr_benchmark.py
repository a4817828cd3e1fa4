"""CTR benchmark: every llmrec model (3 seeds) and the peer libraries' DeepFM on identical splits.

    python eval/ctr_benchmark.py [--datasets ml100k synthetic] [--seeds 3] [--peer-python .venv-peers/bin/python]

Data: MovieLens-100K (../shared/data/ml-100k; label rating >= 4; user, item, age, gender, occupation,
zip prefix, release year, genres multi-hot; chronological 80/10/10) and the embedded synthetic world.
For each (data set, model) one worker process trains all seeds, so its peak RSS is that model's. Peers
(FuxiCTR DeepFM assembled from its wheel's layers, DeepCTR-Torch DeepFM) run from a separate virtual
environment (`make peers`) on the exported, identically encoded split with the same hyperparameters.
Writes eval/results/ctr_benchmark.json and a plot."""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmrec.ctr import FeatureEncoder, ModelConfig, Trainer, TrainerConfig, build_model  # noqa: E402
from llmrec.ctr.optinter import OptInterConfig, OptInterModel, search_optinter  # noqa: E402
from llmrec.ctr.run import feature_specs  # noqa: E402
from llmrec.data.registry import DataConfig, load_data  # noqa: E402
from llmrec.data.synthetic import SyntheticConfig  # noqa: E402
from llmrec.eval.report import pyplot, write_result  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
MODELS = ["lr", "fm", "dnn", "deepfm", "deepfm_p", "ipnn", "kpnn", "pin", "fgcnn"]
HP = {
    "ml100k": {"embedding_dim": 10, "hidden_units": [400, 400, 400], "dropout": 0.2, "batch_size": 1024,
               "learning_rate": 1e-3, "embedding_l2": 0.01, "epochs": 30, "patience": 2},
    "synthetic": {"embedding_dim": 10, "hidden_units": [400, 400, 400], "dropout": 0.2, "batch_size": 512,
                  "learning_rate": 1e-3, "embedding_l2": 0.005, "epochs": 30, "patience": 2},
}


def data_config(name: str) -> DataConfig:
    if name == "ml100k":
        return DataConfig(source="movielens100k", path=str(SHARED / "ml-100k"))
    return DataConfig(source="synthetic", synthetic=SyntheticConfig(n_users=300, n_items=300, impressions_per_user=80))


def prepare(name: str):
    data = load_data(data_config(name))
    tr, va, te = data.chronological_split()
    enc = FeatureEncoder(feature_specs(data, None)).fit(data.take(tr))
    return data, enc, [enc.transform(data.take(r), label=data.label) for r in (tr, va, te)]


def export_split(enc: FeatureEncoder, batches, path: Path, hp: dict) -> Path:
    """Identically encoded per-field arrays for the peer libraries, plus the spec they read."""
    arrays, offsets = {}, enc.offsets()
    for part, b in zip(("train", "valid", "test"), batches):
        for k, s in enumerate(enc.categorical):
            arrays[f"{part}/{s.name}"] = (b.cat[:, k] - offsets[s.name]).numpy().astype(np.int64)
        for k, s in enumerate(enc.numerical):
            arrays[f"{part}/{s.name}"] = b.num[:, k].numpy().astype(np.float32)
        for s in enc.multi_hot:
            arrays[f"{part}/{s.name}"] = b.seq[s.name].numpy().astype(np.int64)
        arrays[f"{part}/label"] = b.label.numpy().astype(np.float32)
    np.savez(path / "split.npz", **arrays)
    card = enc.cardinalities()
    feats = ([{"name": s.name, "type": "categorical", "vocab": card[s.name]} for s in enc.categorical]
             + [{"name": s.name, "type": "numerical"} for s in enc.numerical]
             + [{"name": s.name, "type": "multi_hot", "vocab": card[s.name], "max_len": s.max_len}
                for s in enc.multi_hot])
    (path / "spec.json").write_text(json.dumps({"features": feats, "hp": hp}))
    return path


def matmul_gflops(dtype: torch.dtype) -> float:
    a, b = torch.randn(1024, 400, dtype=dtype), torch.randn(400, 400, dtype=dtype)
    for _ in range(5):
        a @ b
    t, n = time.perf_counter(), 200
    for _ in range(n):
        a @ b
    return 2 * 1024 * 400 * 400 * n / (time.perf_counter() - t) / 1e9


def mlp_train_flops_per_sample(model: torch.nn.Module) -> float:
    """~3x the forward FLOPs of every Linear layer (forward + two backward matmuls)."""
    return 3 * sum(2 * m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))


def worker(job: dict) -> dict:
    data, enc, (tr, va, te) = prepare(job["dataset"])
    hp = HP[job["dataset"]]
    runs = []
    for seed in range(2021, 2021 + job["seeds"]):
        tc = TrainerConfig(batch_size=hp["batch_size"], learning_rate=hp["learning_rate"],
                           embedding_l2=hp["embedding_l2"], epochs=hp["epochs"], patience=hp["patience"],
                           seed=seed, precision=job.get("precision", "fp32"), progress=False)
        torch.manual_seed(seed)
        extra = {}
        if job["model"] == "optinter" or job["model"] == "optinter_all_factorize":
            cfg = OptInterConfig(embedding_dim=hp["embedding_dim"], hidden_units=hp["hidden_units"][:2],
                                 dropout=hp["dropout"], hash_buckets=20_000, search_epochs=2, tau=5e-4)
            if job["model"] == "optinter":
                choices, weights = search_optinter(enc, cfg, tr, va, batch_size=hp["batch_size"],
                                                   lr=hp["learning_rate"], seed=seed, progress=False)
            else:
                n = len(enc.categorical) + len(enc.numerical)
                choices = ["factorize"] * (n * (n - 1) // 2)
            extra["choices"] = {c: choices.count(c) for c in ("memorize", "factorize", "naive")}
            model = OptInterModel(enc, cfg.model_copy(update={"choices": choices}))
        else:
            name, numeric = (job["model"].split(":") + ["scalar"])[:2]
            model = build_model(enc, ModelConfig(name=name, embedding_dim=hp["embedding_dim"],
                                                 hidden_units=hp["hidden_units"], dropout=hp["dropout"],
                                                 numeric_embedding=numeric))
        trainer = Trainer(tc)
        fit = trainer.fit(model, tr, va)
        test = trainer.evaluate(model, te)
        runs.append({"seed": seed, "auc": test["auc"], "logloss": test["logloss"], "best_epoch": fit.best_epoch,
                     "train_samples_per_second": fit.samples_per_second, **extra})
    return {"runs": runs, "parameters": int(sum(p.numel() for p in model.parameters())),
            "train_flops_per_sample": mlp_train_flops_per_sample(model),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def summarize(runs: list[dict]) -> dict:
    a = np.array([r["auc"] for r in runs])
    ll = np.array([r["logloss"] for r in runs])
    sps = np.array([r["train_samples_per_second"] for r in runs])
    return {"auc_mean": float(a.mean()), "auc_std": float(a.std()), "logloss_mean": float(ll.mean()),
            "logloss_std": float(ll.std()), "train_samples_per_second": float(np.median(sps))}


def run_job(job: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"worker {job} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_peer(python: str, lib: str, folder: Path, seeds: int) -> dict:
    runs, rss = [], 0.0
    for seed in range(2021, 2021 + seeds):
        out = subprocess.run([python, str(ROOT / "eval" / "peers" / "peer_deepfm.py"), str(folder / "split.npz"),
                              str(folder / "spec.json"), lib, str(seed)], capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"peer {lib} failed:\n{out.stderr[-3000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rss = max(rss, r.pop("peak_rss_mb"))
        runs.append(r)
    return {"runs": runs, "peak_rss_mb": rss, **summarize(runs)}


def plot(results: dict, path: Path) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(1, len(results), figsize=(7 * len(results), 5), squeeze=False)
    for ax, (ds, res) in zip(axes[0], results.items()):
        names = list(res["models"]) + [f"peer:{k}" for k in res.get("peers", {})]
        vals = [res["models"][n] for n in res["models"]] + list(res.get("peers", {}).values())
        ax.barh(names, [v["auc_mean"] for v in vals], xerr=[v["auc_std"] for v in vals],
                color=["tab:blue"] * len(res["models"]) + ["tab:gray"] * len(res.get("peers", {})))
        lo = min(v["auc_mean"] for v in vals)
        ax.set_xlim(lo - 0.02, max(v["auc_mean"] for v in vals) + 0.01)
        ax.set_title(f"{ds}: test AUC (mean ± std)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--datasets", nargs="+", default=["ml100k", "synthetic"])
    ap.add_argument("--models", nargs="+", default=MODELS + ["deepfm:bucket", "deepfm:autodis", "optinter",
                                                            "optinter_all_factorize"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--peer-python", default=str(ROOT / ".venv-peers" / "bin" / "python"))
    ap.add_argument("--out", default=str(ROOT / "eval" / "results" / "ctr_benchmark.json"))
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(json.loads(a.worker))))
        return
    peaks = {"fp32_gflops_1024x400x400": matmul_gflops(torch.float32),
             "bf16_gflops_1024x400x400": matmul_gflops(torch.bfloat16)}
    results = {}
    for ds in a.datasets:
        if ds == "ml100k" and not (SHARED / "ml-100k").exists():
            print(f"skip {ds}: {SHARED / 'ml-100k'} not found")
            continue
        res = {"hyperparameters": HP[ds], "models": {}, "peers": {}}
        jobs = [(m, "fp32") for m in a.models] + [("deepfm", "bf16")]
        for model, precision in jobs:
            key = model if precision == "fp32" else f"{model}@bf16"
            r = run_job({"dataset": ds, "model": model, "seeds": a.seeds, "precision": precision})
            s = summarize(r["runs"])
            peak = peaks["bf16_gflops_1024x400x400" if precision == "bf16" else "fp32_gflops_1024x400x400"]
            s.update(parameters=r["parameters"], peak_rss_mb=r["peak_rss_mb"], runs=r["runs"],
                     matmul_utilization=s["train_samples_per_second"] * r["train_flops_per_sample"] / 1e9 / peak)
            res["models"][key] = s
            print(ds, key, {k: round(v, 4) for k, v in s.items() if isinstance(v, float)}, flush=True)
        if Path(a.peer_python).exists():
            _, enc, batches = prepare(ds)
            with tempfile.TemporaryDirectory() as tmp:
                export_split(enc, batches, Path(tmp), HP[ds])
                for lib in ("fuxictr", "deepctr"):
                    res["peers"][lib] = run_peer(a.peer_python, lib, Path(tmp), a.seeds)
                    print(ds, "peer", lib, {k: round(v, 4) for k, v in res["peers"][lib].items()
                                            if isinstance(v, float)}, flush=True)
            ours = res["models"]["deepfm"]
            fx = res["peers"]["fuxictr"]
            res["targets"] = {
                "deepfm_auc_minus_each_peer": {k: ours["auc_mean"] - v["auc_mean"] for k, v in res["peers"].items()},
                "throughput_vs_fuxictr_fp32": ours["train_samples_per_second"] / fx["train_samples_per_second"],
                "throughput_vs_fuxictr_bf16": res["models"]["deepfm@bf16"]["train_samples_per_second"]
                / fx["train_samples_per_second"],
            }
        else:
            print(f"peers skipped: {a.peer_python} not found (run `make peers`)")
        results[ds] = res
    out = Path(a.out)
    plot(results, out.with_suffix(".png"))
    write_result(out, {"matmul_peaks": peaks, "datasets": results})
    print("wrote", out)


if __name__ == "__main__":
    main()
