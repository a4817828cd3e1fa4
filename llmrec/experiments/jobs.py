"""One training job, for every registered model (``llmrec train`` / ``llmrec evaluate`` and the experiment
harness): data -> the family's data view -> model from the registry (its search stage first, if it has one)
-> the one training loop with the family's task -> saved model + JSON result.

A job config is YAML::

    data: {source: synthetic}            # or {source: movielens100k, path: ${LLMREC_DATA}/ml-100k}
    features: null                       # ctr / multitask: null = every typed field of the data set
    knowledge: {kinds: [item, user]}     # ctr / multitask: LLM knowledge vectors as dense features
    model: {name: deepfm, dropout: 0.1}  # any registered model; fields layered over its defaults file
    trainer: {batch_size: 1024, epochs: 20}
    task: null                           # null = the family's task
    output_dir: runs/deepfm

Unknown keys anywhere are errors naming the field. ``--set model.dropout=0.1`` style overrides (the CLI)
are applied on top of the file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, ValidationError, model_validator

from llmrec.config import StrictConfig, validation_message
from llmrec.configfiles import find_config, read_config_file
from llmrec.ctr.features import FeatureEncoder, FeatureSpec
from llmrec.data.registry import DataConfig, load_data
from llmrec.data.schema import RecData
from llmrec.data.views import interaction_view, sequence_view
from llmrec.errors import ConfigError
from llmrec.io import write_json_atomic
from llmrec.metrics import auc
from llmrec.knowledge.job import default_out_dir, knowledge_feature_name, knowledge_specs, knowledge_tables
from llmrec.llm.registry import LLMConfig, model_id_for
from llmrec.models import FAMILIES, MODELS, build_model
from llmrec.models.registry import ModelSpec
from llmrec.train import TASKS, BPRTask, Trainer, TrainerConfig, world
from llmrec.train.export import load_model, save_model


class KnowledgeFeatures(StrictConfig):
    """LLM knowledge vectors (from ``llmrec extract``) added as dense features ``<kind>_knowledge``."""
    dir: str | None = None  # the extraction out_dir; None = where `llmrec extract` writes for ``llm``
    llm: LLMConfig = LLMConfig()  # whose knowledge (only used to find the default out_dir)
    kinds: list[str] = ["item", "user"]
    encoder: str | None = None  # substring of the vector files' encoder id when there are several
    shuffle: list[str] = []  # control: these kinds' vectors permuted across ids (a real gain must vanish)
    shuffle_seed: int = 7

    @model_validator(mode="after")
    def _shuffle_known(self) -> "KnowledgeFeatures":
        extra = sorted(set(self.shuffle) - set(self.kinds))
        if extra:
            raise ValueError(f"shuffle: {extra} are not among kinds {self.kinds}")
        return self


class TrainJobConfig(StrictConfig):
    """A training job: data, features, knowledge, model, trainer, task and output folder."""
    data: DataConfig = DataConfig()
    features: list[FeatureSpec] | None = None  # None: every typed field of the data set
    knowledge: KnowledgeFeatures | None = None
    model: ModelSpec = Field({"name": "deepfm"}, validate_default=True)  # validated into the model's own config
    trainer: TrainerConfig = TrainerConfig()
    task: str | None = None  # None: the model family's task
    output_dir: str = "runs/ctr"

    @property
    def family(self) -> str:
        """The registered family of the job's model."""
        return MODELS.get(self.model.name).family


def load_job_config(path: str | Path, overrides: list[str] | None = None) -> TrainJobConfig:
    """A training job config from a YAML file or a bundled config's name (``deepfm_ml100k``)."""
    path = find_config(path)
    raw = read_config_file(path, overrides)
    try:
        return TrainJobConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{path}: {validation_message(e, '')}") from None


def feature_specs(data: RecData, features: list[FeatureSpec] | None) -> list[FeatureSpec]:
    """The job's features, or every typed field of the data set when none are given; unknown columns are errors."""
    if features is None:
        return [FeatureSpec(name=n, type=t) for n, t in data.fields.items()]
    for f in features:
        if f.type != "dense" and f.name not in data.columns:
            raise ConfigError(f"features.{f.name}: not a column of {data.name} (have {sorted(data.fields)})")
    return features


def knowledge_inputs(knowledge: KnowledgeFeatures | None, data: RecData) -> tuple[list[FeatureSpec], dict]:
    """Dense knowledge feature specs and their tables for a job's ``knowledge`` block (empty without one)."""
    if knowledge is None:
        return [], {}
    k = knowledge
    where = Path(k.dir).expanduser() if k.dir else default_out_dir(data, model_id_for(k.llm))
    tabs = knowledge_tables(where, k.kinds, k.encoder)
    tabs.update({kind: shuffled_table(tabs[kind], k.shuffle_seed) for kind in k.shuffle})
    return knowledge_specs(data, tabs), {knowledge_feature_name(k): t for k, t in tabs.items()}


