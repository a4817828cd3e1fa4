"""A family's view of a data set as an object: ``View`` prepares a job's data (split, encoders, knowledge),
saves and loads what its models are built from (the context: a fitted ``FeatureEncoder`` or an
``ItemSpace``), and scores every item for one user (``llmrec.recommend``). ``VIEWS`` holds one per data view
that the training job can train; a family names its view (``llmrec.models.FAMILIES``), so the job, the
model files and recommendations ask the view instead of branching on family names. A new trainable family
is its ``Family`` record plus, when its view is new, one module registering a ``View`` here."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file, save_file

from llmrec.data.views import ItemSpace

from llmrec.data.schema import RecData
from llmrec.errors import ConfigError, DataError
from llmrec.models import FAMILIES, build_model
from llmrec.registry import Registry


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


class View:
    """How one data view reaches the training job, the model files and recommendations."""
    name = ""

    def prepare(self, job: Any, data: RecData) -> Prepared:
        """``data`` split and encoded for ``job`` (its knowledge included)."""
        raise NotImplementedError

    def save_context(self, folder: Path, context: Any) -> None:
        """Write the context (encoders, id maps) into a model folder being saved."""
        raise NotImplementedError

    def load_context(self, folder: Path) -> Any:
        """The context ``save_context`` wrote."""
        raise NotImplementedError

    def scores(self, model: Any, context: Any, job: Any, data: RecData, user: str, include_seen: bool
               ) -> tuple[np.ndarray, list[str]]:
        """A score per item id (``-inf`` for items never to recommend) and the ids, for one user."""
        raise NotImplementedError

    # what a saved model folder holds besides the context and config.json (``llmrec.train.export``)
    state_file = "model.safetensors"

    def save_state(self, folder: Path, model: Any) -> None:
        """Write the model's trained state (its weights) into a model folder being saved."""
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  str(folder / self.state_file))

    def load_state(self, folder: Path, context: Any, config: Any) -> Any:
        """The model ``save_state`` wrote, rebuilt from its config and context, in eval mode."""
        model = build_model(context, config)
        model.load_state_dict(load_file(str(folder / self.state_file)))
        model.eval()
        return model


class FitView(View):
    """A view whose models are fitted, not trained by the one training loop (no trainer: session KNN)."""

    def fit(self, job: Any, p: Prepared, config: Any) -> tuple[Any, dict]:
        """Build the model of ``config`` from the context, fit it on ``p.train``: the model and its result
        (validation and test metrics, like the loop's)."""
        raise NotImplementedError

    def evaluate(self, job: Any, p: Prepared, model: Any) -> dict:
        """Test metrics of a fitted model."""
        raise NotImplementedError


def save_space(folder: Path, space: ItemSpace) -> None:
    """The id maps of a ranking view (``encoder.json``)."""
    (folder / "encoder.json").write_text(json.dumps({"users": space.users, "items": space.items}))


def load_space(folder: Path) -> ItemSpace:
    """The id maps ``save_space`` wrote."""
    raw = json.loads((folder / "encoder.json").read_text())
    return ItemSpace(users=raw["users"], items=raw["items"])


def item_ids(space: ItemSpace) -> list[str]:
    """Item ids by index (index 0, the padding, is "")."""
    names = [""] * space.n_items
    for item, idx in space.items.items():
        names[idx] = item
    return names


def indices_of(items: list[str], catalogue: list[str], what: str) -> np.ndarray:
    """The indices in ``catalogue`` of the ``items`` it holds (in order, others left out); a named error when
    none is there (``what``: the catalogue, in words)."""
    index = {item: n for n, item in enumerate(catalogue)}
    found = np.array([index[str(i)] for i in items if str(i) in index], np.int64)
    if not len(found):
        raise DataError(f"items: none of {list(items)[:5]} is {what}")
    return found


def check_user(user: str, known, where: str) -> None:
    """A named error unless ``user`` is among ``known`` (the model's or the data's users)."""
    if user not in known:
        raise DataError(f"user: {user!r} is not a user of {where} ({len(known)} users)")


VIEWS: Registry[View] = Registry("data view")


def view_of(family: str) -> View:
    """The view a family's models read; a named error for families the training job does not train."""
    name = FAMILIES.get(family).view
    if name not in VIEWS:
        trainable = sorted(f for f in FAMILIES.names() if FAMILIES.get(f).view in VIEWS)
        raise ConfigError(f"model: the {family} family ({name}) is trained by its own experiment kind, not by the "
                          f"training job (the job trains {trainable})")
    return VIEWS.get(name)
