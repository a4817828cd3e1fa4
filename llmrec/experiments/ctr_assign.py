"""Streaming id assignment (kind ``ctr_assign``; ``configs/experiments/ctr_assign.yaml``): AutoAssign+
(papers.md §20, ``llmrec.ctr.assign``) against giving every id its own randomly started row.

Chunks are days of a shard set, in order. For chunk t = 0 .. n-2: the assigner decides the ids of chunk t
(new rows appended to the model's table, started from their slot's row or at random, evicted rows freed),
the model trains one pass over chunk t (a fresh Adam per chunk, same for every variant), then is tested on
chunk t + 1 (test-then-train): AUC overall and on the rows whose id in ``rare_fields`` had at most
``rare_max`` earlier occurrences (new and low-frequency ids), and the rows in use. The per-row log loss of
chunk t + 1 is then the reward of chunk t's decisions. Reported: means over chunks ``report_from`` onward."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, ValidationError, model_validator

from llmrec.config import StrictConfig, deep_merge, validation_message
from llmrec.ctr.assign import AssignConfig, IdAssigner
from llmrec.ctr.ids import IdEncoder, IdEncoderConfig
from llmrec.experiments.ctr_scale import ShardSource, shard_set
from llmrec.errors import ConfigError
from llmrec.experiments.runner import Runner
from llmrec.experiments.kinds import ExperimentKind, validate
from llmrec.io import settings_key
from llmrec.models import build_model
from llmrec.results import pyplot
from llmrec.train import TrainerConfig
from llmrec.train.assign import stream_assigned


class AssignVariant(StrictConfig):
    """One assignment method: a label and its ``AssignConfig`` overrides."""
    label: str
    assign: dict[str, Any] = {}


class AssignExperiment(StrictConfig):
    """Data (days = chunks), model, trainer, the methods, and what counts as a rare id."""
    name: str
    output: str | None = None
    seeds: list[int] = [2021, 2022, 2023]
    data: ShardSource
    chunks: list[int]
    model: dict[str, Any] = {"name": "deepfm"}
    trainer: TrainerConfig = TrainerConfig(epochs=1)
    assign: AssignConfig = AssignConfig()
    variants: list[AssignVariant]
    rare_fields: list[str] = ["C3"]
    rare_max: int = Field(5, ge=0)
    report_from: int = Field(1, ge=0)  # chunk index (among the tested ones) the means start at

    @model_validator(mode="after")
    def _check(self) -> "AssignExperiment":
        if len(self.chunks) < 2:
            raise ValueError(f"chunks: need at least 2 (train on one, test on the next), got {self.chunks}")
        if self.report_from >= len(self.chunks) - 1:
            raise ValueError(f"report_from: {self.report_from} leaves no tested chunk of {len(self.chunks) - 1}")
        labels = [v.label for v in self.variants]
        if not labels or len(set(labels)) != len(labels):
            raise ValueError(f"variants: need distinct labels, got {labels}")
        for i, v in enumerate(self.variants):
            try:
                AssignConfig(**deep_merge(self.assign.model_dump(), v.assign))
            except ValidationError as e:
                raise ValueError(validation_message(e, f"variants.{i}.assign")) from None
        return self


def run_variant(exp: AssignExperiment, s, v: AssignVariant, seed: int) -> list[dict]:
    """Every chunk of one method at one seed (``llmrec.train.assign.stream_assigned``)."""
    cfg = AssignConfig(**deep_merge(exp.assign.model_dump(), {**v.assign, "seed": seed}))
    tc = TrainerConfig(**deep_merge(exp.trainer.model_dump(), {"seed": seed}))
    missing = sorted(set(exp.chunks) - set(s.days))
    if missing:
        raise ConfigError(f"chunks: days {missing} are not in the shard set {s.root} (days {s.days})")
    bad = [f for f in exp.rare_fields if f not in s.categorical]
    if bad:
        raise ConfigError(f"rare_fields: {bad} are not categorical fields of the data ({s.categorical})")
    numbers = IdEncoder(IdEncoderConfig(mode="hash", table_rows=len(s.categorical)), s.categorical,
                        s.numerical, s.label).fit(s.select([exp.chunks[0]]), progress=False)
    assigner = IdAssigner(cfg, numbers, len(exp.chunks))
    torch.manual_seed(seed)
    model = build_model(assigner, exp.model)
    out = stream_assigned(model, assigner, tc, lambda t: s.select([exp.chunks[t]]).read_all(), len(exp.chunks),
                          exp.rare_fields, exp.rare_max, label=f"{v.label} seed {seed}")
    return [{**r, "chunk": exp.chunks[r["chunk"]]} for r in out]  # the tested chunk's day


def summarize(exp: AssignExperiment, runs: dict[str, list[list[dict]]]) -> dict:
    """Per method, means over seeds of the per-chunk means from ``report_from``; rows relative to the first
    variant (the baseline)."""
    out = {}
    for label, seeds in runs.items():
        per = lambda k: [np.mean([c[k] for c in run[exp.report_from:] if c.get(k) is not None]) for run in seeds]
        out[label] = {"auc_mean": float(np.mean(per("auc"))), "auc_std": float(np.std(per("auc"))),
                      "auc_rare_mean": float(np.mean(per("auc_rare"))), "auc_rare_std": float(np.std(per("auc_rare"))),
                      "rows_in_use_mean": float(np.mean(per("rows_in_use")))}
    base = exp.variants[0].label
    for label in out:
        out[label]["rows_vs_baseline"] = out[label]["rows_in_use_mean"] / out[base]["rows_in_use_mean"]
        out[label]["auc_vs_baseline"] = out[label]["auc_mean"] - out[base]["auc_mean"]
        out[label]["auc_rare_vs_baseline"] = out[label]["auc_rare_mean"] - out[base]["auc_rare_mean"]
    return out


def plot(runs: dict[str, list[list[dict]]], path: Path) -> None:
    """AUC on rare-id rows and rows in use per chunk (seed means), per method."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    for label, seeds in runs.items():
        chunks = [c["chunk"] for c in seeds[0]]
        for ax, key in zip(axes, ("auc", "auc_rare", "rows_in_use")):
            vals = np.mean([[c[key] if c.get(key) is not None else np.nan for c in run] for run in seeds], axis=0)
            ax.plot(chunks, vals, marker="o", label=label)
            ax.set_title(key)
            ax.set_xlabel("test chunk (day)")
    axes[2].set_ylim(bottom=0)
    axes[0].legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def run_ctr_assign(exp: AssignExperiment, out: str | Path | None = None) -> dict:
    """Every method and seed (resumable, through the one runner); writes the result JSON and plot."""
    s = shard_set(exp.data)
    runner = Runner(exp, settings_key(exp, exclude=("name", "output", "seeds", "variants")), out)
    runs = runner.run([(v.label, v, seed) for v in exp.variants for seed in exp.seeds],
                      lambda v, seed: run_variant(exp, s, v, seed))
    summary = summarize(exp, runs)
    path = runner.write({"data": {"root": str(s.root), "source": s.source}, "summary": summary, "runs": runs},
                        plot=lambda png: plot(runs, png))
    return {"output": str(path), "summary": summary}


def _load(raw: dict, path: Path) -> AssignExperiment:
    return validate(AssignExperiment, raw, path)


KIND = ExperimentKind(load=_load, run=run_ctr_assign)
