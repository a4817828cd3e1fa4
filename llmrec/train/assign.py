"""AutoAssign+ (papers.md §20) as a training procedure: a CTR model trained chunk by chunk through an
``IdAssigner`` (``llmrec.ctr.assign``) that decides which ids get rows of their own.

    model, assigner, chunks = stream_assigned(build, assigner, trainer, read, n)

For chunk t = 0 .. n-2: the assigner decides the ids of chunk t (new rows appended to the model's table,
started from their slot's row or at random; evicted rows freed and restarted), the model trains one pass over
chunk t, then is tested on chunk t + 1 (test-then-train: AUC overall and on rows whose id in ``rare_fields``
had at most ``rare_max`` earlier occurrences, and the rows in use); the per-row log loss of chunk t + 1 is the
reward of chunk t's decisions (``IdAssigner.learn``). The ``ctr_assign`` experiment and the training job's
``assign:`` option both call it; the job's last chunk is its validation rows, so every training chunk is
trained on, and ``AssignedIds`` (the assigner with the hashing of raw values) is saved with the model to score
new rows."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.ctr.assign import AssignConfig, IdAssigner
from llmrec.ctr.features import Batch
from llmrec.ctr.ids import IdEncoder
from llmrec.ctr.layers import FieldEmbedding
from llmrec.data.shards import hashed_columns
from llmrec.errors import ConfigError
from llmrec.metrics import auc, logloss
from llmrec.train.loop import Trainer, TrainerConfig
from llmrec.train.tasks import PointwiseTask

Columns = dict[str, np.ndarray]


class AssignOption(StrictConfig):
    """The training job's ``assign`` option (CTR): the training rows in time order cut into ``chunks``, each
    trained on once after the assigner decided its ids (``assigner``: AutoAssign+'s policy, or the
    ``min_count`` / ``keep_all`` rules); rare-id AUC reported on ``rare_fields`` (default: user and item)."""
    chunks: int = Field(10, ge=2)
    assigner: AssignConfig = AssignConfig()
    rare_fields: list[str] | None = None
    rare_max: int = Field(5, ge=0)
    epochs_per_chunk: int = Field(1, ge=1)  # passes over each chunk (the job's trainer.epochs is not used)
    valid_rows: int = Field(5000, ge=1)  # the trainer's validation within a chunk: its first rows


def grow_assigned(model: torch.nn.Module, assigner: IdAssigner, starts: list[tuple[int, int]], init: str) -> None:
    """Append / restart the exclusive rows the assigner created: from their slot's row or N(0, 1e-4)."""
    for m in model.modules():
        if not isinstance(m, FieldEmbedding):
            continue
        n = m.table.weight.shape[0]
        new = sorted((r, src) for r, src in starts if r >= n)
        if assigner.n_categorical_rows() > n:
            need = assigner.n_categorical_rows() - n
            src = torch.tensor([s for _, s in new] + [0] * (need - len(new)), dtype=torch.long)
            m.grow(src, "oov" if init == "slot" else "random")
        with torch.no_grad():
            w = m.table.weight
            for r, src in starts:
                if r < n:  # a reused (evicted) row starts again
                    w[r] = w[src] if init == "slot" else torch.randn(w.shape[1]) * 1e-4


def stream_assigned(model: torch.nn.Module, assigner: IdAssigner, trainer: TrainerConfig,
                    read: Callable[[int], Columns], n: int, rare_fields: list[str], rare_max: int,
                    valid_rows: int = 5000, label: str = "") -> list[dict]:
    """Train ``model`` on chunks 0 .. n-2 (``read(t)``: a chunk's columns, categorical ids as int64), each
    tested on the next chunk, whose rows then score the decisions (module docstring); per tested chunk: AUC,
    log loss, rare-id AUC, rows in use and the policy's learning statistics."""
    unknown = sorted(set(rare_fields) - set(assigner.fields))
    if unknown:
        raise ConfigError(f"rare_fields: {unknown} are not categorical fields of the data ({assigner.fields})")
    out = []
    nxt_cols = read(0)
    for t in range(n - 1):
        cols, nxt_cols = nxt_cols, read(t + 1)
        grow_assigned(model, assigner, assigner.decide(cols, t), assigner.config.init)
        train = assigner.transform(cols, t)
        fit = Trainer(trainer).fit(model, train, train.slice(torch.arange(min(len(train), valid_rows))))
        test = assigner.transform(nxt_cols, t + 1)
        p = PointwiseTask().predict(model, test, Trainer(trainer))
        y = test.label.numpy()
        rare = np.zeros(len(y), bool)
        for f in rare_fields:
            j = assigner.fields.index(f)
            rare |= np.array([assigner.count[j].get(i, 0) <= rare_max for i in nxt_cols[f].tolist()])
        stats = assigner.learn(nxt_cols, lambda b: PointwiseTask().predict(model, b, Trainer(trainer)), t + 1)
        out.append({"chunk": t + 1, "auc": auc(y, p), "logloss": logloss(y, p),
                    "auc_rare": auc(y[rare], p[rare]) if len(np.unique(y[rare])) == 2 else None,
                    "rare_rows": int(rare.sum()), "rows_in_use": assigner.memory_rows(),
                    "train_rows": len(train), "train_seconds": fit.train_seconds, **stats})
        print(f"{label} chunk {t + 1}: AUC {out[-1]['auc']:.4f}, rare {out[-1]['auc_rare'] or 0:.4f}, "
              f"rows {out[-1]['rows_in_use']:,}", flush=True)
    return out


