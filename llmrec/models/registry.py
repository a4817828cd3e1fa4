"""The model registry: every recommender model registered by name, with its family and typed config.

A **family** is a data view + a batch type + a training task (``llmrec.train.tasks``): ``ctr`` (impressions
with typed fields -> ``Batch`` -> pointwise BCE), ``multitask`` (impressions with several labels, some
missing -> ``Batch`` with ``labels`` / ``observed`` -> masked BCE per label; a multi-scenario model with one
label, STAR, names ``pointwise`` as its own task), ``graph`` (user-item interactions -> ``PairBatch`` -> BPR with full-sort
Recall/NDCG), ``sequential`` (user sequences -> ``SeqBatch`` -> next-item CE with full-sort HR/NDCG). Families whose task
is ``fit`` have no trainer: their builder returns an object with ``fit`` and a family-specific scoring call
(``push``: ``fit(weights)`` / ``score_users(seed_items)``, ``llmrec.models.push.base``; ``session``:
``fit(sessions, starts, n_items)`` / ``scores(session)`` / ``recommend(session, k)``,
``llmrec.models.session.base``; ``graphrag``: ``fit(GraphIndex, ...)`` / ``subgraph(question)`` /
``context(question)`` and the ``Retriever`` protocol, ``llmrec.models.graphrag``).

A model is one file: a config class (``ModelConfigBase`` subclass; its fields and defaults are the
model's hyperparameters) and a builder registered with ``@register_model``. Its defaults file
``configs/defaults/models/<name>.yaml`` (shipped in the wheel as ``llmrec/_configs/defaults/models``) overrides
the class defaults; a user's config overrides both. Priority, lowest to highest:

    config class defaults  <  configs/defaults/models/<name>.yaml  <  the user's YAML / dict  <  CLI --set

A family's trainer settings layer the same way (``TrainerConfig`` defaults < ``configs/defaults/families/
<family>.yaml`` < the job's ``trainer`` block < --set): graph models train as RecBole's general recommenders,
not with the CTR family's BARS settings.

``resolve_model_config`` applies these layers and returns the typed config; unknown keys are errors naming
the field."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Callable, Mapping

import yaml
from pydantic import BeforeValidator, SerializeAsAny, ValidationError
from torch import nn

from llmrec.config import StrictConfig, deep_merge, validation_message
from llmrec.errors import ConfigError
from llmrec.registry import Registry


class ModelConfigBase(StrictConfig):
    """Fields every model config has; subclasses add the model's hyperparameters."""
    name: str


@dataclass(frozen=True)
class Family:
    """A model family: its data view, batch type and default training task."""
    name: str
    view: str  # the data view its models read
    batch: str  # the batch type its models take
    task: str  # the default training task (llmrec.train.tasks.TASKS)
    doc: str


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: name, family, typed config class and builder."""
    name: str
    family: str
    config: type[ModelConfigBase]
    build: Callable[[Any, Any], Any]  # (family context, config) -> model (an nn.Module unless the task is fit)
    doc: str
    # optional stage run before training that returns the config to train with (OptInter's search)
    prepare: Callable[..., ModelConfigBase] | None = None
    onnx: bool = True  # the family's ONNX export works for this model
    task: str | None = None  # the model's own training task, when not its family's (STAR: one label)

    @property
    def default_task(self) -> str:
        """The task the model trains on unless a job names one: its own, else its family's."""
        return self.task or FAMILIES.get(self.family).task


FAMILIES: Registry[Family] = Registry("model family")
MODELS: Registry[ModelEntry] = Registry("model")

for _f in (
    Family("ctr", "impressions", "Batch", "pointwise", "click-through rate over typed fields"),
    Family("multitask", "impressions", "Batch", "multilabel", "several scenarios or tasks sharing one model"),
    Family("graph", "interactions", "PairBatch", "bpr", "collaborative filtering over the user-item graph"),
    Family("sequential", "sequences", "SeqBatch", "next_item", "next item from a user's ordered history"),
    Family("session", "sessions", "item-index sessions", "fit", "next click in an anonymous session (no trainer)"),
    Family("rl", "rl", "transitions", "actor_critic",
           "recommendation as sequential decisions, DDPG against a simulator"),
    Family("diversify", "diversify", "DiversityQuery", "policy_gradient",
           "diversified ranking of a query's candidates (subtopic coverage)"),
    Family("push", "push", "user-item graph", "fit", "whom to push a campaign's items to (no trainer)"),
    Family("graphrag", "textual knowledge graph + questions", "Subgraph", "fit",
           "the subgraph an LLM answers from (graph RAG, no trainer of the one loop)"),
):
    FAMILIES.add(_f.name, _f)


def register_model(name: str, family: str, config: type[ModelConfigBase],
                   prepare: Callable[..., ModelConfigBase] | None = None, onnx: bool = True,
                   task: str | None = None):
    """Decorator for a builder ``(context, config) -> nn.Module``; its docstring is the model's description."""
    FAMILIES.get(family)  # fail at import time on a typo

    def deco(build: Callable[[Any, Any], nn.Module]):
        MODELS.add(name, ModelEntry(name=name, family=family, config=config, build=build,
                                    doc=(build.__doc__ or "").strip().split("\n")[0], prepare=prepare, onnx=onnx,
                                    task=task))
        return build

    return deco


