"""IncCTR (papers.md §19) as a component: keep a trained CTR model current day by day without retraining.

    updater = IncCTRUpdater(model, encoder, TrainerConfig(epochs=1), IncCTRConfig(kd_weight=0.5, replay=0.1))
    updater.observe(history_rows)                  # earlier days: what replay samples from
    seconds = updater.update(day_rows, shards.select([day]))   # one day's update; the model is trained in place

One update: the feature module gives ids of the day seen ``min_count`` times new rows (``IdEncoder.extend``,
each started from the out-of-vocabulary row the id used: ``FieldEmbedding.grow``); the model module trains
the warm-started model on the day's rows plus a uniform reservoir of earlier rows (``replay`` x the day's
rows) with knowledge distillation from the model as it was before the update (``DistillTask``, weight
``kd_weight``). ``IncCTRConfig(grow_ids=False, kd_weight=0, replay=0)`` is plain fine-tuning. The
``ctr_incremental`` experiment compares it with batch retraining and fine-tuning."""
from __future__ import annotations

import copy
import time

import numpy as np
import torch
from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.ctr.features import Batch, FeatureEncoder
from llmrec.ctr.ids import IdEncoder
from llmrec.ctr.layers import FieldEmbedding
from llmrec.data.shards import ShardSet
from llmrec.errors import ConfigError
from llmrec.train.loop import Trainer, TrainerConfig
from llmrec.train.tasks import DistillTask, PointwiseTask


class IncCTRConfig(StrictConfig):
    """IncCTR's settings: distillation weight, replay share, new-id rows and their start."""
    kd_weight: float = Field(0.5, ge=0)  # 0: no distillation
    replay: float = Field(0.1, ge=0, le=1)  # reservoir rows per update, as a share of the day's rows; 0: none
    grow_ids: bool = True  # the feature module: new rows for ids seen often enough in the day
    new_row_init: str = "oov"  # how a new row starts (``FieldEmbedding.grow``)
    valid_rows: int = Field(20_000, ge=1)  # the trainer's validation: the last rows of the update's data


def take_rows(cols: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    """The columns restricted to ``idx``."""
    return {k: v[idx] for k, v in cols.items()}


def concat_rows(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rows of ``b`` after the rows of ``a`` (the same columns)."""
    return {k: np.concatenate([a[k], b[k]]) for k in a}


class Reservoir:
    """A uniform sample of ``size`` rows over every day added so far (exact in distribution: the number of
    kept rows from a new day is hypergeometric)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seen, self.rows = size, 0, None
        self.rng = np.random.default_rng(seed)

    def add(self, cols: dict[str, np.ndarray]) -> None:
        """Add a day's rows."""
        m = len(next(iter(cols.values())))
        if self.rows is None:
            k = min(self.size, m)
            self.rows = take_rows(cols, self.rng.choice(m, k, replace=False))
        else:
            have = len(self.rows["label"])
            k_new = int(self.rng.hypergeometric(m, self.seen, min(self.size, self.seen + m)))
            keep = self.rng.choice(have, min(have, min(self.size, self.seen + m) - k_new), replace=False)
            self.rows = concat_rows(take_rows(self.rows, keep), take_rows(cols, self.rng.choice(m, k_new, replace=False)))
        self.seen += m


def fit_rows(model: torch.nn.Module, data: Batch, trainer: TrainerConfig, valid_rows: int,
             task: PointwiseTask | None = None) -> float:
    """Train ``model`` on ``data`` (its last ``valid_rows`` rows the validation); the training seconds."""
    n = len(data)
    valid = data.slice(torch.arange(max(0, n - valid_rows), n))
    return Trainer(trainer, task or PointwiseTask()).fit(model, data, valid).train_seconds


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` in eval mode with no gradients (the distillation teacher)."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def grow_rows(model: torch.nn.Module, encoder: FeatureEncoder, cols: dict[str, np.ndarray],
              min_count: int | None = None) -> torch.Tensor:
    """IncCTR's feature module for a model trained on in-memory rows: ``encoder.extend`` gives the values of
    ``cols`` seen ``min_count`` times rows of their own, and every categorical table of ``model`` grows by those
    rows, each started from the unknown row the value used. Returns the map from every row of the grown table
    to the row the model read before (``DistillTask``'s ``teacher_rows``)."""
    if encoder.behavior:
        raise ConfigError("update.grow_ids: models over behaviour sequences (DIN) do not grow new-id rows; "
                          "update them without grow_ids")
    tables = [m for m in model.modules() if isinstance(m, FieldEmbedding)]
    before = encoder.n_categorical_rows()
    if not tables or any(m.table.weight.shape[0] != before for m in tables):
        raise ConfigError(f"update.grow_ids: {type(model).__name__} does not keep its id rows in one table of "
                          f"the encoder's {before} rows; update it without grow_ids")
    previous = torch.from_numpy(encoder.extend(cols, min_count))
    for m in tables:
        m.grow(previous, "oov")
    return torch.cat([torch.arange(before), previous])


class IncCTRUpdater:
    """A trained model and its id encoder, updated in place one day at a time (see the module doc)."""

    def __init__(self, model: torch.nn.Module, encoder: IdEncoder, trainer: TrainerConfig,
                 config: IncCTRConfig | None = None, seed: int = 0) -> None:
        self.model, self.encoder, self.trainer = model, encoder, trainer
        self.config = config or IncCTRConfig()
        self.seed = seed
        self.reservoir: Reservoir | None = None

    def observe(self, cols: dict[str, np.ndarray], size: int | None = None) -> None:
        """Rows already seen (earlier days): replay samples from them; ``size`` fixes the reservoir's size
        (default: ``replay`` x these rows)."""
        if self.reservoir is None:
            n = len(next(iter(cols.values())))
            self.reservoir = Reservoir(size if size is not None else int(self.config.replay * n), self.seed)
        self.reservoir.add(cols)

    def update(self, day: dict[str, np.ndarray], day_shards: ShardSet | None = None) -> float:
        """Train on one day's rows (grown, distilled and replayed as configured); the day then joins the
        reservoir. ``day_shards``: the same day as shards, which the feature module counts ids over. Returns
        the seconds spent (encoder work and training)."""
        c = self.config
        t0 = time.perf_counter()
        task = None
        cols = day
        if c.grow_ids:
            if day_shards is None:
                raise ValueError("day_shards: growing new-id rows counts the day's ids from its shards")
            teacher = frozen_copy(self.model)
            teacher_rows = self.encoder.n_categorical_rows()
            previous = self.encoder.extend(day_shards)
            for m in self.model.modules():
                if isinstance(m, FieldEmbedding):
                    m.grow(torch.from_numpy(previous), c.new_row_init)
            row_map = torch.cat([torch.arange(teacher_rows), torch.from_numpy(previous)])
            task = DistillTask(teacher, c.kd_weight, row_map) if c.kd_weight else None
        elif c.kd_weight:
            task = DistillTask(frozen_copy(self.model), c.kd_weight)
        if c.replay and self.reservoir is not None and self.reservoir.rows is not None:
            cols = concat_rows(day, self.reservoir.rows)
        data = self.encoder.transform(cols)
        prep = time.perf_counter() - t0
        seconds = prep + fit_rows(self.model, data, self.trainer, c.valid_rows, task)
        if self.reservoir is None:
            self.observe(day)
        else:
            self.reservoir.add(day)
        return seconds
