"""Knowledge benchmark: does LLM knowledge improve CTR models, and what does extraction cost?

    python eval/knowledge_benchmark.py [--datasets synthetic ml100k] [--seeds 3] [--backbones deepfm ipnn]
        [--backend openai --base-url URL --model NAME]   # a stronger LLM: one flag set, same pipeline

1. Knowledge: ``run_extraction`` for item, user, scenario and user_scenario prompts (cached shards under
   LLMREC_HOME/knowledge/<data>/<model>; a warm cache generates nothing, and that cost is reported),
   encoded with MiniLM (users: history shown to the LLM + its answer, as KAR does).
2. KAR: each backbone without knowledge, with item + user knowledge through the hybrid-expert adaptor,
   and (DeepFM) with the knowledge vectors shuffled across ids (a control: the gain must vanish).
3. LLM4MSR: the STAR-style multi-scenario backbone vs the same + meta layers from scenario and user
   cross-scenario knowledge, AUC per scenario; plus shuffled user vectors as a control.
   Scenarios: the synthetic world's three; MovieLens-100K genre groups (llmrec.data.movielens.GENRE_GROUPS).
4. Extraction throughput on the default LLM: extraction tokens/s with batch 16 vs one prompt at a time.
Same hyperparameters as eval/ctr_benchmark.py; model selection on validation only; test once.
Writes eval/results/knowledge_benchmark.json and knowledge_benchmark.png."""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from llmrec.ctr import FeatureEncoder, FeatureSpec
from llmrec.data.registry import load_data
from llmrec.experiments.harness import load_experiment
from llmrec.metrics import auc
from llmrec.models import build_model, resolve_model_config
from llmrec.models.registry import ModelConfigBase
from llmrec.train import Trainer
from llmrec.results import pyplot, write_result
from llmrec.knowledge import build_requests, extract, knowledge_specs, knowledge_tables, run_extraction
from llmrec.knowledge.job import KnowledgeJobConfig, knowledge_feature_name
from llmrec.knowledge.requests import PROMPTS
from llmrec.llm import GenerationParams, LLMConfig
from llmrec.llm.transformers import TransformersConfig, TransformersLLM

# the same data sets and trainer settings as the CTR benchmark (configs/experiments/ctr_benchmark.yaml)
DATASETS = load_experiment("ctr_benchmark").datasets

KINDS = ["item", "user", "scenario", "user_scenario"]