class AssignedIds:
    """A trained ``IdAssigner`` as a model's encoder: raw rows are hashed and encoded under the assignment
    the stream ended with (``chunk``: the stream's last). Duck-types what CTR models and the impressions view
    read of a ``FeatureEncoder``."""

    def __init__(self, assigner: IdAssigner, chunk: int, label: str) -> None:
        self.assigner, self.chunk, self.label = assigner, chunk, label
        self.categorical, self.numerical = assigner.categorical, assigner.numerical
        self.multi_hot, self.dense, self.behavior = [], [], []

    def n_categorical_rows(self) -> int:
        """Rows of the model's table (shared + exclusive)."""
        return self.assigner.n_categorical_rows()

    def offsets(self) -> dict[str, int]:
        """Start of each field's shared rows."""
        return self.assigner.offsets()

    def cardinalities(self) -> dict[str, int]:
        """Shared rows per field."""
        return self.assigner.cardinalities()

    @property
    def embedded_fields(self) -> list[str]:
        """Fields in the order the model stacks them (categorical, then numerical)."""
        return [s.name for s in (*self.categorical, *self.numerical)]

    def transform(self, columns: dict[str, np.ndarray], label: str | None = "label", dense_tables=None) -> Batch:
        """Encode raw rows (the data's own columns) under the final assignment."""
        cols = hashed_columns(columns, self.assigner.fields, [s.name for s in self.numerical], label)
        if label is None:
            cols["label"] = np.zeros(len(next(iter(cols.values()))), np.int8)
        return self.assigner.transform(cols, self.chunk)

    KIND = "assigned_ids"

    def save(self, folder: Path) -> None:
        """Everything the assignment needs to encode again: ``encoder.json`` (its settings and the numbers'
        encoder) and ``assigner.pt`` (id tables and policy weights; tensors and plain values only)."""
        a = self.assigner

        def table(d: dict[int, int]) -> torch.Tensor:
            return torch.tensor(sorted(d.items()), dtype=torch.long).reshape(-1, 2)

        (folder / "encoder.json").write_text(json.dumps({
            "kind": self.KIND, "config": a.config.model_dump(mode="json"), "numbers": a.numbers.to_json(),
            "n_chunks": a.n_chunks, "chunk": self.chunk, "label": self.label, "rows_total": a.rows_total,
            "threshold": a.threshold}))
        torch.save({"free": torch.tensor(a.free, dtype=torch.long), "slot": [table(d) for d in a.slot],
                    "own": [table(d) for d in a.own], "count": [table(d) for d in a.count],
                    "actor": a.actor.state_dict(), "critic": a.critic.state_dict()}, folder / "assigner.pt")

    @classmethod
    def wrote(cls, encoder_json: str) -> bool:
        """Whether a model folder's ``encoder.json`` is an assignment's (``save``)."""
        try:
            return json.loads(encoder_json).get("kind") == cls.KIND
        except (ValueError, AttributeError):
            return False

    @classmethod
    def load(cls, folder: Path) -> "AssignedIds":
        """What ``save`` wrote into ``folder``."""
        meta = json.loads((folder / "encoder.json").read_text())
        d = torch.load(folder / "assigner.pt", weights_only=True)
        a = IdAssigner(AssignConfig(**meta["config"]), IdEncoder.from_json(meta["numbers"]), meta["n_chunks"])
        a.rows_total, a.threshold, a.free = meta["rows_total"], meta["threshold"], d["free"].tolist()
        for name in ("slot", "own", "count"):
            setattr(a, name, [{k: v for k, v in t.tolist()} for t in d[name]])
        a.actor.load_state_dict(d["actor"])
        a.critic.load_state_dict(d["critic"])
        return cls(a, meta["chunk"], meta["label"])
