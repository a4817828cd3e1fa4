"""The performance-law experiment (kind ``performance_law``; ``configs/experiments/performance_law.yaml``):
a grid of SASRec sizes (layers x width) trained on fractions of the training sequences; the law
metric(N, D) of ``llmrec.scaling`` fitted on part of the grid with D = D' (tokens x ApEn) and, for comparison,
with D = raw tokens; MAPE on the held-out grid points; a fitted-vs-measured plot; the recommended size for
the full data. Valid / test users are the same for every point (only training rows are subsampled)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from scipy.stats import spearmanr

from llmrec.config import StrictConfig, deep_merge
from llmrec.data.views import user_sequences
from llmrec.train_job import TrainJobConfig, prepare, train_prepared
from llmrec.experiments.kinds import ExperimentKind, validate
from llmrec.experiments.runner import Runner
from llmrec.io import settings_key
from llmrec.results import pyplot, result_path
from llmrec.scaling import PerformanceLaw, data_proxy, mape, recommend_size


class PerformanceLawExperiment(StrictConfig):
    """The grid (layers, widths, data fractions), the job it varies, the metric and the held-out share."""
    name: str
    output: str | None = None
    job: TrainJobConfig
    layers: list[int] = [1, 2, 4]
    widths: list[int] = [16, 32, 64]
    fractions: list[float] = [0.25, 0.5, 1.0]
    # data sets of different quality: each entry is merged into ``job.data`` (e.g. the synthetic world's
    # ``sequences: {follow: 0.9}``); the grid runs on every one, so D' and raw tokens can disagree
    data_variants: list[dict[str, Any]] = [{}]
    metric: str = "hit@10"
    holdout_every: int = Field(3, ge=2)  # 1 / k of the grid points (a seeded random choice) is held out
    # ApEn's alphabet: an item attribute column (a user rarely repeats an item, and with no repeated window
    # exact-match ApEn is log((N-m)/(N-m+1)) < 0 whatever the sequence) or None for the item ids themselves
    apen_symbol: str | None = "category"
    # "sequence": mean per-user ApEn; "pooled": every user's windows together (the next-item entropy across
    # users, meaningful for item ids that a user never repeats)
    apen_scope: Literal["sequence", "pooled"] = "sequence"
    seed: int = 0
    # training-token budgets to recommend a (layers, width) for, per data variant: D' = budget x that variant's
    # full-data ApEn (with the variant's own predictability; pooled ApEn still grows with the data, so
    # for a budget far from the measured sizes this is the law's extrapolation)
    budgets: list[int] = Field(default_factory=list)
    # training seeds besides job.trainer.seed that every grid point is trained with again: how far two runs of
    # the same point lie apart is the error no law can beat on this data (``noise`` in the result)
    seed_repeats: list[int] = Field(default_factory=list)


def grid_points(exp: PerformanceLawExperiment, base: TrainJobConfig, variant: int, runner: Runner) -> list[dict]:
    """Every (fraction, layers, width) of the grid trained on one data variant: size, data measures, metric.
    Each trained point is kept by the runner, so a killed run resumes and a refit with other held-out
    settings trains nothing."""
    p = prepare(base)
    space, by_user, _ = user_sequences(p.data, base.sequence)
    symbol = symbol_map(p.data, space, exp.apen_symbol)
    train_seqs = {space.users[u]: [symbol[i] for i in ids[:-2]] for u, ids in by_user.items()}
    rng = np.random.default_rng(exp.seed)
    order = rng.permutation(len(p.train))
    points = []
    for frac in exp.fractions:
        keep = torch.from_numpy(np.sort(order[: max(1, int(round(frac * len(order))))]))
        sub = p.train.slice(keep)
        proxy = data_proxy([train_seqs[int(u)] for u in sub.users], scope=exp.apen_scope)
        if proxy.apen <= 0:
            raise ValueError(f"apen_symbol: mean ApEn {proxy.apen:.4f} <= 0 over {exp.apen_symbol or 'item ids'} "
                             "(no repeated windows); use a coarser item attribute")
        for layers in exp.layers:
            for width in exp.widths:
                def train_point(layers=layers, width=width, sub=sub, proxy=proxy, frac=frac, seed=None) -> dict:
                    model_cfg = {**base.model.model_dump(), "n_layers": layers, "hidden_size": width,
                                 "inner_size": 4 * width, "n_heads": 1 if width < 32 else 2}
                    job = TrainJobConfig.model_validate({**base.model_dump(), "model": model_cfg})
                    if seed is not None:
                        job = job.model_copy(update={"trainer": job.trainer.model_copy(update={"seed": seed})})
                    model, r = train_prepared(job, replace(p, train=sub))
                    n = int(sum(q.numel() for q in model.parameters()))
                    print(f"{exp.metric} {r['test'][exp.metric]:.4f} (N {n}, D' {proxy.d_prime:.0f})", flush=True)
                    return {"fraction": frac, "layers": layers, "width": width, "parameters": n,
                            "tokens": proxy.tokens, "apen": proxy.apen, "d_prime": proxy.d_prime,
                            "metric": r["test"][exp.metric], "valid": r["valid"][exp.metric]}

                # a point's key names its own data variant's settings, not its place in the list
                tag = {"label": "point", "data": exp.data_variants[variant], "fraction": frac, "layers": layers,
                       "width": width}
                where = f"data {variant} fraction {frac} layers {layers} width {width}"
                pt = runner.cached(tag, train_point, where)
                repeats = [runner.cached({**tag, "seed": r}, lambda r=r, f=train_point: f(seed=r),
                                         f"{where} seed {r}")["metric"] for r in exp.seed_repeats]
                points.append({"data_variant": variant, **pt, "test_users": len(p.test),
                               **({"repeats": repeats} if repeats else {})})
    return points


def run_law(exp: PerformanceLawExperiment, out: str | Path | None = None) -> dict:
    """Train the grid on every data variant, fit the law with D' and with raw tokens on the fitting points,
    score the held-out ones; Spearman(ApEn, metric) across the data subsets of the largest model."""
    # one resume file per experiment, whatever --out says, so refits of other slices reuse the trained points
    runner = Runner(exp, grid_key(exp), out, resume_at=result_path(exp.name, exp.output, None))
    points = []
    for k, override in enumerate(exp.data_variants):
        job = TrainJobConfig.model_validate({**exp.job.model_dump(),
                                             "data": deep_merge(exp.job.data.model_dump(), override)})
        points += grid_points(exp, job, k, runner)
    held = np.zeros(len(points), dtype=bool)
    held[np.random.default_rng(exp.seed + 1).permutation(len(points))[: len(points) // exp.holdout_every]] = True
    y = np.array([pt["metric"] for pt in points])
    n = np.array([pt["parameters"] for pt in points], float)
    fits = {}

    def fit_scored(label: str, measure: str, target: np.ndarray) -> None:
        d = np.array([pt[measure] for pt in points], float)
        law = PerformanceLaw.fit(n[~held], d[~held], target[~held], measure)
        pred = law.predict(n, d)
        fits[label] = {"params": law.params, "mape_heldout": mape(pred[held], target[held]),
                       "mape_fit": mape(pred[~held], target[~held]), "predicted": pred.tolist()}
        print(f"law {label}: held-out MAPE {fits[label]['mape_heldout']:.2f}%", flush=True)

    for measure in ("d_prime", "tokens"):
        fit_scored(measure, measure, y)
    if exp.seed_repeats:  # the same law on each point's mean over its runs (less training noise)
        fit_scored("d_prime_seed_mean", "d_prime", np.array([np.mean([pt["metric"], *pt["repeats"]]) for pt in points]))
    noise = measurement_noise(points, held, exp.metric)
    if noise:
        print("measurement noise on the held-out points: " + ", ".join(f"{k} {v:.2f}%" for k, v in noise.items()),
              flush=True)
    best_law = PerformanceLaw(tuple(fits["d_prime"]["params"]), "d_prime")
    full = max(pt["d_prime"] for pt in points)
    sizes = {(pt["layers"], pt["width"]): pt["parameters"] for pt in points}
    (layers, width), value = recommend_size(best_law, full, sizes)
    for_budgets = []
    for k in range(len(exp.data_variants)):
        apen = max((pt for pt in points if pt["data_variant"] == k), key=lambda pt: pt["tokens"])["apen"]
        for budget in exp.budgets:
            (bl, bw), pred = recommend_size(best_law, budget * apen, sizes)
            for_budgets.append({"data_variant": k, "tokens": budget, "d_prime": budget * apen, "layers": bl,
                                "width": bw, "predicted": pred})
            print(f"data variant {k}, {budget} training tokens: {bl} layers x width {bw} "
                  f"(predicted {exp.metric} {pred:.4f})", flush=True)
    subsets = {}
    top = (max(exp.layers), max(exp.widths))
    for pt in points:  # the largest model on each (data variant, fraction)
        if (pt["layers"], pt["width"]) == top:
            subsets[(pt["data_variant"], pt["fraction"])] = (pt["apen"], pt["metric"])
    apen_rho = (float(spearmanr([a for a, _ in subsets.values()], [m for _, m in subsets.values()]).statistic)
                if len(subsets) > 2 else None)
    print(f"Spearman(ApEn, {exp.metric}) over {len(subsets)} data subsets: {apen_rho}", flush=True)
    payload = {"data": [str(v) for v in exp.data_variants], "metric": exp.metric, "apen_spearman": apen_rho,
               "points": points, "heldout": held.tolist(), "fits": fits, "noise": noise,
               "recommended": {"layers": layers, "width": width, "predicted": value, "for_d_prime": full},
               "recommended_for_budgets": for_budgets}
    path = runner.write(payload, plot=lambda png: plot(points, fits, held, exp.metric, png),
                        seeds=[exp.job.trainer.seed], config=exp.model_dump(mode="json"))
    return {"output": str(path), "fits": fits}


def measurement_noise(points: list[dict], held: np.ndarray, metric: str) -> dict[str, float]:
    """What error a law that knew each point's expected metric would still make on the held-out points, in
    percent of the metric: ``test_sampling`` (a hit / recall rate over n test users is a binomial proportion:
    the expected |error| is sqrt(2 / pi) sqrt(y (1 - y) / n)) and, where the points were trained again under
    other seeds, ``between_seeds`` (the MAPE of those runs against the first) and ``seed_floor`` (that over
    sqrt(2): one run's own share of it). The law is also fitted on the runs' means then (``d_prime_seed_mean``)."""
    out: dict[str, float] = {}
    rows = [pt for pt, h in zip(points, held) if h]
    if metric.split("@")[0] in ("hit", "recall") and rows and all("test_users" in pt for pt in rows):
        out["test_sampling"] = float(np.mean([np.sqrt(2 / np.pi) * np.sqrt(pt["metric"] * (1 - pt["metric"])
                                                                          / pt["test_users"]) / pt["metric"]
                                              for pt in rows]) * 100)
    pairs = [(r, pt["metric"]) for pt in rows for r in pt.get("repeats", [])]
    if pairs:
        out["between_seeds"] = mape([r for r, _ in pairs], [m for _, m in pairs])
        out["seed_floor"] = out["between_seeds"] / np.sqrt(2)
    return out


def grid_key(exp: PerformanceLawExperiment) -> str:
    """What every trained point depends on (not the held-out choice or the fit, and not which data variants
    are listed: a point's key names its own variant): the job, ApEn settings and the data-fraction seed."""
    return settings_key(exp, fields=("job", "metric", "apen_symbol", "apen_scope", "seed"))

def symbol_map(data, space, column: str | None) -> dict[int, object]:
    """Dense item id -> the symbol ApEn reads: the item's value of ``column`` (constant per item), or the id."""
    if column is None:
        return {i: i for i in space.items.values()}
    if column not in data.columns:
        raise ValueError(f"apen_symbol: {column!r} is not a column of {data.name} (have {sorted(data.columns)})")
    first: dict[str, object] = {}
    for item, value in zip(data.columns[data.item_col], data.columns[column]):
        first.setdefault(str(item), value)
    return {idx: first[item] for item, idx in space.items.items()}


def plot(points: list[dict], fits: dict, held: np.ndarray, metric: str, path: Path) -> None:
    """Fitted vs measured metric for both data measures, held-out points marked."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    y = np.array([pt["metric"] for pt in points])
    for ax, (measure, f) in zip(axes, fits.items()):
        pred = np.array(f["predicted"])
        ax.scatter(y[~held], pred[~held], label="fitted points")
        ax.scatter(y[held], pred[held], marker="x", color="tab:red", label="held-out points")
        lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], color="gray", linewidth=1)
        ax.set_xlabel(f"measured test {metric}")
        ax.set_ylabel(f"law's {metric}")
        ax.set_title(f"D = {measure}: held-out MAPE {f['mape_heldout']:.1f}%")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _load(raw: dict, path: Path) -> PerformanceLawExperiment:
    return validate(PerformanceLawExperiment, raw, path)


KIND = ExperimentKind(load=_load, run=run_law)