def shuffled(table: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    ids = sorted(table)
    perm = np.random.default_rng(seed).permutation(len(ids))
    return {i: table[ids[j]] for i, j in zip(ids, perm)}


def train_eval(data, specs, tables, cfg: ModelConfigBase, name: str, seed: int) -> dict:
    tr, va, te = data.chronological_split()
    enc = FeatureEncoder(specs).fit(data.take(tr))
    b = [enc.transform(data.take(r), label=data.label, dense_tables=tables) for r in (tr, va, te)]
    torch.manual_seed(seed)
    model = build_model(enc, cfg)
    trainer = Trainer(DATASETS[name].trainer.model_copy(update={"seed": seed, "progress": False}))
    fit = trainer.fit(model, b[0], b[1])
    test = trainer.evaluate(model, b[2])
    out = {"seed": seed, "auc": test["auc"], "logloss": test["logloss"], "best_epoch": fit.best_epoch}
    if data.scenario_col:
        p = trainer.predict(model, b[2])
        y, scen = b[2].label.numpy(), data.columns[data.scenario_col][te]
        out["auc_by_scenario"] = {str(s): auc(y[scen == s], p[scen == s]) for s in sorted(set(scen))}
    return out


def summarize(runs: list[dict]) -> dict:
    a, ll = np.array([r["auc"] for r in runs]), np.array([r["logloss"] for r in runs])
    out = {"auc_mean": float(a.mean()), "auc_std": float(a.std()), "logloss_mean": float(ll.mean()),
           "logloss_std": float(ll.std()), "runs": runs}
    if runs and "auc_by_scenario" in runs[0]:
        out["auc_by_scenario_mean"] = {s: float(np.mean([r["auc_by_scenario"][s] for r in runs]))
                                       for s in runs[0]["auc_by_scenario"]}
    return out


def benchmark_dataset(name: str, a, llm_cfg: LLMConfig) -> dict:
    data = load_data(DATASETS[name].data)
    job = KnowledgeJobConfig(data=DATASETS[name].data, kinds=KINDS, llm=llm_cfg, max_new_tokens=48)
    t = time.perf_counter()
    know = run_extraction(job, data=data)
    print(f"[{name}] knowledge ready in {time.perf_counter() - t:.1f} s:",
          [(r["kind"], r["cached"], r["generated"]) for r in know["extraction"]], flush=True)
    tabs = knowledge_tables(know["out_dir"], KINDS, "MiniLM")
    tables = {knowledge_feature_name(k): v for k, v in tabs.items()}
    seeds = list(range(2021, 2021 + a.seeds))
    base = [FeatureSpec(name=n, type=t) for n, t in data.fields.items()]
    if "scenario" not in data.fields:
        base.append(FeatureSpec(name="scenario", type="categorical"))  # ml-100k: genre group as a field for all
    kar = knowledge_specs(data, {k: tabs[k] for k in ("item", "user")})
    shuffled_tables = {**tables, **{knowledge_feature_name(k): shuffled(tabs[k], 7) for k in ("item", "user")}}
    hea = {"knowledge_adaptor": {"kind": "hea"}}
    results: dict[str, dict] = {}

    def run(label: str, specs, tbls, cfg: dict) -> None:
        t0 = time.perf_counter()
        model = resolve_model_config(cfg)  # per-model defaults file + the variant's fields
        results[label] = summarize([train_eval(data, specs, tbls, model, name, s) for s in seeds])
        r = results[label]
        print(f"[{name}] {label:28s} AUC {r['auc_mean']:.4f} ± {r['auc_std']:.4f}  logloss {r['logloss_mean']:.4f}"
              f"  ({time.perf_counter() - t0:.0f} s)", flush=True)

    for bb in a.backbones:
        run(bb, base, tables, {"name": bb})
        run(f"{bb}+KAR", base + kar, tables, {"name": bb, **hea})
        if bb == a.backbones[0]:
            run(f"{bb}+KAR (shuffled knowledge)", base + kar, shuffled_tables, {"name": bb, **hea})
    msr_specs = knowledge_specs(data, {k: tabs[k] for k in ("scenario", "user_scenario")})
    star = {"name": "star", "hidden_units": [400, 400]}
    run("star", base, tables, star)
    msr = {**star, "meta": {"enabled": True}}
    run("star+LLM4MSR", base + msr_specs, tables, msr)
    run("star+LLM4MSR (shuffled users)", base + msr_specs,
        {**tables, "user_scenario_knowledge": shuffled(tabs["user_scenario"], 7)}, msr)
    return {"data": data.name, "rows": len(data), "knowledge": know, "results": results,
            "scenarios": sorted(str(s) for s in set(data.columns[data.scenario_col]))}


def extraction_throughput(a) -> dict:
    """Knowledge extraction tokens/s on the default LLM: batch 16 (continuous batching) vs one at a time."""
    data = load_data(DATASETS["synthetic"].data)
    reqs = build_requests(data, data.chronological_split()[0], "item")[: a.throughput_prompts]
    params = GenerationParams(max_new_tokens=48)
    out = {}
    for dtype in ("float32", "bfloat16"):
        tmp = Path(tempfile.mkdtemp(prefix="llmrec-kbench-"))
        try:
            batched = TransformersLLM(TransformersConfig(batch_size=16, dtype=dtype))
            batched.generate(["warm up"], GenerationParams(max_new_tokens=4))
            rb = extract(batched, "item", PROMPTS["item"], reqs, tmp / "b", params, chunk_size=len(reqs), progress=False)
            single = TransformersLLM(TransformersConfig(batch_size=1, dtype=dtype))
            r1 = extract(single, "item", PROMPTS["item"], reqs[: a.throughput_singles], tmp / "s", params, chunk_size=1,
                         progress=False)
            t = time.perf_counter()
            again = extract(batched, "item", PROMPTS["item"], reqs, tmp / "b", params, progress=False)
            rerun_s = time.perf_counter() - t
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        out[dtype] = {"batched_tokens_per_s": rb.tokens_per_second, "one_at_a_time_tokens_per_s": r1.tokens_per_second,
                      "speedup": rb.tokens_per_second / r1.tokens_per_second,
                      "batched_rows_per_s": rb.rows_per_second, "one_at_a_time_rows_per_s": r1.rows_per_second,
                      "cached_rerun": {"generated": again.generated, "cached": again.cached, "seconds": rerun_s}}
        print(dtype, {k: v for k, v in out[dtype].items()}, flush=True)
    return out


def plot(payload: dict, path: Path) -> None:
    plt = pyplot()

    sets = payload["datasets"]
    fig, axes = plt.subplots(2, len(sets), figsize=(6.5 * len(sets), 8), squeeze=False)
    for col, (name, d) in enumerate(sets.items()):
        res = d["results"]
        ax = axes[0][col]
        labels = [k for k in res if not k.startswith("star")]
        ax.bar(range(len(labels)), [res[k]["auc_mean"] for k in labels], yerr=[res[k]["auc_std"] for k in labels],
               color=["#999" if "+" not in k else ("#c44" if "shuffled" in k else "#48c") for k in labels])
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
        lo = min(res[k]["auc_mean"] for k in labels)
        ax.set_ylim(lo - 0.02, max(res[k]["auc_mean"] for k in labels) + 0.01)
        ax.set_title(f"{d['data']}: test AUC (mean ± std)")
        ax = axes[1][col]
        scen = d["scenarios"]
        w = 0.27
        for j, k in enumerate(("star", "star+LLM4MSR", "star+LLM4MSR (shuffled users)")):
            ax.bar(np.arange(len(scen)) + (j - 1) * w, [res[k]["auc_by_scenario_mean"][s] for s in scen], w, label=k)
        ax.set_xticks(range(len(scen)), scen)
        vals = [res[k]["auc_by_scenario_mean"][s] for k in ("star", "star+LLM4MSR") for s in scen]
        ax.set_ylim(min(vals) - 0.03, max(vals) + 0.02)
        ax.set_title("AUC per scenario")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["synthetic", "ml100k"])
    ap.add_argument("--backbones", nargs="+", default=["deepfm", "ipnn"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--backend", default="transformers")
    ap.add_argument("--model", default=None)
    ap.add_argument("--base-url", default=None)
    ap.add_argument("--throughput-prompts", type=int, default=48)
    ap.add_argument("--throughput-singles", type=int, default=16)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--out", default="eval/results/knowledge_benchmark.json")
    a = ap.parse_args()
    llm_cfg = LLMConfig(backend=a.backend, model=a.model, base_url=a.base_url, dtype="bfloat16")
    payload = {"llm": llm_cfg.model_dump(), "seeds": a.seeds, "trainer": {d: DATASETS[d].trainer.model_dump() for d in a.datasets},
               "datasets": {d: benchmark_dataset(d, a, llm_cfg) for d in a.datasets}}
    if not a.skip_throughput:
        payload["extraction_throughput"] = extraction_throughput(a)
    out = write_result(Path(a.out), payload, config=vars(a), seeds=list(range(2021, 2021 + a.seeds)))
    plot(payload, out.with_suffix(".png"))
    print("wrote", out, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