def shuffled_table(table: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """The same vectors assigned to other ids (a seeded permutation over the sorted ids)."""
    ids = sorted(table)
    perm = np.random.default_rng(seed).permutation(len(ids))
    return {i: table[ids[j]] for i, j in zip(ids, perm)}


@dataclass
class Prepared:
    """A data set in a family's view: what models are built from and the three splits."""
    data: RecData
    context: Any  # FeatureEncoder (impressions) or ItemSpace (interactions, sequences)
    train: Any
    valid: Any
    test: Any
    test_groups: np.ndarray | None = None  # users of the test rows (gAUC)
    test_scenarios: np.ndarray | None = None  # scenario of each test row (per-scenario AUC), if the data has one


def prepare(job: TrainJobConfig, data: RecData | None = None) -> Prepared:
    """Load the data, split it, fit the encoders and build the model for a job (everything but training)."""
    data = data if data is not None else load_data(job.data)
    view = FAMILIES.get(job.family).view
    if view == "interactions":
        space, tr, va, te = interaction_view(data, job.data.split)
        return Prepared(data, space, tr, va, te)
    if view == "sequences":
        space, tr, va, te = sequence_view(data)
        return Prepared(data, space, tr, va, te)
    tr, va, te = data.chronological_split(job.data.split)
    extra_specs, tables = knowledge_inputs(job.knowledge, data)
    enc = FeatureEncoder(feature_specs(data, job.features) + extra_specs).fit(data.take(tr))
    batches = [enc.transform(data.take(rows), label=data.label, dense_tables=tables) for rows in (tr, va, te)]
    return Prepared(data, enc, *batches, test_groups=data.columns[data.user_col][te],
                    test_scenarios=data.columns[data.scenario_col][te] if data.scenario_col else None)


def make_trainer(job: TrainJobConfig, prepared: Prepared) -> Trainer:
    """The ``Trainer`` of a prepared job (its task, checkpoint folder and trainer config)."""
    task = TASKS.get(job.task or FAMILIES.get(job.family).task)()
    if isinstance(task, BPRTask):
        task.n_items = prepared.context.n_items
    return Trainer(job.trainer, task)


def train_prepared(job: TrainJobConfig, p: Prepared, checkpoint_dir: Path | None = None) -> tuple[torch.nn.Module, dict]:
    """Search stage (if the model has one), model, fit, test: the model and its result dict."""
    entry = MODELS.get(job.model.name)
    config = job.model
    torch.manual_seed(job.trainer.seed)  # the model is built right after its search stage, if it has one
    if entry.prepare is not None:
        config = entry.prepare(p.context, config, p.train, p.valid, job.trainer)
    model = build_model(p.context, config)
    trainer = make_trainer(job, p)
    fit = trainer.fit(model, p.train, p.valid, checkpoint_dir=checkpoint_dir)
    test = trainer.evaluate(model, p.test, groups=p.test_groups)
    by_scenario = None
    if p.test_scenarios is not None and trainer.task.name == "pointwise":
        pred, y, scen = trainer.predict(model, p.test), p.test.label.numpy(), p.test_scenarios
        by_scenario = {str(s): {"auc": auc(y[scen == s], pred[scen == s])} for s in sorted(set(scen))}
    result = {
        "data": p.data.name, "rows": {"train": len(p.train), "valid": len(p.valid), "test": len(p.test)},
        "model": config.model_dump(mode="json"), "family": entry.family, "task": trainer.task.name,
        "primary_metric": trainer.task.primary, "trainer": job.trainer.model_dump(),
        "best_epoch": fit.best_epoch, "valid": fit.best_valid, "test": test, "test_by_scenario": by_scenario,
        "history": fit.history, "train_samples_per_second": fit.samples_per_second,
        "resumed_from_epoch": fit.resumed_from_epoch,
        "parameters": int(sum(q.numel() for q in model.parameters())),
    }
    return model, result


def run_training(job: TrainJobConfig) -> dict:
    """Train a job end to end (resumable), save the model and write ``result.json``; returns the result."""
    p = prepare(job)
    out = Path(job.output_dir)
    model, result = train_prepared(job, p, checkpoint_dir=out / "checkpoint")
    if world()[0] == 0:
        save_model(out / "model", model, p.context)
        write_json_atomic(out / "result.json", result)
    return result


def evaluate_saved(model_dir: str | Path, job: TrainJobConfig) -> dict:
    """Evaluate a saved model on the job's test split."""
    model, context = load_model(model_dir)
    job = job.model_copy(update={"model": model.config})
    p = prepare(job)
    if isinstance(context, FeatureEncoder):  # the saved encoder, not one refitted
        _, _, te = p.data.chronological_split(job.data.split)
        p.test = context.transform(p.data.take(te), label=p.data.label,
                                   dense_tables=knowledge_inputs(job.knowledge, p.data)[1])
    metrics = make_trainer(job, p).evaluate(model, p.test, groups=p.test_groups)
    return {"model_dir": str(model_dir), "data": p.data.name, "test": metrics}
