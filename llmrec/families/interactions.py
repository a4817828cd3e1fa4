"""The interactions view (the graph family): every interaction a (user, item) edge, split per user, the
``ItemSpace`` id maps plus the training graph as the context, item knowledge as an item vector matrix for
models with a content input, and a user's vector scored against every item."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmrec.data.graph import InteractionGraph
from llmrec.data.schema import RecData
from llmrec.data.views import ItemSpace, interaction_view
from llmrec.families.base import VIEWS, Prepared, View, check_user, item_ids, load_space, save_space
from llmrec.families.knowledge import item_vector_matrix


class InteractionView(View):
    """User-item edges: BPR-trained graph models, full ranking."""
    name = "interactions"

    def prepare(self, job: Any, data: RecData) -> Prepared:
        """The job's data as the user-item graph split per user; item knowledge as an item vector matrix."""
        space, tr, va, te = interaction_view(data, job.data.split, job.graph)
        if job.knowledge is not None:  # item vectors for content branches (ConFRec)
            space = replace(space, item_vectors=item_vector_matrix(job.knowledge, data, space))
        return Prepared(data, space, tr, va, te)

    def save_context(self, folder: Path, context: ItemSpace) -> None:
        """Write the context into the model folder being saved."""
        save_space(folder, context)
        if context.graph is not None:  # graph models are rebuilt on their training edges
            context.graph.save(folder / "graph.npz")

    def load_context(self, folder: Path) -> ItemSpace:
        """The context ``save_context`` wrote."""
        graph = InteractionGraph.load(folder / "graph.npz") if (folder / "graph.npz").exists() else None
        return replace(load_space(folder), graph=graph)

    def scores(self, model, context, job, data, user, include_seen):
        """A score per item for ``user`` (``-inf``: never recommend) and the item ids."""
        check_user(user, context.users, "the model")
        model.eval()
        scores = model.full_scores(torch.tensor([context.users[user]]))[0].numpy().astype(np.float64)
        scores[0] = -np.inf
        if not include_seen:
            mine = np.asarray(data.columns[data.user_col]).astype(str) == user
            mine_items = np.asarray(data.columns[data.item_col])[mine].astype(str)
            seen = [context.items[i] for i in mine_items if i in context.items]
            scores[seen] = -np.inf
        return scores, item_ids(context)


VIEWS.add("interactions", InteractionView())
