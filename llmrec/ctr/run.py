"""One training job runner for every CTR model (used by ``llmrec train``, ``llmrec evaluate`` and the
benchmarks): data -> encoders fitted on train -> model -> Trainer -> saved model + JSON result."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml

from llmrec.config import StrictConfig
from llmrec.ctr.export import load_model, save_model
from llmrec.ctr.features import FeatureEncoder, FeatureSpec
from llmrec.ctr.models import ModelConfig, build_model
from llmrec.ctr.trainer import Trainer, TrainerConfig, _world
from llmrec.data.registry import DataConfig, load_data
from llmrec.data.schema import RecData


class KnowledgeFeatures(StrictConfig):
    """LLM knowledge vectors (from ``llmrec extract``) added as dense features ``<kind>_knowledge``."""
    dir: str | None = None  # the extraction out_dir; None = where `llmrec extract` writes for the default LLM
    kinds: list[str] = ["item", "user"]
    encoder: str | None = None  # substring of the vector files' encoder id when there are several


class TrainJobConfig(StrictConfig):
    data: DataConfig = DataConfig()
    features: list[FeatureSpec] | None = None  # None: every typed field of the data set
    knowledge: KnowledgeFeatures | None = None
    model: ModelConfig = ModelConfig()
    trainer: TrainerConfig = TrainerConfig()
    output_dir: str = "runs/ctr"


def load_job_config(path: str | Path) -> TrainJobConfig:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the config must be a mapping")
    return TrainJobConfig.model_validate(raw)


def feature_specs(data: RecData, features: list[FeatureSpec] | None) -> list[FeatureSpec]:
    if features is None:
        return [FeatureSpec(name=n, type=t) for n, t in data.fields.items()]
    for f in features:
        if f.type != "dense" and f.name not in data.columns:
            raise KeyError(f"features.{f.name}: not a column of {data.name} (have {sorted(data.fields)})")
    return features


def knowledge_inputs(job: TrainJobConfig, data: RecData) -> tuple[list[FeatureSpec], dict]:
    if job.knowledge is None:
        return [], {}
    from llmrec.knowledge.job import default_out_dir, knowledge_feature_name, knowledge_specs, knowledge_tables
    from llmrec.llm.registry import LLMConfig, model_id_for

    k = job.knowledge
    where = Path(k.dir).expanduser() if k.dir else default_out_dir(data, model_id_for(LLMConfig()))
    tabs = knowledge_tables(where, k.kinds, k.encoder)
    return knowledge_specs(data, tabs), {knowledge_feature_name(k): t for k, t in tabs.items()}


def prepare(job: TrainJobConfig):
    data = load_data(job.data)
    tr, va, te = data.chronological_split(job.data.split)
    extra_specs, tables = knowledge_inputs(job, data)
    enc = FeatureEncoder(feature_specs(data, job.features) + extra_specs).fit(data.take(tr))
    batches = [enc.transform(data.take(rows), label=data.label, dense_tables=tables) for rows in (tr, va, te)]
    groups = data.columns[data.user_col][te]
    return data, enc, batches, groups


def run_training(job: TrainJobConfig) -> dict:
    data, enc, (train, valid, test), groups = prepare(job)
    torch.manual_seed(job.trainer.seed)
    model = build_model(enc, job.model)
    out = Path(job.output_dir)
    trainer = Trainer(job.trainer)
    fit = trainer.fit(model, train, valid, checkpoint_dir=out / "checkpoint")
    test_metrics = trainer.evaluate(model, test, groups=groups)
    result = {
        "data": data.name, "rows": {"train": len(train), "valid": len(valid), "test": len(test)},
        "model": job.model.model_dump(), "trainer": job.trainer.model_dump(),
        "best_epoch": fit.best_epoch, "valid": fit.best_valid, "test": test_metrics,
        "history": fit.history, "train_samples_per_second": fit.samples_per_second,
        "resumed_from_epoch": fit.resumed_from_epoch,
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }
    if _world()[0] == 0:
        save_model(out / "model", model, enc)
        (out / "result.json").write_text(json.dumps(result, indent=2, default=float))
    return result


def evaluate_saved(model_dir: str | Path, job: TrainJobConfig) -> dict:
    model, enc = load_model(model_dir)
    data = load_data(job.data)
    _, _, te = data.chronological_split(job.data.split)
    test = enc.transform(data.take(te), label=data.label, dense_tables=knowledge_inputs(job, data)[1])
    metrics = Trainer(job.trainer).evaluate(model, test, groups=data.columns[data.user_col][te])
    return {"model_dir": str(model_dir), "data": data.name, "test": metrics,
            "positive_rate": float(np.mean(test.label.numpy()))}
