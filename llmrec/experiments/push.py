"""Push-audience benchmark (kind ``push``; ``llmrec experiment push_psp``): PSP's protocol (papers.md §34).

For every data set, campaign and seed (a seed draws the campaign's seed items), each method ranks the
candidate users of a period and is scored by **precision@k**: the share of targets among its top k. A method's
hyperparameters are chosen on the validation period from its ``grid`` (by mean precision over campaigns and
seeds); the chosen setting is then run on the test period, whose graph is the same graph period (the push
is decided before the test period starts). Every grid point's test precision is reported too.

For approximate methods (a model config with ``iterations``), the test rankings are also compared with the
exact solve of the same config (``iterations: None``): Spearman's rho over the candidate users, and the sweep
``iterations_sweep`` draws rho against T."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator
from scipy.stats import spearmanr

from llmrec.config import StrictConfig
from llmrec.data.push import PushConfig, PushData, push_view
from llmrec.data.registry import DataConfig, load_data
from llmrec.experiments.kinds import ExperimentKind, validate
from llmrec.experiments.runner import Runner
from llmrec.io import settings_key
from llmrec.experiments.methods import GridMethod, distinct_labels, setting_key
from llmrec.models import build_model, resolve_model_config
from llmrec.metrics import precision_at
from llmrec.results import pyplot, save_figure


class PushDataset(StrictConfig):
    """One data set: the log to load and how it becomes campaigns."""
    data: DataConfig = DataConfig()
    push: PushConfig = PushConfig()


class PushExperiment(StrictConfig):
    """Data sets, methods, k, seeds, the T sweep of the approximate walk."""
    name: str
    output: str | None = None
    seeds: list[int] = [0, 1, 2]
    k: int = Field(100, ge=1)
    datasets: dict[str, PushDataset]
    methods: list[GridMethod]
    iterations_sweep: list[int] = [1, 2, 3, 5, 10, 20, 50]

    _labels = field_validator("methods")(distinct_labels)


def user_scores(view: PushData, model_spec: dict, exp: PushExperiment, n_seeds: int) -> dict:
    """The method fitted once on the graph period; its user scores per (campaign, seed) and seconds per call."""
    model = build_model(None, model_spec).fit(view.weights)
    scores, seconds = {}, 0.0
    for campaign in view.campaign_items:
        for seed in exp.seeds:
            t0 = time.perf_counter()
            scores[(campaign, seed)] = model.score_users(view.seeds(campaign, n_seeds, seed))
            seconds += time.perf_counter() - t0
    return {"scores": scores, "seconds_per_campaign": seconds / max(1, len(scores))}


def precisions(view: PushData, scores: dict, period: str, exp: PushExperiment, n_seeds: int) -> dict:
    """Precision@k per campaign in ``period`` (mean over seeds) and its mean over campaigns."""
    per = view.periods[period]
    out = {c: float(np.mean([precision_at(scores[(c, s)], per.candidates,
                                          per.targets(c, view.seeds(c, n_seeds, s)), exp.k) for s in exp.seeds]))
           for c in view.campaign_items}
    return {"precision": out, "mean": float(np.mean(list(out.values())))}


def spearman(a: np.ndarray, b: np.ndarray, candidates: np.ndarray) -> float:
    """Spearman's rho of two score vectors over the candidate users."""
    rho = spearmanr(a[candidates], b[candidates]).statistic
    return float(rho) if np.isfinite(rho) else 0.0


