"""Reinforcement-learning recommendation benchmark (kind ``rl``; ``llmrec experiment rl_drr``): DRR's offline
protocol (papers.md §32).

MovieLens ratings split per user by time (``split``: train / validation / test). PMF (``llmrec.train.pmf``)
is fitted on the training ratings; its vectors (item: [v_i; b_i], user: [u; 1], so a . e_i can carry PMF's
item bias) are DRR's frozen embeddings, and its predictions the simulator's fallback. Each DRR variant (a
state module) is trained by DDPG (``llmrec.train.actor_critic``) once per seed; the actor with the best
validation precision is tested. Baselines rank the same candidate sets once: **PMF** (predicted rating) and
**popularity** (training ratings per item). Reported: precision@k with logged feedback (the sequential
protocol) and of the first static ranking, per variant (mean ± std over seeds), and the training curves
(mean episode reward, validation precision) drawn per variant."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, field_validator

from llmrec.config import StrictConfig
from llmrec.data.registry import DataConfig, load_data
from llmrec.data.simulator import RatingLog, RatingSimulator, rating_log, split_by_user
from llmrec.experiments.kinds import ExperimentKind, validate
from llmrec.experiments.runner import Runner
from llmrec.io import settings_key
from llmrec.models import build_model, resolve_model_config
from llmrec.results import pyplot, save_figure
from llmrec.train.actor_critic import (DDPGConfig, ReferencePolicy, UserHistory, evaluate, popular_positives, probe,
                                      train_drr)
from llmrec.train.pmf import PMFConfig, fit_pmf, pmf_vectors


class RLVariant(StrictConfig):
    """One DRR variant: its label, model config and overrides of the experiment's DDPG settings."""
    label: str
    model: dict[str, Any]
    ddpg: dict[str, Any] = {}  # e.g. {gamma: 0}: this variant's DDPG settings differ from the experiment's there

    @field_validator("model")
    @classmethod
    def _model(cls, v: dict) -> dict:
        resolve_model_config(v, "variants.model")
        return v

    @field_validator("ddpg")
    @classmethod
    def _ddpg(cls, v: dict) -> dict:
        DDPGConfig(**v)  # names and values checked against DDPGConfig (every field has a default)
        return v


class RLExperiment(StrictConfig):
    """Data, split, PMF, DDPG settings, variants and seeds."""
    name: str
    output: str | None = None
    data: DataConfig = DataConfig(source="movielens100k")
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    pmf: PMFConfig = PMFConfig()
    ddpg: DDPGConfig = DDPGConfig()
    variants: list[RLVariant]
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    filler: int = Field(20, ge=1)  # popular positives that pad a short state window
    # where a variant stands (``llmrec.train.actor_critic.probe``): PMF's direction as DRR's action (a
    # baseline), each seed's untrained actor, the cosine of each actor with PMF's direction, its critic as a ranker
    probes: bool = False


def static_precision(score: Any, split: RatingLog, k: int, positive: float) -> float:
    """precision@k of one ranking of each eligible user's split items by ``score(user, items)``."""
    out = []
    for u, rows in enumerate(split.by_user()):
        if len(rows) >= k:
            sc = score(u, split.item[rows])
            out.append(float((split.rating[rows][np.argsort(-sc, kind="stable")[:k]] >= positive).mean()))
    return float(np.mean(out)) if out else 0.0


def _mean_std(xs: list[float]) -> dict:
    return {"mean": float(np.mean(xs)), "std": float(np.std(xs)), "per_seed": xs}


