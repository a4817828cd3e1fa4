"""Day-by-day CTR training (kind ``ctr_incremental``; ``configs/experiments/ctr_incremental.yaml``): IncCTR
(papers.md §19) against batch retraining and naive fine-tuning, tested on the next day.

Protocol, for every test day t in ``test_days`` (days in time order; each method sees only days < t):

- ``batch``: a new encoder (vocab, fitted on the window) and a new model trained from scratch on the last
  ``window`` days [t - window, t - 1];
- ``finetune``: the method's previous model (warm start; its encoder fixed since the base model, new ids stay
  out-of-vocabulary) trained on day t - 1 only;
- ``incctr``: warm start as ``finetune`` plus IncCTR's feature module (ids of day t - 1 seen ``min_count``
  times get new rows, started from the OOV row they used: ``IdEncoder.extend`` + ``FieldEmbedding.grow``),
  knowledge distillation from the previous model (``DistillTask``, weight ``kd_weight``) and a reservoir of
  past rows (``replay`` x the day's rows, a uniform sample of every earlier day) mixed into the day's data.

The warm-started methods start from a base model trained like ``batch`` for the first test day. Every
training is ``trainer.epochs`` passes (one, as is usual for CTR streams) over its rows; time is the
trainer's training seconds plus the encoder work of the method (fitting, extending). Test: AUC / logloss on
day t, overall and on rows with a new id (an id of a field not seen in any earlier day)."""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, model_validator

from llmrec.config import StrictConfig, deep_merge
from llmrec.ctr.ids import IdEncoder, IdEncoderConfig
from llmrec.ctr.layers import FieldEmbedding
from llmrec.data.shards import ShardSet
from llmrec.experiments.ctr_scale import ShardSource, shard_set
from llmrec.experiments.kinds import ExperimentKind, validate
from llmrec.experiments.runner import Runner
from llmrec.io import settings_key
from llmrec.metrics import auc, logloss
from llmrec.models import build_model
from llmrec.results import pyplot
from llmrec.train import PointwiseTask, Trainer, TrainerConfig
from llmrec.train.incctr import IncCTRConfig, IncCTRUpdater, fit_rows

METHODS = ("batch", "finetune", "incctr")


class IncrementalCTRExperiment(StrictConfig):
    """Data (days), encoder, model, trainer and IncCTR's settings."""
    name: str
    output: str | None = None
    seeds: list[int] = [2021, 2022, 2023]
    data: ShardSource
    test_days: list[int]
    window: int = Field(5, ge=1)
    encoder: IdEncoderConfig = IdEncoderConfig()
    model: dict[str, Any] = {"name": "deepfm"}
    trainer: TrainerConfig = TrainerConfig(epochs=1)
    kd_weight: float = Field(0.5, ge=0)
    replay: float = Field(0.1, ge=0, le=1)
    new_row_init: str = "oov"
    methods: list[str] = list(METHODS)
    valid_rows: int = Field(20_000, ge=1)  # the trainer's validation: the last rows of the training data

    @model_validator(mode="after")
    def _days(self) -> "IncrementalCTRExperiment":
        if sorted(self.test_days) != self.test_days or not self.test_days:
            raise ValueError("test_days: give the test days in increasing order")
        if self.test_days[0] - self.window < 0:
            raise ValueError(f"window: {self.window} days before the first test day {self.test_days[0]} "
                             f"reach before day 0")
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ValueError(f"methods: {bad} not in {list(METHODS)}")
        if self.encoder.mode != "vocab":
            raise ValueError("encoder.mode: IncCTR's new-id rows need 'vocab'")
        return self


def _rows(s: ShardSet, days: list[int]) -> dict[str, np.ndarray]:
    return s.select(days).read_all()


def _test(model, enc: IdEncoder, cols: dict[str, np.ndarray], new_mask: np.ndarray, tc: TrainerConfig) -> dict:
    b = enc.transform(cols)
    p = PointwiseTask().predict(model, b, Trainer(tc))
    y = b.label.numpy()
    out = {"auc": auc(y, p), "logloss": logloss(y, p), "new_id_rows": int(new_mask.sum())}
    if new_mask.sum() and len(np.unique(y[new_mask])) == 2:
        out["auc_new_ids"] = auc(y[new_mask], p[new_mask])
    return out


