"""Top-k recommendations for one user from a trained model (``llmrec recommend``), for every family:

- sequential: the user's whole history (the job's sequence view, last ``max_len`` items) -> next-item scores;
- graph: the user's vector against every item;
- ctr / multitask: every catalogue item scored for the user as an impression built from the user's latest
  row, with each item's own attributes (the columns that are constant per item in the data) put in.
Items the user has already interacted with are left out unless ``include_seen``."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from llmrec.data.registry import load_data
from llmrec.data.schema import RecData
from llmrec.data.views import ItemSpace, SeqBatch, user_sequences
from llmrec.errors import ConfigError, DataError
from llmrec.experiments.jobs import knowledge_inputs
from llmrec.models import MODELS
from llmrec.train import PointwiseTask, Trainer
from llmrec.train.export import load_model


@dataclass
class Recommendation:
    """One recommended item: its id, the model's score, its title and what the data says about it (the items
    file's text and categories: ``RecData.item_info``)."""
    item: str
    score: float
    title: str | None = None
    info: dict[str, str] = field(default_factory=dict)


def _check_user(user: str, known, where: str) -> None:
    if user not in known:
        raise DataError(f"user: {user!r} is not a user of {where} ({len(known)} users)")


def item_columns(data: RecData) -> list[str]:
    """Feature columns whose value is the same on every row of an item (the item's attributes)."""
    items = np.asarray(data.columns[data.item_col]).astype(str)
    order = np.argsort(items, kind="stable")
    sorted_items = items[order]
    starts = np.flatnonzero(np.r_[True, sorted_items[1:] != sorted_items[:-1]])
    out = []
    for name in data.fields:
        if name == data.item_col:
            continue
        col = np.asarray(data.columns[name], dtype=object)[order]
        first = np.repeat(col[starts], np.diff(np.r_[starts, len(col)]))
        if all(a == b for a, b in zip(col, first)):
            out.append(name)
    return out


class Recommender:
    """A trained model with its data, loaded once: top-k items for one user or a batch (``llmrec.load``)."""

    def __init__(self, model_dir: str | Path, job, result: dict | None = None) -> None:
        self.model_dir, self.job, self.result = Path(model_dir), job, result
        self.model, self.context = load_model(model_dir)
        self.family = MODELS.get(self.model.config.name).family
        self.data = load_data(job.data)

    def recommend(self, user: str, k: int = 10, include_seen: bool = False) -> list[Recommendation]:
        """The ``k`` best items for ``user``; items the user already interacted with are left out unless
        ``include_seen``."""
        if k < 1:
            raise ConfigError(f"k: must be at least 1, got {k}")
        user = str(user)
        with torch.no_grad():
            if self.family == "sequential":
                scores, names = _sequential_scores(self.model, self.context, self.job, self.data, user, include_seen)
            elif self.family == "graph":
                scores, names = _graph_scores(self.model, self.context, self.data, user, include_seen)
            else:
                scores, names = _pointwise_scores(self.model, self.context, self.job, self.data, user, include_seen)
        info = self.data.item_info
        top = np.argsort(-scores, kind="stable")[:k]
        return [Recommendation(names[i], float(scores[i]), info.get(names[i], {}).get("title"),
                               dict(info.get(names[i], {})))
                for i in top if np.isfinite(scores[i])]

    def recommend_batch(self, users: list[str], k: int = 10, include_seen: bool = False
                        ) -> dict[str, list[Recommendation]]:
        """``recommend`` for every user of ``users`` (the model and data loaded once), by user."""
        return {str(u): self.recommend(u, k, include_seen) for u in users}


def recommend(model_dir, job, user: str, k: int = 10, include_seen: bool = False) -> list[Recommendation]:
    """The ``k`` best items for ``user`` under the model saved in ``model_dir`` (trained with ``job``)."""
    return Recommender(model_dir, job).recommend(user, k, include_seen)


def _ids(space: ItemSpace) -> list[str]:
    names = [""] * space.n_items
    for item, idx in space.items.items():
        names[idx] = item
    return names


def _sequential_scores(model, space: ItemSpace, job, data: RecData, user: str, include_seen: bool):
    _check_user(user, space.users, "the model")
    fresh, by_user, _ = user_sequences(data, job.sequence)
    if user not in by_user:
        raise DataError(f"user: {user!r} has fewer than {job.sequence.min_len} interactions in {data.name}")
    raw = {idx: item for item, idx in fresh.items.items()}
    # the history in the MODEL's ids; items the model never saw (data newer than the model) are left out
    known = [space.items[raw[i]] for i in by_user[user] if raw[i] in space.items]
    if not known:
        raise DataError(f"user: none of {user!r}'s {len(by_user[user])} items is known to the model")
    hist = known[-job.sequence.max_len:]
    items = torch.zeros(1, job.sequence.max_len, dtype=torch.long)
    items[0, -len(hist):] = torch.tensor(hist)
    model.eval()
    scores = model(SeqBatch(items, torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long)))[0].numpy()
    scores[0] = -np.inf
    if not include_seen:
        scores[known] = -np.inf
    return scores, _ids(space)


def _graph_scores(model, space: ItemSpace, data: RecData, user: str, include_seen: bool):
    _check_user(user, space.users, "the model")
    model.eval()
    scores = model.full_scores(torch.tensor([space.users[user]]))[0].numpy().astype(np.float64)
    scores[0] = -np.inf
    if not include_seen:
        mine = np.asarray(data.columns[data.user_col]).astype(str) == user
        seen = [space.items[i] for i in np.asarray(data.columns[data.item_col])[mine].astype(str) if i in space.items]
        scores[seen] = -np.inf
    return scores, _ids(space)


def _pointwise_scores(model, encoder, job, data: RecData, user: str, include_seen: bool):
    users = np.asarray(data.columns[data.user_col]).astype(str)
    mine = np.flatnonzero(users == user)
    _check_user(user, set(users), data.name)
    latest = mine[np.argmax(np.asarray(data.columns[data.time])[mine])]
    items = np.asarray(data.columns[data.item_col]).astype(str)
    names, first = np.unique(items, return_index=True)
    per_item = set(item_columns(data)) | {data.item_col}
    columns = {c: (np.asarray(v)[first] if c in per_item else np.repeat(np.asarray(v)[[latest]], len(names), axis=0))
               for c, v in data.columns.items()}
    batch = encoder.transform(columns, label=data.label, dense_tables=knowledge_inputs(job.knowledge, data)[1])
    scores = Trainer(job.trainer, PointwiseTask()).predict(model, batch).astype(np.float64)
    if not include_seen:
        scores[np.isin(names, items[mine])] = -np.inf
    return scores, [str(n) for n in names]
