"""Build a ``RecData`` from a typed config: the synthetic world or MovieLens-100K."""
from __future__ import annotations

from typing import Literal

from llmrec.config import StrictConfig
from llmrec.data.schema import RecData
from llmrec.data.synthetic import SyntheticConfig, generate_world


class DataConfig(StrictConfig):
    source: Literal["synthetic", "movielens100k"] = "synthetic"
    path: str | None = None  # movielens100k: folder with ml-100k.inter/.user/.item
    synthetic: SyntheticConfig = SyntheticConfig()
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)


def load_data(config: DataConfig) -> RecData:
    if config.source == "synthetic":
        return generate_world(config.synthetic)
    from llmrec.data.movielens import load_movielens100k

    if not config.path:
        raise ValueError("data.path: movielens100k needs the folder of the RecBole atomic files")
    return load_movielens100k(config.path)
