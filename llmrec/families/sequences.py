"""The sequences view (the sequential family): each user's interactions in time order, leave-one-out, the
``ItemSpace`` id maps as the context, item knowledge fused into the item table of models with a content
input, and next-item scores from a user's whole history."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmrec.data.schema import RecData
from llmrec.data.views import ItemSpace, SeqBatch, sequence_view, user_sequences
from llmrec.errors import DataError
from llmrec.families.base import VIEWS, Prepared, View, check_user, item_ids, load_space, save_space
from llmrec.families.knowledge import item_vector_matrix


class SequenceView(View):
    """Time-ordered user histories: next-item models, full ranking."""
    name = "sequences"

    def prepare(self, job: Any, data: RecData) -> Prepared:
        """The job's data as leave-one-out sequences; item knowledge fused into the item table."""
        space, tr, va, te = sequence_view(data, config=job.sequence)
        if job.knowledge is not None:  # item vectors fused into the item table (LLM / text knowledge)
            space = replace(space, item_vectors=item_vector_matrix(job.knowledge, data, space))
        return Prepared(data, space, tr, va, te)

    def save_context(self, folder: Path, context: ItemSpace) -> None:
        """Write the context into the model folder being saved."""
        save_space(folder, context)

    def load_context(self, folder: Path) -> ItemSpace:
        """The context ``save_context`` wrote."""
        return load_space(folder)

    def scores(self, model, context, job, data, user, include_seen):
        """A score per item for ``user`` (``-inf``: never recommend) and the item ids."""
        check_user(user, context.users, "the model")
        fresh, by_user, _ = user_sequences(data, job.sequence)
        if user not in by_user:
            raise DataError(f"user: {user!r} has fewer than {job.sequence.min_len} interactions in {data.name}")
        raw = {idx: item for item, idx in fresh.items.items()}
        # the history in the MODEL's ids; items the model never saw (data newer than the model) are left out
        known = [context.items[raw[i]] for i in by_user[user] if raw[i] in context.items]
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
        return scores, item_ids(context)


VIEWS.add("sequences", SequenceView())
