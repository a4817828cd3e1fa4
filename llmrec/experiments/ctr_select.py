"""Field selection benchmark (kind ``ctr_select``; ``llmrec select`` / ``llmrec experiment ctr_select``):
ERASE's protocol (papers.md §15) over the selectors of ``llmrec.train.selection``.

For every data set and seed: each selector ranks the embedded fields (from the training and validation rows
only), then the backbone is retrained on each ranking's top-k fields (k in ``ks``, default 1..F) and tested.
Reported per selector: the AUC-vs-k curve (mean ± std over seeds), **AUKC** = the mean test AUC over the
k values (the area under AUC against k / F, right Riemann sum; the higher, the better the ranking at every
budget), its rankings and the seconds it took. The backbone trained on every field (no selection) is run too,
so ``all_fields_gap`` (its AUC minus the top-F retrain's) checks that selecting everything changes nothing.
A retrain is cached by (data set, seed, field set), so rankings that share a prefix share the training, and
every finished ranking and retrain is kept by the runner in ``<output>.partial.json`` (a killed run resumes)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import model_validator

from llmrec.config import StrictConfig
from llmrec.ctr.features import FeatureSpec
from llmrec.data.registry import DataConfig, load_data
from llmrec.errors import ConfigError
from llmrec.train_job import TrainJobConfig, feature_specs, prepare, train_prepared
from llmrec.experiments.kinds import ExperimentKind, validate
from llmrec.experiments.runner import Runner
from llmrec.io import settings_key
from llmrec.models import build_model
from llmrec.results import pyplot
from llmrec.train import PointwiseTask, Trainer, TrainerConfig
from llmrec.train.selection import SELECTORS, SelectionInput, SelectorConfig, select, top_k


class SelectDataset(StrictConfig):
    """One data set: its data config, features (None = every typed field) and trainer settings."""
    data: DataConfig = DataConfig()
    features: list[FeatureSpec] | None = None
    trainer: TrainerConfig = TrainerConfig()


class SelectExperiment(StrictConfig):
    """Data sets, the backbone, the selectors and the numbers of kept fields."""
    name: str
    output: str | None = None
    seeds: list[int] = [2021, 2022, 2023]
    datasets: dict[str, SelectDataset]
    backbone: dict[str, Any] = {"name": "dnn", "embedding_dim": 8}
    selectors: list[str] = ["lasso", "gbdt", "rf", "xgboost", "autofield", "adafs", "optfs", "lpfs",
                            "permutation", "shark", "sfs", "random"]
    selector: SelectorConfig = SelectorConfig()
    ks: list[int] | None = None  # numbers of kept fields; None = 1 .. every field

    @model_validator(mode="after")
    def _check(self) -> "SelectExperiment":
        unknown = [s for s in self.selectors if s not in SELECTORS.names()]
        if unknown or not self.selectors or len(set(self.selectors)) != len(self.selectors):
            raise ValueError(f"selectors: need distinct names among {SELECTORS.names()}, got {self.selectors}")
        if self.ks is not None and (not self.ks or min(self.ks) < 1):
            raise ValueError(f"ks: numbers of kept fields must be >= 1, got {self.ks}")
        for name, d in self.datasets.items():
            if any(f.type == "behavior" for f in d.features or []):
                raise ValueError(f"datasets.{name}.features: field selection ranks embedded fields; behaviour "
                                 f"sequences are not supported")
        return self


def job_for(exp: SelectExperiment, d: SelectDataset, features: list[FeatureSpec] | None, seed: int) -> TrainJobConfig:
    """The training job of the backbone on ``features`` with ``seed``."""
    return TrainJobConfig(data=d.data, features=features, model=exp.backbone,
                          trainer=d.trainer.model_copy(update={"seed": seed, "progress": False}))


def retrain(exp: SelectExperiment, d: SelectDataset, data, specs: list[FeatureSpec] | None, seed: int) -> dict:
    """Train and test the backbone on ``specs``: test AUC / logloss, validation AUC, epochs, seconds."""
    t0 = time.perf_counter()
    job = job_for(exp, d, specs, seed)
    _, res = train_prepared(job, prepare(job, data))
    return {"auc": res["test"]["auc"], "logloss": res["test"]["logloss"], "valid_auc": res["valid"]["auc"],
            "best_epoch": res["best_epoch"], "seconds": time.perf_counter() - t0}


def run_dataset(exp: SelectExperiment, dname: str, d: SelectDataset, runner: Runner) -> dict:
    """Rankings and retrains of one data set over the seeds (each kept by the runner as it finishes)."""
    data = load_data(d.data)
    specs = feature_specs(data, d.features)
    if any(s.type == "behavior" for s in specs):
        raise ConfigError(f"datasets.{dname}.features: the data has behaviour sequences; list the embedded "
                          f"fields to select from (field selection does not rank behaviour sequences)")
    runs: dict[str, Any] = {"rankings": {}, "curves": {}, "no_selection": []}
    for seed in exp.seeds:
        job = job_for(exp, d, specs, seed)
        p = prepare(job, data)
        fields = p.context.embedded_fields
        ks = exp.ks or list(range(1, len(fields) + 1))

        def build(p=p, job=job, seed=seed) -> torch.nn.Module:
            torch.manual_seed(seed)
            return build_model(p.context, job.model)

        inp = SelectionInput(p.context, p.train, p.valid, build, Trainer(job.trainer, PointwiseTask()), seed)
        # the features as configured, no selection
        runs["no_selection"].append(runner.cached({"label": f"{dname} all fields", "seed": seed},
                                                  lambda: retrain(exp, d, data, d.features, seed)))
        for name in exp.selectors:
            def ranked(name=name) -> dict:
                t0 = time.perf_counter()
                return {**select(name, inp, exp.selector), "seconds": time.perf_counter() - t0}

            chosen_by = runner.cached({"label": f"{dname} ranking {name}", "seed": seed}, ranked)
            ranking = chosen_by["ranking"]
            runs["rankings"].setdefault(name, []).append(chosen_by)
            curve = []
            for k in ks:
                chosen = sorted(top_k(ranking, k))
                res = runner.cached({"label": f"{dname} fields", "seed": seed, "fields": chosen},
                                    lambda chosen=chosen: retrain(exp, d, data, [s for s in specs if s.name in chosen],
                                                                  seed))
                curve.append({"k": k, "fields": chosen, **res})
            runs["curves"].setdefault(name, []).append(curve)
            print(f"{dname} seed {seed} {name}: {ranking} AUKC {np.mean([c['auc'] for c in curve]):.4f}", flush=True)
    runs["fields"], runs["ks"] = fields, ks
    return runs


def summarize(runs: dict) -> dict:
    """Per selector: curve mean ± std, AUKC mean ± std, all-fields gap, seconds; the best against random."""
    ks, base = runs["ks"], [r["auc"] for r in runs["no_selection"]]
    out: dict[str, Any] = {"fields": runs["fields"], "ks": ks,
                           "no_selection_auc": {"mean": float(np.mean(base)), "std": float(np.std(base))},
                           "selectors": {}}
    for name, curves in runs["curves"].items():
        aucs = np.array([[c["auc"] for c in curve] for curve in curves])  # [seeds, ks]
        aukc = aucs.mean(1)
        full = [c["auc"] for curve in curves for c in curve if c["k"] == len(runs["fields"])]
        out["selectors"][name] = {
            "aukc": {"mean": float(aukc.mean()), "std": float(aukc.std())},
            "curve_mean": aucs.mean(0).tolist(), "curve_std": aucs.std(0).tolist(),
            "all_fields_gap": float(max(abs(a - b) for a, b in zip(full, base))) if full else None,
            "rankings": [r["ranking"] for r in runs["rankings"][name]],
            "seconds": float(np.mean([r["seconds"] for r in runs["rankings"][name]])),
        }
    for v in out["selectors"].values():  # papers.md's check: the top 3 hold the user and the item field
        v["top3_has_user_and_item"] = [{"user_id", "item_id"} <= set(r[:3]) for r in v["rankings"]]
    sel = {n: s for n, s in out["selectors"].items() if n != "random"}
    if sel and "random" in out["selectors"]:
        best = max(sel, key=lambda n: sel[n]["aukc"]["mean"])
        out["best"] = {"selector": best, "aukc": sel[best]["aukc"]["mean"],
                       "over_random": sel[best]["aukc"]["mean"] - out["selectors"]["random"]["aukc"]["mean"]}
    return out


def plot(summaries: dict[str, dict], path: Path) -> None:
    """AUC against the number of kept fields, one panel per data set, one line per selector."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(summaries), figsize=(6.5 * len(summaries), 4.5), squeeze=False)
    for ax, (dname, s) in zip(axes[0], summaries.items()):
        for name, v in s["selectors"].items():
            ax.plot(s["ks"], v["curve_mean"], marker="o", ms=3, lw=2.2 if name == s.get("best", {}).get("selector")
                    else 1.0, ls="--" if name == "random" else "-",
                    label=f"{name} (AUKC {v['aukc']['mean']:.4f})", color="black" if name == "random" else None)
        ax.axhline(s["no_selection_auc"]["mean"], color="grey", lw=0.8, ls=":", label="all fields")
        ax.set_xlabel("kept fields k")
        ax.set_ylabel("test AUC (mean over seeds)")
        ax.set_title(f"{dname}: retrained on each ranking's top k")
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def run_ctr_select(exp: SelectExperiment, out: str | Path | None = None) -> dict:
    """Every data set, seed and selector; writes the result JSON (rankings, curves, AUKC) and the plot."""
    runner = Runner(exp, settings_key(exp, exclude=("name", "output", "seeds", "selectors", "ks")), out)
    runs = {dname: run_dataset(exp, dname, d, runner) for dname, d in exp.datasets.items()}
    summary = {dname: summarize(r) for dname, r in runs.items()}
    path = runner.write({"summary": summary, "runs": runs}, plot=lambda png: plot(summary, png))
    return {"output": str(path), "summary": summary}


def _load(raw: dict, path: Path) -> SelectExperiment:
    return validate(SelectExperiment, raw, path)


KIND = ExperimentKind(load=_load, run=run_ctr_select)
