"""Build a ``RecData`` from a typed config: the synthetic world, the synthetic sequence world or MovieLens."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.data.catalog import require_dataset
from llmrec.data.interactions import load_interactions
from llmrec.data.movielens import load_movielens
from llmrec.data.schema import RecData
from llmrec.data.views import add_history
from llmrec.errors import ConfigError
from llmrec.data.synthetic import SequenceWorldConfig, SyntheticConfig, generate_sequences, generate_world


class DataConfig(StrictConfig):
    """Which recommendation data set to load (synthetic world or MovieLens) and its chronological split."""
    source: Literal["synthetic", "synthetic_sequences", "movielens100k", "movielens1m", "interactions"] = "synthetic"
    # MovieLens: its folder (native u.data / ratings.dat files or RecBole atomic files); None: the catalog's
    # configured copy (`llmrec data path movielens100k`). interactions: a user,item[,timestamp] CSV / Parquet file
    path: str | None = None
    synthetic: SyntheticConfig = SyntheticConfig()
    sequences: SequenceWorldConfig = SequenceWorldConfig()  # source synthetic_sequences
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    # a behaviour column "history" (each row: the user's earlier items, the most recent N; DIN's input)
    history: int | None = Field(None, ge=1)
    history_positive_only: bool = False  # history of positively labelled rows only


def load_data(config: DataConfig) -> RecData:
    """The ``RecData`` a ``DataConfig`` names (MovieLens from its configured path or the catalog's copy),
    with a behaviour history column when ``history`` is set."""
    data = _load(config)
    return data if config.history is None else add_history(data, config.history,
                                                           positive_only=config.history_positive_only)


def _load(config: DataConfig) -> RecData:
    if config.source == "synthetic":
        return generate_world(config.synthetic)
    if config.source == "synthetic_sequences":
        return generate_sequences(config.sequences)
    if config.source == "interactions":
        if not config.path:
            raise ConfigError("data.path: the interactions source needs the file's path")
        return load_interactions(config.path)
    return load_movielens(config.path or require_dataset(config.source))
