"""The sequence-augmentation experiment (kind ``augment``; ``configs/experiments/sequential_augment.yaml``):
RSIR rounds (with the no-filter ablation) and DiffuASR prefixes (with the random-prefix ablation) for one
sequential model on one data set, over seeds; test metrics per round / variant (mean and std over seeds),
DiffuASR's also on the short-history users, and a plot."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from llmrec.augment.diffuasr import DiffuASRConfig, run_diffuasr
from llmrec.augment.rsir import RSIRConfig, run_rsir
from llmrec.config import StrictConfig
from llmrec.data.registry import load_data
from llmrec.experiments.jobs import TrainJobConfig
from llmrec.experiments.kinds import ExperimentKind, validate
from llmrec.results import grouped_bars, pyplot, write_result


class AugmentExperiment(StrictConfig):
    """One sequential training job, the seeds, and the augmentations to compare (None: skipped)."""
    name: str
    output: str | None = None  # default eval/results/<name>.json
    seeds: list[int] = [2021, 2022, 2023]
    job: TrainJobConfig
    rsir: RSIRConfig | None = RSIRConfig()
    diffuasr: DiffuASRConfig | None = DiffuASRConfig()
    metrics: list[str] = ["recall@10", "ndcg@10", "hit@10"]


def _mean_std(values: list[dict | None], metrics: list[str]) -> dict[str, Any]:
    rows = [v for v in values if v]
    if not rows:
        return {}
    return {**{f"{m}_mean": float(np.mean([r[m] for r in rows])) for m in metrics},
            **{f"{m}_std": float(np.std([r[m] for r in rows])) for m in metrics}}


def run_augment(exp: AugmentExperiment, out: str | Path | None = None) -> dict:
    """Every seed: RSIR (fidelity on and off) and DiffuASR (diffusion and random prefixes); summaries over seeds."""
    data = load_data(exp.job.data)
    runs: dict[str, list] = {"rsir": [], "rsir_no_filter": [], "diffuasr": []}
    for seed in exp.seeds:
        job = exp.job.model_copy(update={"trainer": exp.job.trainer.model_copy(update={"seed": seed,
                                                                                     "progress": False})})
        if exp.rsir is not None:
            runs["rsir"].append(run_rsir(job, exp.rsir.model_copy(update={"seed": seed}), data))
            runs["rsir_no_filter"].append(run_rsir(job, exp.rsir.model_copy(update={"seed": seed, "fidelity": False}),
                                                   data))
        if exp.diffuasr is not None:
            runs["diffuasr"].append(run_diffuasr(job, exp.diffuasr.model_copy(update={"seed": seed}), data))
        print(f"seed {seed} done", flush=True)
    summary: dict[str, Any] = {}
    for name in ("rsir", "rsir_no_filter"):
        if runs[name]:
            n_rounds = len(runs[name][0]["rounds"])
            summary[name] = [{"round": r, **_mean_std([x["rounds"][r]["test"] for x in runs[name]], exp.metrics),
                              "acceptance": (float(np.mean([x["rounds"][r]["acceptance"] for x in runs[name]]))
                                             if r else None)} for r in range(n_rounds)]
    if runs["diffuasr"]:
        summary["diffuasr"] = {v: {"all": _mean_std([x[v]["test"] for x in runs["diffuasr"]], exp.metrics),
                                   "short_users": _mean_std([x[v]["test_short_users"] for x in runs["diffuasr"]],
                                                            exp.metrics)}
                               for v in ("base", "diffusion", "random_prefix")}
        summary["diffuasr"]["short_users_count"] = runs["diffuasr"][0]["short_users"]
    for name, rows in summary.items():
        print(name, rows, flush=True)
    path = Path(out or exp.output or f"eval/results/{exp.name}.json")
    write_result(path, {"data": data.name, "summary": summary, "runs": runs}, config=exp.model_dump(mode="json"),
                 seeds=exp.seeds)
    plot(summary, exp.metrics[1] if len(exp.metrics) > 1 else exp.metrics[0], path.with_suffix(".png"))
    return {"output": str(path), "summary": summary}


def plot(summary: dict, metric: str, path: Path) -> None:
    """Bars of the metric: RSIR rounds (with and without fidelity) and DiffuASR variants (all / short users)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    if "rsir" in summary:
        rounds = [f"round {r['round']}" for r in summary["rsir"]]
        series = {k: [r.get(f"{metric}_mean", 0.0) for r in summary[k]] for k in ("rsir", "rsir_no_filter")
                  if k in summary}
        grouped_bars(axes[0], rounds, series, ylabel=f"test {metric} (mean over seeds)")
        axes[0].set_title("RSIR: successors per round (fidelity filter vs none)")
    if "diffuasr" in summary:
        d = summary["diffuasr"]
        grouped_bars(axes[1], ["all users", "short-history users"],
                     {v: [d[v]["all"].get(f"{metric}_mean", 0.0), d[v]["short_users"].get(f"{metric}_mean", 0.0)]
                      for v in ("base", "diffusion", "random_prefix")}, ylabel=f"test {metric} (mean over seeds)")
        axes[1].set_title("DiffuASR: generated vs random prefixes")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _load(raw: dict, path: Path) -> AugmentExperiment:
    return validate(AugmentExperiment, raw, path)


KIND = ExperimentKind(load=_load, run=run_augment)
