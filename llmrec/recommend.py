"""Top-k recommendations for a user or a batch from a trained model (``llmrec recommend``, ``llmrec.load``):
the model's family view scores every item (``llmrec.families``):

- sequential: the user's whole history (the job's sequence view, last ``max_len`` items) -> next-item scores;
- graph: the user's vector against every item;
- ctr / multitask: every catalogue item scored for the user as an impression built from the user's latest
  row, with each item's own attributes (the columns that are constant per item in the data) put in;
- session: the next click after the user's latest session in the data (``recommend_session``: after any
  session of item ids);
- push: users, not items: ``audience(items, k)`` ranks the users to push a campaign of those seed items to;
- diversify: ``diversify(items, k)`` orders a set of candidate items (the query: their mean vector).
Items the user has already interacted with are left out unless ``include_seen``."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from llmrec.data.registry import load_data
from llmrec.errors import ConfigError
from llmrec.families import view_of
from llmrec.families.impressions import item_columns
from llmrec.models import MODELS
from llmrec.train.export import load_model


@dataclass
class Recommendation:
    """One recommended item: its id, the model's score, its title and what the data says about it (the items
    file's text and categories: ``RecData.item_info``)."""
    item: str
    score: float
    title: str | None = None
    info: dict[str, str] = field(default_factory=dict)


def _check_k(k: int) -> None:
    """A named error for a list length below 1."""
    if k < 1:
        raise ConfigError(f"k: must be at least 1, got {k}")


@dataclass
class AudienceMember:
    """One user to push a campaign to: the user id and the push model's score."""
    user: str
    score: float


class Recommender:
    """A trained model with its data, loaded once: top-k items for one user or a batch (``llmrec.load``)."""

    def __init__(self, model_dir: str | Path, job, result: dict | None = None) -> None:
        self.model_dir, self.job, self.result = Path(model_dir), job, result
        self.model, self.context = load_model(model_dir)
        self.family = MODELS.get(self.model.config.name).family
        self.view = view_of(self.family)
        self.data = load_data(job.data)

    def recommend(self, user: str, k: int = 10, include_seen: bool = False) -> list[Recommendation]:
        """The ``k`` best items for ``user``; items the user already interacted with are left out unless
        ``include_seen``."""
        _check_k(k)
        user = str(user)
        with torch.no_grad():
            scores, names = self.view.scores(self.model, self.context, self.job, self.data, user, include_seen)
        return self._top(scores, names, k)

    def recommend_session(self, items: list[str], k: int = 10, include_seen: bool = False) -> list[Recommendation]:
        """Session models: the ``k`` best next clicks after a session given as item ids (an anonymous
        visitor's clicks, oldest first); the session's own items are left out unless ``include_seen``."""
        _check_k(k)
        if not hasattr(self.view, "session_scores"):
            raise ConfigError(f"session: {self.model.config.name} is a {self.family} model; only session models "
                              "recommend from a session of items (give a user instead)")
        scores = self.view.session_scores(self.model, self.context, [str(i) for i in items])
        names = list(self.context.item_ids)
        if not include_seen:
            scores[[n for n, i in enumerate(names) if i in {str(x) for x in items}]] = -np.inf
        return self._top(scores, names, k)

    def audience(self, items: list[str], k: int = 100) -> list[AudienceMember]:
        """Push models: the ``k`` users to push a campaign to, the campaign given by its seed items (item ids)."""
        _check_k(k)
        if not hasattr(self.view, "audience_scores"):
            raise ConfigError(f"campaign: {self.model.config.name} is a {self.family} model; only push models rank "
                              "users for a campaign")
        scores = self.view.audience_scores(self.model, self.context, [str(i) for i in items])
        top = np.argsort(-scores, kind="stable")[:k]
        return [AudienceMember(self.context.users[i], float(scores[i])) for i in top]

    def diversify(self, items: list[str], k: int = 10) -> list[Recommendation]:
        """Diversify models: ``items`` (candidate item ids) in the order the model lists them, ``k`` long; the
        score is 1 / rank."""
        _check_k(k)
        if not hasattr(self.view, "diversified"):
            raise ConfigError(f"items: {self.model.config.name} is a {self.family} model; only diversify models "
                              "order a set of candidates")
        order = self.view.diversified(self.model, self.context, [str(i) for i in items], k)
        info = self.data.item_info
        names = self.context.item_ids
        return [Recommendation(names[i], 1.0 / rank, info.get(names[i], {}).get("title"), dict(info.get(names[i], {})))
                for rank, i in enumerate(order, 1)]

    def _top(self, scores: np.ndarray, names: list[str], k: int) -> list[Recommendation]:
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


__all__ = ["AudienceMember", "Recommendation", "Recommender", "item_columns", "recommend"]