def run_seed(exp: IncrementalCTRExperiment, s: ShardSet, seed: int) -> dict[str, list[dict]]:
    """Every method over every test day for one seed: batch retraining, and the warm-started methods as
    ``IncCTRUpdater``s (fine-tuning: no new rows, no distillation, no replay)."""
    tc = TrainerConfig(**deep_merge(exp.trainer.model_dump(), {"seed": seed}))
    out: dict[str, list[dict]] = {m: [] for m in exp.methods}
    first = exp.test_days[0]
    seen_ids: dict[str, np.ndarray] = {f: np.unique(_rows(s, list(range(first - 1)))[f]) for f in s.categorical}
    settings = {"incctr": IncCTRConfig(kd_weight=exp.kd_weight, replay=exp.replay, new_row_init=exp.new_row_init,
                                       valid_rows=exp.valid_rows),
                "finetune": IncCTRConfig(kd_weight=0.0, replay=0.0, grow_ids=False, valid_rows=exp.valid_rows)}
    updaters: dict[str, IncCTRUpdater] = {}

    def fresh(days: list[int]) -> tuple:
        t0 = time.perf_counter()
        enc = IdEncoder(exp.encoder, s.categorical, s.numerical, s.label).fit(s.select(days), progress=False)
        data = enc.transform(_rows(s, days))
        prep = time.perf_counter() - t0
        torch.manual_seed(seed)
        model = build_model(enc, exp.model)
        return model, enc, prep + fit_rows(model, data, tc, exp.valid_rows)

    for t in exp.test_days:
        test_cols = _rows(s, [t])
        new_mask = np.zeros(len(test_cols["label"]), bool)
        for f in s.categorical:
            new_mask |= ~np.isin(test_cols[f], seen_ids[f])
        if "batch" in exp.methods:
            model, enc, secs = fresh(list(range(t - exp.window, t)))
            out["batch"].append({"day": t, "seconds": secs, **_test(model, enc, test_cols, new_mask, tc)})
        day = t - 1
        day_cols = _rows(s, [day])
        warm = [m for m in ("finetune", "incctr") if m in exp.methods]
        if warm and not updaters:  # the base model (one for both): trained like batch on the window before
            base_model, base_enc, _ = fresh(list(range(max(0, first - 1 - exp.window), first - 1)))
            size = int(exp.replay * s.select([first - 1]).rows)
            for m in warm:
                updaters[m] = IncCTRUpdater(copy.deepcopy(base_model), copy.deepcopy(base_enc), tc, settings[m], seed)
                for d in range(first - 1):
                    updaters[m].observe(_rows(s, [d]), size=size)
        for m in warm:
            u = updaters[m]
            secs = u.update(day_cols, s.select([day]))
            out[m].append({"day": t, "seconds": secs, **_test(u.model, u.encoder, test_cols, new_mask, tc)})
        for f in s.categorical:
            seen_ids[f] = np.union1d(seen_ids[f], day_cols[f])
        print(f"seed {seed} day {t}: " + ", ".join(f"{m} {out[m][-1]['auc']:.4f} ({out[m][-1]['seconds']:.0f}s)"
                                                    for m in exp.methods), flush=True)
    return out


def summarize(runs: list[dict[str, list[dict]]], methods: list[str]) -> dict:
    """Per method: mean over seeds of the mean next-day AUC, its std over seeds, mean seconds per day."""
    out = {}
    for m in methods:
        per_seed = [np.mean([r["auc"] for r in run[m]]) for run in runs]
        new = [np.mean([r["auc_new_ids"] for r in run[m] if "auc_new_ids" in r]) for run in runs]
        secs = [np.mean([r["seconds"] for r in run[m]]) for run in runs]
        out[m] = {"auc_mean": float(np.mean(per_seed)), "auc_std": float(np.std(per_seed)),
                  "auc_new_ids_mean": float(np.mean(new)), "seconds_per_day": float(np.mean(secs))}
    if "batch" in out:
        for m in methods:
            out[m]["time_vs_batch"] = out[m]["seconds_per_day"] / out["batch"]["seconds_per_day"]
            out[m]["auc_vs_batch"] = out[m]["auc_mean"] - out["batch"]["auc_mean"]
    return out


def plot(runs: list[dict[str, list[dict]]], summary: dict, methods: list[str], path: Path) -> None:
    """Next-day AUC per test day (mean over seeds) and seconds per day, per method."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for m in methods:
        days = [r["day"] for r in runs[0][m]]
        aucs = np.mean([[r["auc"] for r in run[m]] for run in runs], axis=0)
        axes[0].plot(days, aucs, marker="o", label=f"{m} ({summary[m]['auc_mean']:.4f})")
    axes[0].set_xlabel("test day")
    axes[0].set_ylabel("next-day AUC")
    axes[0].legend(fontsize=8)
    secs = [summary[m]["seconds_per_day"] for m in methods]
    axes[1].bar(methods, secs)
    axes[1].set_ylabel("training seconds per day")
    axes[1].set_ylim(bottom=0)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def run_ctr_incremental(exp: IncrementalCTRExperiment, out: str | Path | None = None) -> dict:
    """Every seed of the day-by-day comparison (resumable per seed, through the one runner); writes the result
    JSON and plot."""
    s = shard_set(exp.data)
    runner = Runner(exp, settings_key(exp, exclude=("name", "output", "seeds")), out)
    runs = runner.run([("seed", None, seed) for seed in exp.seeds], lambda _, seed: run_seed(exp, s, seed))["seed"]
    summary = summarize(runs, exp.methods)
    path = runner.write({"data": {"root": str(s.root), "source": s.source}, "summary": summary, "runs": runs},
                        plot=lambda png: plot(runs, summary, exp.methods, png))
    return {"output": str(path), "summary": summary}


def _load(raw: dict, path: Path) -> IncrementalCTRExperiment:
    return validate(IncrementalCTRExperiment, raw, path)


KIND = ExperimentKind(load=_load, run=run_ctr_incremental)
