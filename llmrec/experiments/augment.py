"""The sequence-augmentation experiment (kind ``augment``; ``configs/experiments/sequential_augment.yaml``): the
procedures of ``llmrec.augment.rounds`` (also the training job's ``augment`` option) with their ablations:
RSIR rounds (with the no-filter ablation) and DiffuASR prefixes (with the random-prefix ablation) for one
sequential model on one data set, over seeds; test metrics per round / variant (mean and std over seeds),
DiffuASR's also on the short-history users, and a plot. ``diffuasr_runs: [oracle]`` measures DiffuASR's premise where
the truth is known: a share of the long users lose their first items, which come back as the prefix (the
oracle, the ceiling of any generator) beside the generated, random and guide-nearest prefixes."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from llmrec.augment.diffuasr import DiffuASRConfig
from llmrec.augment.rounds import prefix_users, rsir_rounds, short_user_prefixes, short_users, with_prefixes
from llmrec.augment.rsir import RSIRConfig
from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.data.registry import load_data
from llmrec.data.views import sequence_rows
from llmrec.train_job import TrainJobConfig, augment_inputs, make_trainer, prepare, train_prepared
from llmrec.experiments.kinds import ExperimentKind, validate
from llmrec.experiments.runner import Runner
from llmrec.io import settings_key
from llmrec.results import grouped_bars, pyplot


class AugmentExperiment(StrictConfig):
    """One sequential training job, the seeds, and the augmentations to compare (None: skipped)."""
    name: str
    output: str | None = None  # default eval/results/<name>.json
    seeds: list[int] = [2021, 2022, 2023]
    job: TrainJobConfig
    rsir: RSIRConfig | None = RSIRConfig()
    # the duplicates control beside RSIR: each round adds the real sequences again, nothing generated (RSIR's
    # synthetic rows repeat the real history too, so this separates more passes from the generated items)
    rsir_control: bool = True
    diffuasr: DiffuASRConfig | None = DiffuASRConfig()
    # what runs with the diffuasr settings: the prefixes (generated and random, for the users they name) and / or
    # the oracle (run_prefix_oracle: cut users, their true first items put back beside the generated ones)
    diffuasr_runs: list[Literal["prefixes", "oracle"]] = Field(["prefixes"], min_length=1)
    oracle_fraction: float = Field(0.3, gt=0, le=1)  # the oracle's share of the long users that are cut
    metrics: list[str] = ["recall@10", "ndcg@10", "hit@10"]


def run_rsir(job, c: RSIRConfig, data=None, duplicates: bool = False) -> dict:
    """Round 0 (the base model) and ``c.rounds`` self-improvement rounds of one training job
    (``llmrec.augment.rounds.rsir_rounds``); per round the valid / test metrics and the generation counts.
    ``duplicates``: the control, every round adds each real sequence once more and generates nothing."""
    if job.sequence.train != "sequences":
        raise ValueError("sequence.train: RSIR extends whole sequences, set train: sequences")
    p = prepare(job, data)
    users, real = augment_inputs(job, p)
    _, rounds = rsir_rounds(lambda rows: train_prepared(job, p if rows is None else replace(p, train=rows)),
                            list(zip(users, real)), c, job.sequence.max_len, job.sequence.window_stride, duplicates)
    rounds[0]["train_rows"] = len(p.train)
    return {"config": c.model_dump(), "rounds": rounds}


def subset_scores(job, p, model, result: dict, test_mask: np.ndarray, key: str) -> dict:
    """A trained model's valid / test metrics, and its test metrics on the test rows of ``test_mask`` under
    ``key`` (None when the mask is empty)."""
    sub = p.test.slice(torch.from_numpy(np.flatnonzero(test_mask))) if test_mask.any() else None
    return {"test": result["test"], "valid": result["valid"],
            key: make_trainer(job, p).evaluate(model, sub) if sub is not None else None}


def run_diffuasr(job, c: DiffuASRConfig, data=None) -> dict:
    """Base model, then the same model retrained with diffusion prefixes and with random prefixes for the short
    users (``llmrec.augment.rounds.short_user_prefixes``); test metrics overall and on the short users."""
    if job.sequence.train != "sequences":
        raise ValueError("sequence.train: DiffuASR prepends to whole sequences, set train: sequences")
    p = prepare(job, data)
    users, real = augment_inputs(job, p)
    short, chosen = short_users(real, c), prefix_users(real, c)
    test_short = np.isin(p.test.users.numpy(), np.array(users)[short])

    def scores(model, result) -> dict:
        return subset_scores(job, p, model, result, test_short, "test_short_users")

    base, result = train_prepared(job, p)
    out = {"config": c.model_dump(), "short_users": int(short.sum()), "prefixed_users": int(chosen.sum()),
           "users": len(users),
           "base": scores(base, result)}
    with torch.no_grad():
        table = base.item_table().detach().float()
    prefixes, diffusion = short_user_prefixes(table, real, chosen, p.context.n_items, c)
    out.update(diffusion)
    for name, pre in prefixes.items():
        rows = sequence_rows(with_prefixes(users, real, chosen, pre), job.sequence.max_len, job.sequence.window_stride)
        model_r, result_r = train_prepared(job, replace(p, train=rows))
        out[name] = scores(model_r, result_r)
    return out


def run_prefix_oracle(job, c: DiffuASRConfig, fraction: float, data=None) -> dict:
    """Cut users (``fraction`` of the users with at least twice ``c.prefix`` training items) trained without
    their first ``c.prefix`` items (the base), then with a prefix put back: their true items (``oracle``),
    DiffuASR's (trained on the cut data), random unused items, and the guide's nearest items; test metrics
    overall and on the cut users (test inputs are every user's real history in every variant: only the
    training rows differ), and each prefix's recovery: the share of its items among the user's hidden ones,
    beside chance."""
    if job.sequence.train != "sequences":
        raise ValueError("sequence.train: DiffuASR prepends to whole sequences, set train: sequences")
    p = prepare(job, data)
    users, real = augment_inputs(job, p)
    rng = np.random.default_rng(c.seed)
    cut_mask = np.array([len(s) >= 2 * c.prefix for s in real]) & (rng.random(len(real)) < fraction)
    if not cut_mask.any():
        raise ValueError(f"diffuasr.prefix: no user has {2 * c.prefix} training items to cut {c.prefix} from "
                         "(the oracle)")
    cut = [s[c.prefix:] if m else s for s, m in zip(real, cut_mask)]
    hidden = [s[:c.prefix] for s, m in zip(real, cut_mask) if m]
    test_cut = np.isin(p.test.users.numpy(), np.array(users)[cut_mask])

    def train_on(seqs: list[list[int]]) -> tuple[Any, dict]:
        rows = sequence_rows(list(zip(users, seqs)), job.sequence.max_len, job.sequence.window_stride)
        model, result = train_prepared(job, replace(p, train=rows))
        return model, subset_scores(job, p, model, result, test_cut, "test_cut_users")

    base_model, base = train_on(cut)
    with torch.no_grad():
        table = base_model.item_table().detach().float()
    prefixes, diffusion = short_user_prefixes(table, cut, cut_mask, p.context.n_items, c, nearest=True)
    prefixes = {"oracle": hidden, **prefixes}
    unused = [p.context.n_items - 1 - len(set(s)) for s, m in zip(cut, cut_mask) if m]
    out: dict[str, Any] = {"config": c.model_dump(), "users": len(users), "cut_users": int(cut_mask.sum()),
                           "base": base, **diffusion,
                           "recovery": {name: float(np.mean([len(set(map(int, pre)) & set(h)) / c.prefix
                                                             for pre, h in zip(pres, hidden)]))
                                        for name, pres in prefixes.items()},
                           "recovery_chance": float(np.mean([c.prefix / n for n in unused]))}
    for name, pres in prefixes.items():
        seqs = [s for _, s in with_prefixes(users, cut, cut_mask, pres)]
        out[name] = train_on(seqs)[1]
    return out


def _mean_std(values: list[dict | None], metrics: list[str]) -> dict[str, Any]:
    rows = [v for v in values if v]
    if not rows:
        return {}
    return {**{f"{m}_mean": float(np.mean([r[m] for r in rows])) for m in metrics},
            **{f"{m}_std": float(np.std([r[m] for r in rows])) for m in metrics}}


def run_augment(exp: AugmentExperiment, out: str | Path | None = None) -> dict:
    """Every seed: RSIR (fidelity on and off) and DiffuASR (diffusion and random prefixes); summaries over seeds.
    Through the one runner: each finished (system, seed) is kept in ``<output>.partial.json`` (keyed by the
    experiment's settings but its seed list), so a killed run resumes where it stopped and a run over more
    seeds trains only the new ones."""
    data = load_data(exp.job.data)
    names = ((["rsir", "rsir_no_filter"] + (["rsir_duplicates"] if exp.rsir_control else [])) if exp.rsir else []) \
        + ([{"prefixes": "diffuasr", "oracle": "diffuasr_oracle"}[r] for r in exp.diffuasr_runs]
           if exp.diffuasr is not None else [])

    def run_one(name: str, seed: int) -> dict:
        job = exp.job.model_copy(update={"trainer": exp.job.trainer.model_copy(update={"seed": seed,
                                                                                     "progress": False})})
        if name == "diffuasr":
            r = run_diffuasr(job, exp.diffuasr.model_copy(update={"seed": seed}), data)
        elif name == "diffuasr_oracle":
            r = run_prefix_oracle(job, exp.diffuasr.model_copy(update={"seed": seed}), exp.oracle_fraction, data)
        else:
            r = run_rsir(job, exp.rsir.model_copy(update={"seed": seed, "fidelity": name != "rsir_no_filter"}),
                         data, duplicates=name == "rsir_duplicates")
        last = r["rounds"][-1]["test"] if "rounds" in r else r["diffusion"]["test"] if "diffusion" in r else {}
        if name == "diffuasr_oracle":
            last = r["oracle"]["test"]
        print(f"seed {seed} {name}: " + ", ".join(f"{m} {last[m]:.4f}" for m in exp.metrics if m in last), flush=True)
        return r

    # what a (system, seed) run depends on: everything but the seed list, the output and which systems run, so
    # a run over more seeds (or with the control added) later reuses the runs already done
    runner = Runner(exp, settings_key(exp, exclude=("seeds", "output", "name", "rsir_control")), out)
    by_name = runner.run([(n, n, seed) for seed in exp.seeds for n in names], run_one)
    runs: dict[str, list] = {n: by_name.get(n, []) for n in ("rsir", "rsir_no_filter", "rsir_duplicates", "diffuasr",
                                                             "diffuasr_oracle")}
    summary: dict[str, Any] = {}
    for name in ("rsir", "rsir_no_filter", "rsir_duplicates"):
        if runs[name]:
            n_rounds = len(runs[name][0]["rounds"])
            summary[name] = [{"round": r, **_mean_std([x["rounds"][r]["test"] for x in runs[name]], exp.metrics),
                              "acceptance": (float(np.mean([x["rounds"][r]["acceptance"] for x in runs[name]]))
                                             if r and name != "rsir_duplicates" else None)}
                             for r in range(n_rounds)]
    if runs["diffuasr"]:
        summary["diffuasr"] = {v: {"all": _mean_std([x[v]["test"] for x in runs["diffuasr"]], exp.metrics),
                                   "short_users": _mean_std([x[v]["test_short_users"] for x in runs["diffuasr"]],
                                                            exp.metrics)}
                               for v in ("base", "diffusion", "random_prefix")}
        summary["diffuasr"]["short_users_count"] = runs["diffuasr"][0]["short_users"]
    if runs["diffuasr_oracle"]:
        rs = runs["diffuasr_oracle"]
        summary["diffuasr_oracle"] = {
            **{v: {"all": _mean_std([x[v]["test"] for x in rs], exp.metrics),
                   "cut_users": _mean_std([x[v]["test_cut_users"] for x in rs], exp.metrics)}
               for v in PREFIX_VARIANTS},
            "recovery": {v: float(np.mean([x["recovery"][v] for x in rs])) for v in PREFIX_VARIANTS[1:]},
            "recovery_chance": float(np.mean([x["recovery_chance"] for x in rs])),
            "cut_users_count": rs[0]["cut_users"]}
    for name, rows in summary.items():
        print(name, rows, flush=True)
    path = runner.write({"data": data.name, "summary": summary, "runs": runs},
                        plot=lambda png: plot(summary, exp.metrics[1] if len(exp.metrics) > 1 else exp.metrics[0], png))
    return {"output": str(path), "summary": summary}


PREFIX_VARIANTS = ("base", "oracle", "diffusion", "random_prefix", "guide_nearest")


def plot(summary: dict, metric: str, path: Path) -> None:
    """Bars of the metric: RSIR rounds (with and without fidelity) and DiffuASR variants (all / short users)."""
    plt = pyplot()
    oracle = "diffuasr_oracle" in summary
    fig, axes = plt.subplots(1, 3 if oracle else 2, figsize=(18 if oracle else 12, 4.2))
    if "rsir" in summary:
        rounds = [f"round {r['round']}" for r in summary["rsir"]]
        systems = ("rsir", "rsir_no_filter", "rsir_duplicates")
        series = {k: [r.get(f"{metric}_mean", 0.0) for r in summary[k]] for k in systems if k in summary}
        grouped_bars(axes[0], rounds, series, ylabel=f"test {metric} (mean over seeds)")
        axes[0].set_title("RSIR: successors per round (fidelity filter, none, duplicates control)")
    if "diffuasr" in summary:
        d = summary["diffuasr"]
        grouped_bars(axes[1], ["all users", "short-history users"],
                     {v: [d[v]["all"].get(f"{metric}_mean", 0.0), d[v]["short_users"].get(f"{metric}_mean", 0.0)]
                      for v in ("base", "diffusion", "random_prefix")}, ylabel=f"test {metric} (mean over seeds)")
        axes[1].set_title("DiffuASR: generated vs random prefixes")
    if oracle:
        d = summary["diffuasr_oracle"]
        grouped_bars(axes[2], ["all users", "cut users"],
                     {v: [d[v]["all"].get(f"{metric}_mean", 0.0), d[v]["cut_users"].get(f"{metric}_mean", 0.0)]
                      for v in PREFIX_VARIANTS}, ylabel=f"test {metric} (mean over seeds)")
        axes[2].set_title("Cut users: true first items back (oracle) vs generated")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _load(raw: dict, path: Path) -> AugmentExperiment:
    return validate(AugmentExperiment, raw, path)


KIND = ExperimentKind(load=_load, run=run_augment)
