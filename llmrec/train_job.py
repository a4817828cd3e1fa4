"""One training job, for every registered model (``llmrec train`` / ``llmrec evaluate`` and the experiment
harness): data -> the family's data view -> model from the registry (its search stage first, if it has one)
-> the one training loop with the family's task -> saved model + JSON result.

A job config is YAML::

    data: {source: synthetic}            # or {source: movielens100k, path: ${LLMREC_DATA}/ml-100k}
    features: null                       # ctr / multitask: null = every typed field of the data set
    knowledge: {kinds: [item, user]}     # ctr / multitask: LLM knowledge vectors as dense features
    model: {name: deepfm, dropout: 0.1}  # any registered model; fields layered over its defaults file
    trainer: {batch_size: 1024, epochs: 20}
    task: null                           # null = the model's task (its family's unless it names one)
    multilabel: {masking: attribution}   # multilabel task: which incomplete labels train (KAML)
    output_dir: runs/deepfm

Unknown keys anywhere are errors naming the field. ``--set model.dropout=0.1`` style overrides (the CLI)
are applied on top of the file."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, ValidationError, model_validator

from llmrec.augment.diffuasr import DiffuASRConfig
from llmrec.augment.rounds import prefix_users, rsir_rounds, short_user_prefixes, with_prefixes
from llmrec.augment.rsir import RSIRConfig
from llmrec.config import StrictConfig, validation_message
from llmrec.configfiles import blame_overrides, find_config, read_config_file
from llmrec.ctr.assign import IdAssigner
from llmrec.ctr.features import FeatureEncoder, FeatureSpec
from llmrec.ctr.ids import IdEncoder, IdEncoderConfig
from llmrec.data.registry import DataConfig, load_data, split_rows
from llmrec.data.schema import RecData
from llmrec.data.shards import write_day_shards
from llmrec.data.push import PushViewConfig
from llmrec.data.sessions import SessionViewConfig
from llmrec.data.views import GraphViewConfig, SeqBatch, SequenceViewConfig, sequence_rows, user_sequences
from llmrec.errors import ConfigError, DataError
from llmrec.models.graph.graphsail import GraphSAIL, GraphSAILConfig
from llmrec.io import write_json_atomic
from llmrec.metrics import auc
from llmrec.families import KnowledgeFeatures, Prepared, view_of
from llmrec.families.base import FitView
from llmrec.families.diversify import DiversifyViewConfig
from llmrec.families.rl import RLViewConfig
from llmrec.families.impressions import attach_labels, feature_specs
from llmrec.families.knowledge import knowledge_inputs
from llmrec.models import FAMILIES, MODELS, build_model
from llmrec.models.registry import ModelSpec, resolve_model_config, with_family_trainer
from llmrec.train import TASKS, BPRTask, NextItemTask, PointwiseTask, Trainer, TrainerConfig, world
from llmrec.train.selection import SELECTORS, FieldSelection, SelectionInput, select, top_k
from llmrec.train.assign import AssignedIds, AssignOption, stream_assigned
from llmrec.train.incctr import frozen_copy, grow_rows
from llmrec.train.tasks import DistillTask, MultiLabelTask, MultiLabelTaskConfig
from llmrec.train.export import load_model, save_model
from llmrec.train.update import drop_known, extend_space, grown, new_edges, remap_eval, remap_graph, remap_pairs, with_graph


class AugmentOption(StrictConfig):
    """Sequential jobs: train on augmented sequences. ``rsir``: RSIR's self-improvement rounds (the model
    writes synthetic training sequences, fidelity-controlled, and is retrained, ``rsir.rounds`` times);
    ``diffuasr``: diffusion-generated prefixes for the users with fewer than ``diffuasr.short_below``
    interactions (or every user, ``diffuasr.users: all``), then retrained. The saved model is the last one; the result's ``augment`` block has every step's metrics."""
    method: Literal["rsir", "diffuasr"]
    rsir: RSIRConfig = RSIRConfig()
    diffuasr: DiffuASRConfig = DiffuASRConfig()


class UpdateOption(StrictConfig):
    """Update a saved model on newer data instead of training one from scratch; its weights are the start.

    Graph jobs (``llmrec.train.update``): the saved model's ids kept and the new ones appended, training on the
    edges its graph lacked (selection on the job's validation split); ``graphsail`` distils the saved model's
    structure into the update (GraphSAIL), ``finetune`` trains without it.

    CTR and multi-task jobs: the job's data are the new rows, encoded with the saved model's encoder (an id it
    never saw takes the encoder's unknown row); ``incctr`` is IncCTR's model module, BCE plus ``kd_weight`` x
    the saved model's click probabilities as soft targets, with ``replay`` x the new training rows drawn
    uniformly from ``replay_data`` (the earlier rows), ``finetune`` trains on the new rows alone. ``grow_ids``
    (incctr) is IncCTR's feature module: values of the new training rows seen ``min_count`` times that the
    saved encoder lacks get rows of their own, each started from the unknown row it used (the distillation
    teacher keeps reading the unknown row for them); models over behaviour sequences (DIN) do not grow."""
    model_dir: str  # the saved model: its folder, or the training output folder holding ``model/``
    method: Literal["graphsail", "finetune", "incctr"] = "graphsail"
    graphsail: GraphSAILConfig = GraphSAILConfig()
    kd_weight: float = Field(0.5, ge=0)  # incctr: the distillation weight
    replay: float = Field(0.1, ge=0, le=1)  # incctr: earlier rows replayed, as a share of the new training rows
    replay_data: DataConfig | None = None  # incctr: where the earlier rows come from (None: no replay)
    grow_ids: bool = False  # incctr: IncCTR's feature module (rows for ids new in the update's training rows)
    min_count: int | None = Field(None, ge=1)  # grow_ids: occurrences an id needs (None: each feature's min_count)


class TrainJobConfig(StrictConfig):
    """A training job: data, features, knowledge, model, trainer, task and output folder."""
    data: DataConfig = DataConfig()
    features: list[FeatureSpec] | None = None  # None: every typed field of the data set
    knowledge: KnowledgeFeatures | None = None
    model: ModelSpec = Field({"name": "deepfm"}, validate_default=True)  # validated into the model's own config
    trainer: TrainerConfig = TrainerConfig()
    task: str | None = None  # None: the model's task (its family's unless the model names its own)
    multilabel: MultiLabelTaskConfig = MultiLabelTaskConfig()  # the multilabel task's masking and RLU
    sequence: SequenceViewConfig = SequenceViewConfig()  # the sequential family's view and evaluation
    graph: GraphViewConfig = GraphViewConfig()  # the graph family's view (split, interactions, negatives)
    session: SessionViewConfig = SessionViewConfig()  # the session family's view (pause cut, split, cutoff)
    push: PushViewConfig = PushViewConfig()  # the push family's view (campaign column, periods, precision@k)
    rl: RLViewConfig = RLViewConfig()  # the rl family's view (per-user time split, PMF, DDPG)
    diversify: DiversifyViewConfig = DiversifyViewConfig()  # the diversify family's view (queries, PMF, REINFORCE)
    selection: FieldSelection | None = None  # ctr / multitask: train on the k fields a selector ranks best (ERASE)
    augment: AugmentOption | None = None  # sequential: train on RSIR- or DiffuASR-augmented sequences
    update: UpdateOption | None = None  # graph or CTR: update a saved model on newer data (GraphSAIL, IncCTR)
    assign: AssignOption | None = None  # ctr: train chunk by chunk with AutoAssign+ deciding which ids get rows
    output_dir: str = "runs/ctr"

    @model_validator(mode="before")
    @classmethod
    def _family_trainer_defaults(cls, raw: Any) -> Any:
        """The model's family's trainer settings under the job's own (``family_trainer_defaults``)."""
        return with_family_trainer(raw)

    @model_validator(mode="after")
    def _knowledge_is_read(self) -> "TrainJobConfig":
        """Knowledge a model would never read is an error, not a silent no-op: graph and sequential models
        take item vectors only through a content input (``text_dim``: ConFRec, SASRec, GRU4Rec)."""
        fam = FAMILIES.get(self.family)
        if self.knowledge is not None and fam.view in ("sessions", "push", "rl", "diversify"):
            raise ValueError(f"knowledge: {self.model.name} is a {self.family} model; {self.family} models read no "
                             "item knowledge (they walk or count co-occurrences in the interactions)")
        if (self.knowledge is not None and fam.view in ("interactions", "sequences")
                and "text_dim" not in type(self.model).model_fields):
            readers = sorted(n for n in MODELS.names() if MODELS.get(n).family == self.family
                             and "text_dim" in MODELS.get(n).config.model_fields)
            raise ValueError(f"knowledge: {self.model.name} does not read item knowledge; in the {self.family} "
                             f"family {readers} do (confrec = LightGCN + a content branch)")
        return self

    @model_validator(mode="after")
    def _selection_fits(self) -> "TrainJobConfig":
        """Field selection ranks the fields of impression rows: CTR and multi-task jobs only."""
        if self.selection is not None:
            if FAMILIES.get(self.family).view != "impressions":
                raise ValueError(f"selection: field selection ranks impression fields; {self.model.name} is a "
                                 f"{self.family} model")
            if self.selection.selector not in SELECTORS.names():
                raise ValueError(f"selection.selector: {self.selection.selector!r} is not one of {SELECTORS.names()}")
        return self

    @model_validator(mode="after")
    def _augment_fits(self) -> "TrainJobConfig":
        """Augmentation extends whole user sequences: sequential jobs that train on them."""
        if self.augment is not None:
            if FAMILIES.get(self.family).view != "sequences":
                raise ValueError(f"augment: RSIR and DiffuASR augment user sequences; {self.model.name} is a "
                                 f"{self.family} model")
            if self.sequence.train != "sequences":
                raise ValueError("augment: RSIR and DiffuASR extend whole sequences; set sequence.train: sequences")
        return self

    @model_validator(mode="after")
    def _assign_fits(self) -> "TrainJobConfig":
        """Id assignment streams a CTR model's training rows: impression jobs trained from scratch on raw
        categorical and numerical fields."""
        if self.assign is not None:
            if FAMILIES.get(self.family).view != "impressions":
                raise ValueError(f"assign: id assignment streams impression rows; {self.model.name} is a "
                                 f"{self.family} model")
            clash = [k for k in ("knowledge", "update", "selection") if getattr(self, k) is not None]
            if clash:
                raise ValueError(f"assign: not combined with {clash} (the assigner encodes raw ids and numbers only)")
        return self

    @model_validator(mode="after")
    def _update_fits(self) -> "TrainJobConfig":
        """Updating grows user and item tables over the graph: graph models without item knowledge."""
        if self.update is not None:
            view, method = FAMILIES.get(self.family).view, self.update.method
            if view not in ("interactions", "impressions"):
                raise ValueError(f"update: updating a saved model on new data is for graph, CTR and multi-task "
                                 f"models; {self.model.name} is a {self.family} model")
            if view == "interactions" and method == "incctr":
                raise ValueError("update.method: incctr updates CTR models; a graph model takes graphsail or finetune")
            if view == "impressions" and method == "graphsail":
                raise ValueError("update.method: graphsail updates graph models; a CTR model takes incctr or finetune")
            if self.update.grow_ids and method != "incctr":
                raise ValueError(f"update.grow_ids: new-id rows are IncCTR's feature module (method incctr), "
                                 f"not {method}")
            if view == "interactions" and (self.knowledge is not None or self.graph.behaviours):
                raise ValueError("update: item knowledge and behaviour graphs are not grown by an update; train "
                                 "such a model from scratch")
        return self

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
        raise ConfigError(blame_overrides(f"{path}: {validation_message(e, '')}", path, overrides,
                                          TrainJobConfig)) from None


def prepare(job: TrainJobConfig, data: RecData | None = None) -> Prepared:
    """Load the data and put it in the job's family view (split, encoders, knowledge): everything but training."""
    return view_of(job.family).prepare(job, data if data is not None else load_data(job.data))


def apply_selection(job: TrainJobConfig, data: RecData | None = None) -> tuple[TrainJobConfig, dict | None]:
    """A job with ``selection`` -> the same job on the ``k`` fields its selector ranks best, and what was
    chosen (selector, scores, ranking, kept); a job without it is returned as is."""
    if job.selection is None:
        return job, None
    c = job.selection
    data = data if data is not None else load_data(job.data)
    whole = job.model_copy(update={"selection": None})
    p = prepare(whole, data)
    backbone = resolve_model_config(c.backbone, "selection.backbone")

    def build() -> torch.nn.Module:
        torch.manual_seed(job.trainer.seed)
        return build_model(p.context, backbone)

    trainer = Trainer(job.trainer.model_copy(update={"progress": False}), PointwiseTask())
    chosen = select(c.selector, SelectionInput(p.context, p.train, p.valid, build, trainer, job.trainer.seed), c.config)
    kept = set(top_k(chosen["ranking"], c.k))
    embedded = set(p.context.embedded_fields)
    specs = [s for s in feature_specs(data, job.features) if s.name in kept or s.name not in embedded]
    return whole.model_copy(update={"features": specs}), {"selector": c.selector, "k": c.k, **chosen,
                                                          "kept": sorted(kept)}


def make_trainer(job: TrainJobConfig, prepared: Prepared) -> Trainer:
    """The ``Trainer`` of a prepared job (its task, checkpoint folder and trainer config)."""
    task = TASKS.get(job.task or MODELS.get(job.model.name).default_task)()
    if isinstance(task, MultiLabelTask):
        task.config = job.multilabel
        task.names = list(prepared.data.tasks) or [prepared.data.label]
    if isinstance(task, BPRTask):
        task.n_items = prepared.context.n_items
        task.negatives = job.graph.negatives
        task.sampled_negatives = job.graph.sampled_negatives
    if isinstance(task, NextItemTask):
        task.exclude_history = job.sequence.exclude_history
        task.sampled_negatives = job.sequence.sampled_negatives
    return Trainer(job.trainer, task)


def augment_inputs(job: TrainJobConfig, p: Prepared) -> tuple[list[int], list[list[int]]]:
    """The users (indices) of a prepared sequential job and their real training sequences (without the last
    two items: validation and test)."""
    space, by_user, _ = user_sequences(p.data, job.sequence)
    return [space.users[u] for u in by_user], [ids[:-2] for ids in by_user.values()]


def train_augmented(job: TrainJobConfig, p: Prepared, checkpoint_dir: Path | None = None
                    ) -> tuple[torch.nn.Module, dict]:
    """The ``augment`` option: every training of the procedure (``llmrec.augment.rounds``) is this job without
    it, checkpointed in its own folder (a killed job resumes); the last model and its result, with the
    procedure's steps under ``augment``."""
    plain, c = job.model_copy(update={"augment": None}), job.augment
    users, real = augment_inputs(job, p)
    results: list[dict] = []

    def train(rows: SeqBatch | None) -> tuple[torch.nn.Module, dict]:
        ckpt = checkpoint_dir / f"augment-{len(results)}" if checkpoint_dir is not None else None
        model, result = train_prepared(plain, p if rows is None else replace(p, train=rows), checkpoint_dir=ckpt)
        results.append(result)
        return model, result

    if c.method == "rsir":
        model, rounds = rsir_rounds(train, list(zip(users, real)), c.rsir, job.sequence.max_len, job.sequence.window_stride)
        rounds[0]["train_rows"] = len(p.train)
        steps = {"method": "rsir", "config": c.rsir.model_dump(), "rounds": rounds}
    else:
        base, first = train(None)
        chosen = prefix_users(real, c.diffuasr)
        with torch.no_grad():
            table = base.item_table().detach().float()
        prefixes, diffusion = short_user_prefixes(table, real, chosen, p.context.n_items, c.diffuasr)
        steps = {"method": "diffuasr", "config": c.diffuasr.model_dump(), "prefixed_users": int(chosen.sum()),
                 "users": len(users), "base": {"valid": first["valid"], "test": first["test"]}, **diffusion}
        model = base
        if "diffusion" in prefixes:  # nobody to prefix: the base model is the result
            rows = sequence_rows(with_prefixes(users, real, chosen, prefixes["diffusion"]), job.sequence.max_len,
                                 job.sequence.window_stride)
            model, _ = train(rows)
    return model, {**results[-1], "augment": steps}


def train_prepared(job: TrainJobConfig, p: Prepared, checkpoint_dir: Path | None = None) -> tuple[torch.nn.Module, dict]:
    """Search stage (if the model has one), model, fit, test: the model and its result dict (through the
    ``augment`` procedure when the job has one)."""
    if job.augment is not None:
        return train_augmented(job, p, checkpoint_dir)
    if job.update is not None:
        return train_updated(job, p, checkpoint_dir)
    if job.assign is not None:
        return train_assigned(job, p, checkpoint_dir)
    entry = MODELS.get(job.model.name)
    config = job.model
    view = view_of(entry.family)
    if isinstance(view, FitView):  # fitted, not trained by the loop (session KNN, push walks, DRR's DDPG)
        return view.fit(job, p, config)
    torch.manual_seed(job.trainer.seed)  # the model is built right after its search stage, if it has one
    if entry.prepare is not None:
        config = entry.prepare(p.context, config, p.train, p.valid, job.trainer)
    model = build_model(p.context, config)
    return model, fit_and_report(job, p, model, config, checkpoint_dir)


def fit_and_report(job: TrainJobConfig, p: Prepared, model: torch.nn.Module, config: Any,
                   checkpoint_dir: Path | None = None, train: Any = None, task: Any = None) -> dict:
    """Train a built model with the job's trainer on ``train`` (default ``p.train``; ``task`` instead of the
    job's, e.g. IncCTR's distillation), test it: the result."""
    entry = MODELS.get(config.name)
    trainer = make_trainer(job, p) if task is None else Trainer(job.trainer, task)
    fit = trainer.fit(model, p.train if train is None else train, p.valid, checkpoint_dir=checkpoint_dir)
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
        # (prefix -> next) training pairs per second: rows carry a target per position in the sequential view
        "train_pairs_per_second": (fit.samples_per_second * float((p.train.target > 0).sum()) / len(p.train)
                                   if isinstance(p.train, SeqBatch) else None),
        "resumed_from_epoch": fit.resumed_from_epoch,
        "epoch_seconds": fit.train_seconds / max(1, len(fit.history)) if fit.train_seconds else None,
        "parameters": int(sum(q.numel() for q in model.parameters())),
    }
    return result


def train_assigned(job: TrainJobConfig, p: Prepared, checkpoint_dir: Path | None = None
                   ) -> tuple[torch.nn.Module, dict]:
    """The ``assign`` option (``llmrec.train.assign``): the training rows in time order cut into chunks (a
    shard set under the checkpoint folder, with the validation and test rows as two more days), streamed
    through AutoAssign+'s assigner and the model, the validation rows the last tested chunk; the model, and
    its result with the stream's per-chunk figures under ``assign``. The saved context is the assigner."""
    c, data, enc = job.assign, p.data, p.context
    if data.tasks:
        raise ConfigError("assign: a multi-label model is not streamed; train it without assign")
    if enc.multi_hot or enc.behavior or enc.dense:
        raise ConfigError(f"assign: the assigner encodes categorical and numerical fields only; drop "
                          f"{[s.name for s in (*enc.multi_hot, *enc.behavior, *enc.dense)]} from features")
    tr, va, te = split_rows(data, job.data)
    if len(tr) < c.chunks:
        raise DataError(f"assign.chunks: {c.chunks} chunks of {len(tr)} training rows")
    order = tr[np.argsort(np.asarray(data.columns[data.time])[tr], kind="stable")]
    cat, num = [s.name for s in enc.categorical], [s.name for s in enc.numerical]
    root = (checkpoint_dir or Path(job.output_dir) / "checkpoint") / "assign-chunks"
    s = write_day_shards(data, root, [*np.array_split(order, c.chunks), va, te], cat, num)
    numbers = IdEncoder(IdEncoderConfig(mode="hash", table_rows=len(cat)), cat, num).fit(s.select([0]), progress=False)
    assigner = IdAssigner(c.assigner.model_copy(update={"seed": job.trainer.seed}), numbers, c.chunks + 2)
    torch.manual_seed(job.trainer.seed)
    model = build_model(assigner, job.model)
    rare = c.rare_fields if c.rare_fields is not None else [f for f in (data.user_col, data.item_col) if f in cat]
    tc = job.trainer.model_copy(update={"epochs": c.epochs_per_chunk})
    stream = stream_assigned(model, assigner, tc, lambda t: s.select([t]).read_all(), c.chunks + 1, rare,
                             c.rare_max, c.valid_rows, label=f"assign ({c.assigner.policy})")
    trainer = Trainer(tc, PointwiseTask())
    final = AssignedIds(assigner, c.chunks + 1, data.label)
    valid = trainer.evaluate(model, assigner.transform(s.select([c.chunks]).read_all(), c.chunks))
    test = trainer.evaluate(model, assigner.transform(s.select([c.chunks + 1]).read_all(), c.chunks + 1),
                            groups=np.asarray(data.columns[data.user_col])[te])
    p.context = final  # the job saves the model with the assignment it ended with
    result = {"data": data.name, "rows": {"train": len(tr), "valid": len(va), "test": len(te)},
              "model": job.model.model_dump(mode="json"), "family": MODELS.get(job.model.name).family,
              "task": trainer.task.name, "primary_metric": trainer.task.primary, "trainer": tc.model_dump(),
              "best_epoch": None, "valid": valid, "test": test, "history": [],
              "train_samples_per_second": (sum(c["train_rows"] for c in stream)
                                           / max(1e-9, sum(c["train_seconds"] for c in stream))),
              "parameters": int(sum(q.numel() for q in model.parameters())),
              "assign": {"config": c.model_dump(mode="json"), "rare_fields": rare, "chunks": stream,
                         "rows_in_use": assigner.memory_rows(), "ids_seen": assigner.ids_seen(),
                         "rows_per_id": assigner.memory_rows() / max(1, assigner.ids_seen())}}
    return model, result


def train_updated(job: TrainJobConfig, p: Prepared, checkpoint_dir: Path | None = None
                  ) -> tuple[torch.nn.Module, dict]:
    """The ``update`` option: the saved model grown onto the new data's ids, trained on the new edges (with
    GraphSAIL's distillation from the saved model, or plain fine-tuning); the updated model (the student) and
    its result, with what changed under ``update``."""
    c = job.update
    where = Path(c.model_dir)
    old, old_space = load_model(where / "model" if (where / "model").is_dir() else where)
    if old.config.name != job.model.name:
        raise ConfigError(f"update.model_dir: {c.model_dir} holds a {old.config.name} model; the job trains "
                          f"{job.model.name}")
    if isinstance(old_space, FeatureEncoder):
        return _update_impressions(job, p, old, old_space, checkpoint_dir)
    space, umap, imap = extend_space(old_space, p.context)
    graph = remap_graph(p.context.graph, space, umap, imap)
    old_graph = remap_graph(old_space.graph, space)
    valid, moved_valid = drop_known(remap_eval(p.valid, umap, imap), old_graph)
    test, moved_test = drop_known(remap_eval(p.test, umap, imap), old_graph)
    q = replace(p, context=with_graph(space, graph), train=remap_pairs(p.train, umap, imap), valid=valid, test=test)
    fresh = new_edges(q.train, old_graph)
    torch.manual_seed(job.trainer.seed)  # the fresh rows of new users and items
    config = old.config
    student = grown(old, build_model(q.context, config), old_space.n_users, old_space.n_items)
    model = student
    if c.method == "graphsail":
        teacher = grown(old, build_model(with_graph(space, old_graph), config), old_space.n_users, old_space.n_items)
        model = GraphSAIL(student, teacher, old_graph, c.graphsail, seed=job.trainer.seed, new_graph=graph)
    result = fit_and_report(job, q, model, config, checkpoint_dir, train=fresh)
    result["update"] = {"model_dir": c.model_dir, "method": c.method, "new_edges": len(fresh),
                        "edges": int(len(graph.users)), "new_users": space.n_users - old_space.n_users,
                        "new_items": space.n_items - old_space.n_items,
                        # gold items of the new split the saved model had trained on: left out of evaluation
                        "known_gold_left_out": {"valid": moved_valid, "test": moved_test}}
    p.context = q.context  # the job saves the student with the extended ids and the whole new graph
    return student, result


def run_training(job: TrainJobConfig) -> dict:
    """Train a job end to end (resumable; field selection first when the job asks for it), save the model and
    write ``result.json``; returns the result."""
    job, chosen = apply_selection(job)
    p = prepare(job)
    out = Path(job.output_dir)
    model, result = train_prepared(job, p, checkpoint_dir=out / "checkpoint")
    if chosen is not None:
        result["selection"] = chosen
    if world()[0] == 0:
        save_model(out / "model", model, p.context)
        write_json_atomic(out / "job.json", job.model_dump(mode="json", exclude_unset=True))  # llmrec.load reads it
        write_json_atomic(out / "result.json", result)
    return result


def _update_impressions(job: TrainJobConfig, p: Prepared, old: torch.nn.Module, enc: FeatureEncoder,
                        checkpoint_dir: Path | None) -> tuple[torch.nn.Module, dict]:
    """CTR / multi-task update: the new rows encoded with the saved encoder, the saved model trained further on
    them (and on replayed earlier rows) with IncCTR's distillation from its saved self, or plain fine-tuning."""
    c = job.update
    data = p.data
    if data.tasks:
        raise ConfigError("update: a multi-label model is not updated in place; train it from scratch on the data")
    tr, va, te = split_rows(data, job.data)
    tables = knowledge_inputs(job.knowledge, data, split=job.data)[1]
    cols = data.take(tr)
    replayed = 0
    if c.method == "incctr" and c.replay and c.replay_data is not None:
        earlier = load_data(c.replay_data)
        missing = sorted(set(cols) - set(earlier.columns))
        if missing:
            raise DataError(f"update.replay_data: {earlier.name} lacks the columns {missing} of the new rows")
        rng = np.random.default_rng(job.trainer.seed)
        pick = rng.choice(len(earlier), min(len(earlier), int(round(c.replay * len(tr)))), replace=False)
        back = earlier.take(np.sort(pick))
        cols = {k: np.concatenate([np.asarray(back[k]), np.asarray(v)]) for k, v in cols.items()}
        replayed = len(pick)
    teacher = frozen_copy(old) if c.method == "incctr" and c.kd_weight else None
    rows_before = enc.n_categorical_rows()
    grew = grow_rows(old, enc, data.take(tr), c.min_count) if c.grow_ids else None
    batches = [enc.transform(cols, label=data.label, dense_tables=tables),
               *(enc.transform(data.take(rows), label=data.label, dense_tables=tables) for rows in (va, te))]
    q = replace(p, context=enc, train=batches[0], valid=batches[1], test=batches[2])
    task = DistillTask(teacher, c.kd_weight, grew) if teacher is not None else None
    old.train()
    for w in old.parameters():
        w.requires_grad_(True)
    result = fit_and_report(job, q, old, old.config, checkpoint_dir, task=task)
    result["update"] = {"model_dir": c.model_dir, "method": c.method, "new_rows": int(len(tr)),
                        "replayed_rows": replayed, "kd_weight": c.kd_weight if teacher is not None else 0.0,
                        "new_id_rows": enc.n_categorical_rows() - rows_before}
    p.context = enc  # the job saves the updated model with the saved encoder
    return old, result


def evaluate_saved(model_dir: str | Path, job: TrainJobConfig) -> dict:
    """Evaluate a saved model on the job's test split."""
    model, context = load_model(model_dir)
    job = job.model_copy(update={"model": model.config})
    p = prepare(job)
    view = view_of(job.family)
    if isinstance(view, FitView):
        return {"model_dir": str(model_dir), "data": p.data.name, "test": view.evaluate(job, p, model)}
    if isinstance(context, FeatureEncoder):  # the saved encoder, not one refitted
        _, _, te = split_rows(p.data, job.data)
        p.test = context.transform(p.data.take(te), label=p.data.label,
                                   dense_tables=knowledge_inputs(job.knowledge, p.data, split=job.data)[1])
        if p.data.tasks:
            attach_labels(p.test, p.data, te, complete=True)
    metrics = make_trainer(job, p).evaluate(model, p.test, groups=p.test_groups)
    return {"model_dir": str(model_dir), "data": p.data.name, "test": metrics}


__all__ = ["AssignOption", "AugmentOption", "UpdateOption", "fit_and_report", "train_assigned", "train_updated", "KnowledgeFeatures", "Prepared", "TrainJobConfig", "evaluate_saved", "feature_specs", "knowledge_inputs",
           "load_job_config", "make_trainer", "prepare", "run_training", "train_augmented",
           "train_prepared", "augment_inputs"]