def defaults_dirs(kind: str = "models") -> list[Path]:
    """Folders of default configs of one kind, ``models`` or ``families`` (wheel ``_configs/defaults/<kind>``
    or a checkout's ``configs/defaults/<kind>``)."""
    here = Path(__file__).resolve().parent.parent
    return [p for p in (here / "_configs" / "defaults" / kind, here.parent / "configs" / "defaults" / kind)
            if p.is_dir()]


def _defaults_file(kind: str, name: str) -> dict:
    for d in defaults_dirs(kind):
        f = d / f"{name}.yaml"
        if f.exists():
            raw = yaml.safe_load(f.read_text()) or {}
            if not isinstance(raw, dict):
                raise ConfigError(f"{f}: a defaults file must be a mapping")
            return raw
    return {}


@lru_cache(maxsize=None)
def model_defaults(name: str) -> dict:
    """The model's defaults file as a dict ({} when it has none)."""
    return _defaults_file("models", name)


@lru_cache(maxsize=None)
def family_trainer_defaults(family: str) -> dict:
    """The trainer settings a family's models train with unless a job sets them
    (``configs/defaults/families/<family>.yaml``, its ``trainer`` block; {} when it has none)."""
    raw = _defaults_file("families", family)
    unknown = sorted(set(raw) - {"trainer"})
    if unknown or not isinstance(raw.get("trainer", {}), dict):
        raise ConfigError(f"configs/defaults/families/{family}.yaml: only a 'trainer' mapping belongs here, "
                          f"not {unknown or 'trainer: ' + repr(raw['trainer'])}")
    return dict(raw.get("trainer", {}))


def with_family_trainer(raw: Any, default_model: str = "deepfm") -> Any:
    """A config mapping with ``model`` and ``trainer`` keys, its trainer layered over the model's family's
    settings (``family_trainer_defaults``): what a ``mode="before"`` validator returns. Anything malformed is
    returned as is, for the model / trainer field to name the error."""
    if not isinstance(raw, dict):
        return raw
    model = raw.get("model", {"name": default_model})
    name = getattr(model, "name", None) if not isinstance(model, dict) else model.get("name")
    if name not in MODELS:
        return raw
    trainer = raw.get("trainer", {})
    if hasattr(trainer, "model_dump"):
        trainer = trainer.model_dump(exclude_unset=True)
    if not isinstance(trainer, dict):
        return raw
    return {**raw, "trainer": deep_merge(family_trainer_defaults(MODELS.get(name).family), trainer)}


def resolve_model_config(spec: Mapping[str, Any] | ModelConfigBase, field: str = "model") -> ModelConfigBase:
    """``{name: ..., <overrides>}`` -> the model's typed config (class < defaults file < overrides)."""
    if isinstance(spec, ModelConfigBase):
        return spec
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ConfigError(f"{field}.name: a model config needs a name (one of {MODELS.names()})")
    name = spec["name"]
    if name not in MODELS:
        near = [n for n in MODELS.names() if n.lower() == str(name).lower()] or \
            difflib.get_close_matches(str(name), MODELS.names(), n=3)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise ConfigError(f"{field}.name: unknown model {name!r} ({hint}`llmrec models` lists all "
                          f"{len(MODELS.names())})")
    entry = MODELS.get(name)
    raw = deep_merge(model_defaults(name), {k: v for k, v in spec.items() if k != "name"})
    try:
        return entry.config.model_validate({**raw, "name": name})
    except ValidationError as e:
        raise ConfigError(validation_message(e, field)) from None


def _validate_model_spec(v: Any) -> ModelConfigBase:
    try:
        return resolve_model_config(v)
    except ConfigError as e:  # pydantic reports ValueErrors raised here under the field's name
        raise ValueError(str(e)) from None


# a config field holding any registered model's config: ``{name: deepfm, dropout: 0.1}`` in YAML, the model's
# typed config in Python (its defaults file layered in), serialized with every field of that model
ModelSpec = Annotated[SerializeAsAny[ModelConfigBase], BeforeValidator(_validate_model_spec)]


def build_model(context: Any, config: ModelConfigBase | Mapping[str, Any]) -> nn.Module:
    """Build a registered model from its config (or a ``{name: ...}`` mapping) and the family's context
    (a fitted ``FeatureEncoder`` for ctr / multitask, an ``ItemSpace`` for graph / sequential)."""
    cfg = resolve_model_config(config)
    model = MODELS.get(cfg.name).build(context, cfg)
    if not isinstance(getattr(model, "config", None), type(cfg)):  # a builder may keep the config it used
        model.config = cfg  # (sizes read from the context, e.g. the item text width), so a reload rebuilds it
    return model


def _type_name(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def describe_models(family: str | None = None) -> list[dict]:
    """What ``llmrec models`` prints: name, family, description, config fields with their defaults."""
    if family is not None:
        FAMILIES.get(family)
    out = []
    for name in MODELS.names():
        e = MODELS.get(name)
        if family and e.family != family:
            continue
        cfg = resolve_model_config({"name": name})
        fields = {k: v for k, v in cfg.model_dump(mode="json").items() if k != "name"}
        out.append({"name": name, "family": e.family, "task": e.default_task, "doc": e.doc,
                    "config_class": e.config.__name__, "defaults": fields,
                    "types": {k: _type_name(f.annotation) for k, f in e.config.model_fields.items() if k != "name"},
                    "search_stage": e.prepare is not None, "onnx": e.onnx})
    return out