def run_dataset(exp: PushExperiment, d: PushDataset) -> dict:
    """Every method on one data set: validation choice, test precision, Spearman against the exact walk."""
    view = push_view(load_data(d.data), d.push)
    n = d.push.seed_items
    test = view.periods["test"]
    out: dict[str, Any] = {
        "users": int(view.weights.shape[0]), "items": int(view.weights.shape[1]), "edges": int(view.weights.nnz),
        "isolated": view.isolated, "campaigns": list(view.campaign_items),
        "candidates": {p: int(len(v.candidates)) for p, v in view.periods.items()},
        "targets": {c: int(np.mean([len(test.targets(c, view.seeds(c, n, s))) for s in exp.seeds]))
                    for c in view.campaign_items},
        "methods": {}}
    for m in exp.methods:
        runs = {setting_key(p): (p, user_scores(view, {**m.model, **p}, exp, n)) for p in m.points()}
        valid = {k: precisions(view, r["scores"], "valid", exp, n)["mean"] for k, (_, r) in runs.items()}
        tests = {k: precisions(view, r["scores"], "test", exp, n) for k, (_, r) in runs.items()}
        best = max(valid, key=valid.get)
        chosen = runs[best][0]
        row = {"chosen": chosen, "valid_mean": valid, "test_precision": tests[best]["precision"],
               "test_mean": tests[best]["mean"], "test_mean_per_setting": {k: t["mean"] for k, t in tests.items()},
               "seconds_per_campaign": runs[best][1]["seconds_per_campaign"]}
        cfg = resolve_model_config({**m.model, **chosen})
        if getattr(cfg, "iterations", None) is not None:
            rho = {}
            for k, (p, r) in runs.items():  # every grid point against its own exact walk
                ex = user_scores(view, {**m.model, **p, "iterations": None}, exp, n)
                rho[k] = float(np.mean([spearman(r["scores"][key], ex["scores"][key], test.candidates)
                                        for key in r["scores"]]))
                if k == best:
                    exact = ex
            row["spearman_with_exact"] = rho[best]
            row["spearman_per_setting"] = rho
            row["exact_test_mean"] = precisions(view, exact["scores"], "test", exp, n)["mean"]
            row["exact_seconds_per_campaign"] = exact["seconds_per_campaign"]
            sweep = {}
            for t in exp.iterations_sweep:
                r = user_scores(view, {**m.model, **chosen, "iterations": t}, exp, n)["scores"]
                sweep[t] = {"spearman": float(np.mean([spearman(r[key], exact["scores"][key], test.candidates)
                                                       for key in r])),
                            "precision": precisions(view, r, "test", exp, n)["mean"]}
            row["iterations_sweep"] = sweep
        out["methods"][m.label] = row
    return out


def plot(results: dict, path: Path) -> None:
    """Test precision@k per campaign (one panel per data set) and Spearman with the exact walk against T."""
    plt = pyplot()
    n = len(results)
    fig, axes = plt.subplots(2, n, figsize=(8 * n, 8), squeeze=False)
    for j, (dname, r) in enumerate(results.items()):
        ax = axes[0][j]
        camps = r["campaigns"]
        w = 0.8 / max(1, len(r["methods"]))
        for i, (label, m) in enumerate(r["methods"].items()):
            ax.bar(np.arange(len(camps)) + (i - len(r["methods"]) / 2 + 0.5) * w,
                   [m["test_precision"][c] for c in camps], w, label=f"{label} (mean {m['test_mean']:.3f})")
        ax.set_xticks(range(len(camps)), camps, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("test precision@k")
        ax.set_title(f"{dname}: precision of the pushed users, per campaign")
        ax.legend(fontsize=7)
        ax = axes[1][j]
        for label, m in r["methods"].items():
            if "iterations_sweep" in m:
                ts = sorted(m["iterations_sweep"], key=int)
                ax.plot([int(t) for t in ts], [m["iterations_sweep"][t]["spearman"] for t in ts], marker="o",
                        label=label)
        ax.axhline(0.95, color="grey", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("iterations T")
        ax.set_ylabel("Spearman rho with exact PARW")
        ax.set_title(f"{dname}: approximate vs exact walk")
        ax.legend(fontsize=7)
    save_figure(fig, path)


def run_push(exp: PushExperiment, out: str | Path | None = None) -> dict:
    """Every data set; writes the result JSON and the plot."""
    runner = Runner(exp, settings_key(exp, exclude=("name", "output", "datasets")), out)
    done = runner.run([(name, d, None) for name, d in exp.datasets.items()], lambda d, _: run_dataset(exp, d))
    results = {name: runs[0] for name, runs in done.items()}
    summary = {name: {label: {"test_mean": m["test_mean"], "chosen": m["chosen"],
                              **({"spearman_with_exact": m["spearman_with_exact"]} if "spearman_with_exact" in m else {})}
                      for label, m in r["methods"].items()} for name, r in results.items()}
    path = runner.write({"summary": summary, "results": results}, plot=lambda png: plot(results, png))
    return {"output": str(path), "summary": summary}


def _load(raw: dict, path: Path) -> PushExperiment:
    return validate(PushExperiment, raw, path)


KIND = ExperimentKind(load=_load, run=run_push)
