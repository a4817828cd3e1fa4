"""The impressions view (the ctr and multitask families): rows split by time (or a seeded random order),
typed fields encoded by a ``FeatureEncoder`` fitted on the training rows, knowledge as dense features, and
every catalogue item scored for a user as an impression built from the user's latest row."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmrec.ctr.features import Batch, FeatureEncoder, FeatureSpec
from llmrec.data.multilabel import check_reported, label_matrix
from llmrec.data.registry import split_rows
from llmrec.data.schema import RecData
from llmrec.errors import ConfigError
from llmrec.families.base import VIEWS, Prepared, View, check_user
from llmrec.families.knowledge import knowledge_inputs
from llmrec.train import PointwiseTask, Trainer
from llmrec.train.assign import AssignedIds


def feature_specs(data: RecData, features: list[FeatureSpec] | None) -> list[FeatureSpec]:
    """The job's features, or every typed field of the data set when none are given; unknown columns are errors."""
    if features is None:
        return [FeatureSpec(name=n, type=t) if t != "behavior" else  # a history: its longest sequence
                FeatureSpec(name=n, type=t, target=data.item_col,
                            max_len=max(1, max((len(h) for h in data.columns[n]), default=1)))
                for n, t in data.fields.items()]
    for f in features:
        if f.type != "dense" and f.name not in data.columns:
            raise ConfigError(f"features.{f.name}: not a column of {data.name} (have {sorted(data.fields)})")
    return features


def attach_labels(batch: Batch, data: RecData, rows: np.ndarray, complete: bool) -> None:
    """A multi-label data set's labels and their codes on ``batch`` (``llmrec.data.multilabel.label_matrix``)."""
    labels, codes = label_matrix(data, rows, complete=complete)
    batch.labels, batch.observed = torch.from_numpy(labels), torch.from_numpy(codes)


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


class ImpressionView(View):
    """Impression rows with labels: CTR and multi-task models."""
    name = "impressions"

    def prepare(self, job: Any, data: RecData) -> Prepared:
        """The job's data as impression rows: a time (or seeded random) split, a FeatureEncoder fitted on the
        training rows, knowledge as dense features."""
        tr, va, te = split_rows(data, job.data)
        extra_specs, tables = knowledge_inputs(job.knowledge, data, tr, job.data)
        enc = FeatureEncoder(feature_specs(data, job.features) + extra_specs).fit(data.take(tr))
        batches = [enc.transform(data.take(rows), label=data.label, dense_tables=tables) for rows in (tr, va, te)]
        if data.tasks:  # multi-label view: train / valid know what the advertisers report, test has every label
            for b, rows, complete in zip(batches, (tr, va, te), (False, False, True)):
                attach_labels(b, data, rows, complete)
            check_reported(data.tasks, batches[0].observed.numpy())
        return Prepared(data, enc, *batches, test_groups=data.columns[data.user_col][te],
                        test_scenarios=data.columns[data.scenario_col][te] if data.scenario_col else None)

    def save_context(self, folder: Path, context: FeatureEncoder | AssignedIds) -> None:
        """Write the context into the model folder being saved: the feature encoder, or the id assignment a
        job with ``assign`` ended with."""
        if isinstance(context, AssignedIds):
            context.save(folder)
        else:
            (folder / "encoder.json").write_text(context.to_json())

    def load_context(self, folder: Path) -> FeatureEncoder | AssignedIds:
        """The context ``save_context`` wrote."""
        text = (folder / "encoder.json").read_text()
        if AssignedIds.wrote(text):
            return AssignedIds.load(folder)
        return FeatureEncoder.from_json(text)

    def scores(self, model, context, job, data, user, include_seen):
        """A score per item for ``user`` (``-inf``: never recommend) and the item ids."""
        users = np.asarray(data.columns[data.user_col]).astype(str)
        mine = np.flatnonzero(users == user)
        check_user(user, set(users), data.name)
        latest = mine[np.argmax(np.asarray(data.columns[data.time])[mine])]
        items = np.asarray(data.columns[data.item_col]).astype(str)
        names, first = np.unique(items, return_index=True)
        per_item = set(item_columns(data)) | {data.item_col}
        columns = {c: (np.asarray(v)[first] if c in per_item
                       else np.repeat(np.asarray(v)[[latest]], len(names), axis=0)) for c, v in data.columns.items()}
        batch = context.transform(columns, label=data.label, dense_tables=knowledge_inputs(job.knowledge, data)[1])
        scores = Trainer(job.trainer, PointwiseTask()).predict(model, batch).astype(np.float64)
        if not include_seen:
            scores[np.isin(names, items[mine])] = -np.inf
        return scores, [str(n) for n in names]


VIEWS.add("impressions", ImpressionView())