def run_rl(exp: RLExperiment, out: str | Path | None = None) -> dict:
    """Baselines and every variant over the seeds (resumable per variant and seed, through the one runner);
    writes the result JSON and the curves plot."""
    log = rating_log(load_data(exp.data))
    train, valid, test = split_by_user(log, exp.split)
    pmf = fit_pmf(train, exp.pmf, valid)
    sim = RatingSimulator(train, pmf.U, pmf.V, pmf.bu, pmf.bi, pmf.mean)
    c, k = exp.ddpg, exp.ddpg.k
    filler = popular_positives(train, c.positive, exp.filler)
    popularity = np.bincount(train.item, minlength=train.n_items).astype(np.float64)
    baselines = {
        "PMF": static_precision(lambda u, it: pmf.predict(np.full(len(it), u), it), test, k, c.positive),
        "popularity": static_precision(lambda u, it: popularity[it], test, k, c.positive),
        "random order (base rate)": float(np.mean([(test.rating[r] >= c.positive).mean()
                                                   for r in test.by_user() if len(r) >= k])),
    }
    users, items = pmf_vectors(pmf)
    past = UserHistory.of(train, valid)
    if exp.probes:
        reference = ReferencePolicy(build_model((users, items), exp.variants[0].model))
        baselines["PMF direction as DRR's action"] = evaluate(reference, past, test, filler, c)[f"precision@{k}"]

    def run_one(v, seed: int) -> dict:
        cv = DDPGConfig(**{**c.model_dump(), **v.ddpg, "seed": seed})
        trained, tested = train_drr(v.model, (users, items), sim, train, valid, test, filler, cv)
        out = {"seed": seed, "test": tested,
               "best_episode": trained.best_episode, "seconds": trained.seconds, "curve": trained.curve}
        if exp.probes:
            torch.manual_seed(seed)  # the initial weights train_drr started from
            untrained = build_model((users, items), v.model)
            out["probes"] = {"untrained": {**evaluate(untrained, past, test, filler, cv),
                                           **probe(untrained, past, test, filler, cv)},
                             "trained": probe(trained.model, past, test, filler, cv)}
        return out

    runner = Runner(exp, settings_key(exp, exclude=("name", "output", "seeds", "variants")), out)
    by_label = runner.run([(v.label, v, seed) for v in exp.variants for seed in exp.seeds], run_one)
    variants = {}
    for v in exp.variants:
        runs = by_label[v.label]
        variants[v.label] = {
            f"precision@{k}": _mean_std([r["test"][f"precision@{k}"] for r in runs]),
            f"static_precision@{k}": _mean_std([r["test"][f"static_precision@{k}"] for r in runs]),
            "users": runs[0]["test"]["users"], "runs": runs}
    summary = {"baselines": baselines,
               "variants": {lab: {m: r[m]["mean"] for m in (f"precision@{k}", f"static_precision@{k}")}
                            for lab, r in variants.items()}}
    path = runner.write({"summary": summary, "pmf_rmse": pmf.rmse, "ratings": {"train": len(train.user),
                         "valid": len(valid.user), "test": len(test.user)}, "baselines": baselines,
                         "variants": variants},
                        plot=lambda png: plot({lab: r["runs"] for lab, r in variants.items()}, baselines, k, png))
    return {"output": str(path), "summary": summary}


def plot(curves: dict, baselines: dict, k: int, path: Path) -> None:
    """Per variant: mean episode reward and validation precision against episodes (one line per seed)."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
    for n, (label, runs) in enumerate(curves.items()):
        for j, r in enumerate(runs):
            ep = [p["episode"] for p in r["curve"]]
            ax1.plot(ep, [p["mean_reward"] for p in r["curve"]], color=f"C{n}", alpha=0.8,
                     label=label if j == 0 else None)
            ax2.plot(ep, [p[f"valid_precision@{k}"] for p in r["curve"]], color=f"C{n}", alpha=0.8,
                     label=label if j == 0 else None)
    ax1.set_xlabel("episode")
    ax1.set_ylabel("mean episode reward (training users)")
    ax2.set_xlabel("episode")
    ax2.set_ylabel(f"validation precision@{k}")
    ax2.axhline(baselines["random order (base rate)"], color="grey", ls=":", lw=1, label="test base rate")
    ax2.axhline(baselines["PMF"], color="black", ls="--", lw=1, label="PMF (test)")
    for ax in (ax1, ax2):
        ax.legend(fontsize=7)
    ax1.set_title("DDPG training curves (one line per seed)")
    ax2.set_title("validation precision while training")
    save_figure(fig, path)


def _load(raw: dict, path: Path) -> RLExperiment:
    return validate(RLExperiment, raw, path)


KIND = ExperimentKind(load=_load, run=run_rl)
