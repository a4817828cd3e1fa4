"""The front door (``import llmrec``): a data set from your files, training from a config, a trained model
that recommends, knowledge extraction and memory, each taking a typed config, a plain dict or a YAML path.

    import llmrec
    llmrec.check("data.yaml")                                   # what the files hold; problems listed
    model = llmrec.train({"data": {...}, "model": {"name": "sasrec"}, "output_dir": "runs/sasrec"})
    model.recommend("c1", k=10)                                 # items with their titles and text
    llmrec.load("runs/sasrec").recommend_batch(["c1", "c2"])
    llmrec.extract("extract.yaml")                              # LLM knowledge over your items / users
    memory = llmrec.Memory()                                    # long-term memory (mem0's call shape too)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from llmrec.config import validation_message
from llmrec.configfiles import find_config, read_config_file
from llmrec.data.files import FileReport
from llmrec.data.registry import DataConfig, check_data, load_data
from llmrec.data.schema import RecData
from llmrec.errors import ConfigError, MissingFileError
from llmrec.train_job import TrainJobConfig, run_training
from llmrec.knowledge.job import KnowledgeJobConfig, run_extraction
from llmrec.recommend import Recommendation, Recommender

C = TypeVar("C", bound=BaseModel)
ConfigLike = BaseModel | dict | str | Path


def _config(cls: type[C], config: ConfigLike, overrides: list[str] | None = None, block: str | None = None) -> C:
    """``cls`` from itself, a dict, or a YAML file / bundled config name (``--set``-style ``overrides``);
    ``block``: the key holding it inside a larger YAML (a job's ``data``), when present."""
    if isinstance(config, cls):
        return config
    where = "config"
    if isinstance(config, (str, Path)):
        path = find_config(config)
        raw, where = read_config_file(path, overrides), str(path)
    elif isinstance(config, dict):
        raw = config
    else:
        raise ConfigError(f"config: expected a {cls.__name__}, a dict or a YAML path, got {type(config).__name__}")
    if block and block in raw and isinstance(raw[block], dict):
        raw = raw[block]
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{where}: {validation_message(e, block or '')}") from None


def dataset(config: ConfigLike) -> RecData:
    """The data set a data config names (your files: ``{"source": "files", "files": {...}}``)."""
    return load_data(_config(DataConfig, config, block="data"))


def check(config: ConfigLike) -> FileReport:
    """What a data set holds and which columns are used or ignored; ``.errors`` lists what is wrong
    (``llmrec data check``)."""
    return check_data(_config(DataConfig, config, block="data"))


def train(config: ConfigLike, overrides: list[str] | None = None) -> Recommender:
    """Train a job (data, model, trainer, knowledge, output_dir; resumable) and return the trained model,
    ready to recommend; ``.result`` holds its validation and test metrics."""
    job = _config(TrainJobConfig, config, overrides)
    result = run_training(job)
    return Recommender(Path(job.output_dir) / "model", job, result)


def load(path: str | Path) -> Recommender:
    """A model trained by ``train`` / ``llmrec train`` from its output folder (``model/`` and ``job.json``)."""
    root = Path(path)
    if (root / "job.json").is_file() and (root / "model").is_dir():
        return Recommender(root / "model", _config(TrainJobConfig, _json(root / "job.json")))
    if (root.parent / "job.json").is_file():  # the model folder itself
        return Recommender(root, _config(TrainJobConfig, _json(root.parent / "job.json")))
    raise MissingFileError(f"{root}: not a training output folder (expected model/ and job.json, written by "
                           "llmrec.train or llmrec train)")


def extract(config: ConfigLike, overrides: list[str] | None = None) -> dict:
    """LLM knowledge over a data set's items / users (cached, resumable): ``llmrec extract --config``."""
    return run_extraction(_config(KnowledgeJobConfig, config, overrides))


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


__all__ = ["Recommendation", "Recommender", "check", "dataset", "extract", "load", "train"]
