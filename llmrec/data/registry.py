"""Build a ``RecData`` from a typed config: the synthetic world, the synthetic sequence world or MovieLens."""
from __future__ import annotations

from typing import Literal

import numpy as np

from pydantic import Field, model_validator

from llmrec.config import StrictConfig
from llmrec.data.catalog import require_dataset
from llmrec.data.files import FileReport, FilesConfig, check_files, load_files
from llmrec.data.interactions import load_interactions
from llmrec.data.movielens import load_movielens
from llmrec.data.multilabel import (MOVIELENS_TASKS, SYNTHETIC_TASKS, MultiLabelConfig, movielens_labels,
                                    multi_label_view)
from llmrec.data.schema import RecData
from llmrec.data.views import add_history, add_search_history
from llmrec.errors import ConfigError, DataError
from llmrec.data.synthetic import SequenceWorldConfig, SyntheticConfig, generate_sequences, generate_world


class DataConfig(StrictConfig):
    """Which recommendation data set to load (synthetic world or MovieLens) and its chronological split."""
    source: Literal["synthetic", "synthetic_sequences", "movielens100k", "movielens1m", "interactions",
                    "files"] = "synthetic"
    # MovieLens: its folder (native u.data / ratings.dat files or RecBole atomic files); None: the catalog's
    # configured copy (`llmrec data path movielens100k`). interactions: a user,item[,timestamp] CSV / Parquet file
    path: str | None = None
    synthetic: SyntheticConfig = SyntheticConfig()
    sequences: SequenceWorldConfig = SequenceWorldConfig()  # source synthetic_sequences
    files: FilesConfig | None = None  # source files: your interactions (+ items, users) files and their columns
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    # impression rows (CTR, multitask): split in time order, or in a seeded random order (each part then kept
    # in time order) for parity out of sample over several split seeds. The graph and sequential views have
    # their own (``graph.split_seed``; leave-one-out)
    split_order: Literal["time", "random"] = "time"
    split_seed: int = 2020
    # a behaviour column "history" (each row: the user's earlier items, the most recent N; DIN's input)
    history: int | None = Field(None, ge=1)
    history_positive_only: bool = False  # history of positively labelled rows only

    # several funnel labels with simulated missingness (KAML): synthetic click / cart / purchase, MovieLens
    # rated / liked / loved (``llmrec.data.multilabel``)
    multi_label: MultiLabelConfig | None = None
    # columns queries / query_key / searched: each row's N most recent earlier searches (QueryRec's input)
    search_history: int | None = Field(None, ge=1)


    @model_validator(mode="after")
    def _files(self) -> "DataConfig":
        if self.source == "files" and self.files is None:
            raise ValueError("files: source files needs a files block (interactions, columns; llmrec.data.files)")
        if self.files is not None and self.source != "files":
            raise ValueError(f"files: only read with source: files (source is {self.source!r})")
        return self


def split_rows(data: RecData, config: DataConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train / valid / test row indices of ``data`` as ``config`` splits them (``split``, ``split_order``,
    ``split_seed``)."""
    if config.split_order == "time":
        return data.chronological_split(config.split)
    order = np.argsort(data.columns[data.time], kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    perm = np.random.default_rng(config.split_seed).permutation(len(data))
    a = int(len(perm) * config.split[0])
    b = int(len(perm) * (config.split[0] + config.split[1]))
    return tuple(part[np.argsort(rank[part], kind="stable")] for part in (perm[:a], perm[a:b], perm[b:]))


def load_data(config: DataConfig) -> RecData:
    """The ``RecData`` a ``DataConfig`` names (MovieLens from its configured path or the catalog's copy),
    with a behaviour history column when ``history`` is set."""
    data = _load(config)
    if config.multi_label is not None:
        data = _multi_label(data, config)
    if config.search_history is not None:
        data = add_search_history(data, config.search_history)
    return data if config.history is None else add_history(data, config.history,
                                                           positive_only=config.history_positive_only)


def _multi_label(data: RecData, config: DataConfig) -> RecData:
    c = config.multi_label
    assert c is not None
    if config.source == "synthetic":
        return multi_label_view(data, SYNTHETIC_TASKS, c)
    if config.source in ("movielens100k", "movielens1m"):
        return multi_label_view(movielens_labels(data, c.negatives, c.seed), MOVIELENS_TASKS, c)
    raise ConfigError(f"data.multi_label: the simulated funnel exists for the synthetic world and MovieLens, not "
                      f"{config.source!r}")


def _load(config: DataConfig) -> RecData:
    if config.source == "synthetic":
        s = config.synthetic
        if config.multi_label is not None and not s.funnel:
            s = s.model_copy(update={"funnel": True})
        return generate_world(s)
    if config.source == "synthetic_sequences":
        return generate_sequences(config.sequences)
    if config.source == "files":
        assert config.files is not None
        return load_files(config.files)
    if config.source == "interactions":
        if not config.path:
            raise ConfigError("data.path: the interactions source needs the file's path")
        return load_interactions(config.path)
    return load_movielens(config.path or require_dataset(config.source))


def check_data(config: DataConfig) -> FileReport:
    """``llmrec data check``: what the data set holds and, for your own files, which columns are used or
    ignored; problems land in ``errors`` (one line each) instead of raising."""
    if config.source == "files":
        assert config.files is not None
        return check_files(config.files)
    rep = FileReport()
    try:
        data = load_data(config)
    except (DataError, OSError) as e:
        rep.errors.append(str(e))
        return rep
    c = data.columns
    rep.rows, rep.users, rep.items = len(data), len(set(c[data.user_col])), len(set(c[data.item_col]))
    rep.positives = int(np.asarray(c[data.label]).sum())
    t = np.asarray(c[data.time], dtype=np.float64)
    rep.time_range, rep.time_unsorted_rows = (float(t.min()), float(t.max())), int((np.diff(t) < 0).sum())
    keys = list(zip(c[data.user_col], c[data.item_col], t))
    rep.duplicates = len(keys) - len(set(keys))
    rep.used[data.name] = sorted(data.fields)
    rep.ignored[data.name] = sorted(set(c) - set(data.fields) - {data.label, data.time})
    return rep
