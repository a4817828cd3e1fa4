"""Experiment kinds: every benchmark is a YAML under ``configs/experiments/`` run by ``llmrec experiment NAME``
(``eval/*.py`` are thin entry points onto the same call). The YAML's ``kind`` picks the runner:

| kind          | config class            | runs                                                             |
|---------------|-------------------------|------------------------------------------------------------------|
| `recommender` | `ExperimentConfig`      | data sets x model variants x seeds through the one training loop |
| `memory`      | `MemoryExperiment`      | LoCoMo session retrieval, every method a registered retriever    |
| `rerank`      | `RerankExperiment`      | RADIO vs label baselines over a dense first stage                |
| `research`    | `ResearchExperiment`    | the research loop with vs without its private stage, judged      |
| `judge`       | `JudgeExperiment`       | small-judge calibration on MT-RAG, held-out conversations only   |
| `incremental` | `IncrementalExperiment` | graph model over time blocks: full retrain, fine-tune, GraphSAIL |
| `ctr_scale`   | `ScaleExperiment`       | a CTR model streamed from parquet shards: variants, peers, RSS   |
| `ctr_incremental` | `IncrementalCTRExperiment` | CTR day by day: batch retrain, fine-tune, IncCTR           |
| `ctr_assign`  | `AssignExperiment`      | streaming id assignment: AutoAssign+ vs own-row-per-id         |
| `ctr_select`  | `SelectExperiment`      | field selectors (ERASE): rankings, retrain on top k, AUKC        |
| `push`        | `PushExperiment`        | push audiences (PSP): A-PARW vs exact PARW vs PPR, precision@k   |
| `session`     | `SessionExperiment`     | next click in anonymous sessions (AHC-KNN vs SKNN, V-SKNN)       |
| `rl`          | `RLExperiment`          | DRR variants trained by DDPG vs PMF / popularity, precision@10   |
| `diversify`   | `DiversifyExperiment`   | MDP-DIV (+ kNN, + NTN) vs MMR, alpha-NDCG@10, episodes to 95%    |
| `graphrag`    | `GraphRAGExperiment`    | Align-GRAG vs plain graph RAG on an LLM-built graph, F1 + tokens |

A kind = a typed config + ``run(config, out) -> result dict``; each writes one result JSON (command, git
commit, resolved config, seeds, environment). ``--set key=value`` overrides any field of any kind."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NamedTuple

from pydantic import BaseModel, ValidationError

from llmrec.config import validation_message
from llmrec.configfiles import blame_overrides, find_config, read_config_file
from llmrec.errors import ConfigError
from llmrec.registry import Registry


class ExperimentKind(NamedTuple):
    """An experiment kind: how to load its typed config and how to run it."""
    load: Callable[[dict[str, Any], Path], BaseModel]  # raw YAML (overrides applied, paths expanded) -> config
    run: Callable[..., dict]  # (config, out: Path | None) -> result


EXPERIMENT_KINDS: Registry[ExperimentKind] = Registry("experiment kind")
EXPERIMENT_KINDS.add_lazy("recommender", "llmrec.experiments.harness:KIND")
EXPERIMENT_KINDS.add_lazy("memory", "llmrec.experiments.memory:KIND")
EXPERIMENT_KINDS.add_lazy("rerank", "llmrec.experiments.rerank:KIND")
EXPERIMENT_KINDS.add_lazy("research", "llmrec.experiments.research:KIND")
EXPERIMENT_KINDS.add_lazy("judge", "llmrec.experiments.judge:KIND")
EXPERIMENT_KINDS.add_lazy("augment", "llmrec.experiments.augment:KIND")
EXPERIMENT_KINDS.add_lazy("performance_law", "llmrec.experiments.scaling:KIND")
EXPERIMENT_KINDS.add_lazy("incremental", "llmrec.experiments.incremental:KIND")
EXPERIMENT_KINDS.add_lazy("ctr_scale", "llmrec.experiments.ctr_scale:KIND")
EXPERIMENT_KINDS.add_lazy("ctr_incremental", "llmrec.experiments.ctr_incremental:KIND")
EXPERIMENT_KINDS.add_lazy("ctr_assign", "llmrec.experiments.ctr_assign:KIND")
EXPERIMENT_KINDS.add_lazy("ctr_select", "llmrec.experiments.ctr_select:KIND")
EXPERIMENT_KINDS.add_lazy("push", "llmrec.experiments.push:KIND")
EXPERIMENT_KINDS.add_lazy("session", "llmrec.experiments.session:KIND")
EXPERIMENT_KINDS.add_lazy("rl", "llmrec.experiments.rl:KIND")
EXPERIMENT_KINDS.add_lazy("diversify", "llmrec.experiments.diversify:KIND")
EXPERIMENT_KINDS.add_lazy("graphrag", "llmrec.experiments.graphrag:KIND")


def find_experiment(path_or_name: str | Path) -> Path:
    """An experiment YAML by path or by name (``configs/experiments/<name>.yaml``, bundled in the wheel)."""
    return find_config(path_or_name, "experiments")


def read_experiment(path_or_name: str | Path, overrides: list[str] | None = None) -> tuple[str, dict, Path]:
    """(kind, raw config with ``--set`` overrides applied and ``${LLMREC_DATA}`` expanded, file)."""
    path = find_experiment(path_or_name)
    raw = read_config_file(path, overrides)
    kind = raw.pop("kind", "recommender")
    if kind not in EXPERIMENT_KINDS:
        raise ConfigError(f"{path}: kind: {kind!r} is not an experiment kind (have {EXPERIMENT_KINDS.names()})")
    return kind, raw, path


def validate(cls: type[BaseModel], raw: dict, path: Path) -> Any:
    """``cls`` from a raw config; a validation error is a ``ConfigError`` naming the file and field."""
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{path}: {validation_message(e, '')}") from None


def load_kind(path_or_name: str | Path, kind: str, overrides: list[str] | None = None) -> Any:
    """An experiment that must be of ``kind`` (a named error otherwise)."""
    got, raw, path = read_experiment(path_or_name, overrides)
    if got != kind:
        raise ConfigError(f"{path}: a {got!r} experiment, not a {kind} experiment")
    return _load_blaming(kind, raw, path, overrides)


def load_any(path_or_name: str | Path, overrides: list[str] | None = None) -> tuple[str, Any]:
    """(kind, typed config) of an experiment by path or name, with ``--set`` overrides."""
    kind, raw, path = read_experiment(path_or_name, overrides)
    return kind, _load_blaming(kind, raw, path, overrides)


def _load_blaming(kind: str, raw: dict, path: Path, overrides: list[str] | None) -> Any:
    """The kind's typed config; a field a ``--set`` wrote is blamed on that override, not on the file."""
    try:
        return EXPERIMENT_KINDS.get(kind).load(raw, path)
    except ConfigError as e:
        raise ConfigError(blame_overrides(str(e), path, overrides)) from None
