"""Training tasks: what a family's model is trained and selected on, behind one small protocol.

A task turns rows into a batch (``make_batch``; negative sampling happens here, from the loop's
checkpointed generator), gives one loss per row (``row_loss``; the loop reduces them so DDP and a single
process optimize the same global mean) and evaluates a model on a split (``evaluate``), naming the metric
early stopping and model selection follow (``primary``, higher is better).

| task        | rows          | loss                         | metrics                                  |
|-------------|---------------|------------------------------|------------------------------------------|
| pointwise   | ``Batch``     | BCE with logits              | AUC (primary), logloss, gAUC with groups  |
| bpr         | ``PairBatch`` | -log sigmoid(s_pos - s_neg)  | full-sort Recall/NDCG/Hit@10,20, seen excl.  |
| next_item   | ``SeqBatch``  | softmax CE over every item   | full-sort HR/NDCG@k                       |
| multilabel  | ``Batch`` + labels [N, T] | masked BCE per task (+ RLU ranking) | AUC per task, mean AUC (primary) |"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Literal, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.data.multilabel import ATTRIBUTED, REPORTED
from llmrec.data.views import PairBatch, RankingEval, SeqBatch
from llmrec.errors import ConfigError, DataError
from llmrec.metrics import auc, full_sort_metrics, group_auc, logloss
from llmrec.registry import Registry


class EvalContext(Protocol):
    """What a task needs to evaluate: device, batch size and autocast."""
    eval_batch_size: int
    device: str

    def autocast(self) -> contextlib.AbstractContextManager:
        """The mixed-precision context evaluation runs under."""


class Task(Protocol):
    """A training task: its loss, evaluation metrics and primary metric."""
    name: str
    primary: str

    def make_batch(self, data: Any, idx: torch.Tensor, generator: torch.Generator) -> Any:
        """The training batch of rows ``idx`` (negatives drawn with ``generator``)."""

    def row_loss(self, net: Callable[[Any], torch.Tensor], batch: Any) -> torch.Tensor:
        """The loss of every row of a batch (the loop averages and regularizes)."""

    def evaluate(self, model: nn.Module, data: Any, ctx: EvalContext, groups: np.ndarray | None = None
                 ) -> dict[str, float]:
        """Every metric of the task on ``data`` (``groups``: users, for gAUC)."""


TASKS: Registry[Callable[[], Task]] = Registry("task")


class PointwiseTask:
    """Binary CTR: BCE loss; AUC, logloss and gAUC (undefined under ``GAUC_MIN_GROUPS`` users with both labels)."""
    name, primary = "pointwise", "auc"

    def make_batch(self, data, idx, generator):
        return data.slice(idx)

    def row_loss(self, net, batch) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(net(batch).float(), batch.label, reduction="none")

    @torch.no_grad()
    def scored(self, model: nn.Module, data, ctx: EvalContext) -> tuple[np.ndarray, np.ndarray | None]:
        """(click probabilities, labels or None) for every row of ``data``: a ``Batch`` or streamed data
        (anything with ``batches(batch_size)``, e.g. ``llmrec.ctr.ids.StreamData``), read once."""
        model.eval()
        bs, out, ys = ctx.eval_batch_size, [], []
        if hasattr(data, "batches"):
            chunks = data.batches(bs)
        else:
            n = len(data)
            chunks = (data.slice(torch.arange(i, min(n, i + bs))) for i in range(0, n, bs))
        for b in chunks:
            with ctx.autocast():
                out.append(torch.sigmoid(model(b.to(ctx.device)).float()).cpu())
            ys.append(b.label)
        p = torch.cat(out).numpy() if out else np.zeros(0, np.float32)
        y = None if any(v is None for v in ys) else (torch.cat(ys).numpy() if ys else np.zeros(0, np.float32))
        return p, y

    def predict(self, model: nn.Module, data, ctx: EvalContext) -> np.ndarray:
        """Click probabilities for every row of ``data``."""
        return self.scored(model, data, ctx)[0]

    def evaluate(self, model, data, ctx, groups=None) -> dict[str, float]:
        if getattr(data, "label", True) is None:
            raise DataError("data.label: evaluation needs labels")
        p, y = self.scored(model, data, ctx)
        if y is None:
            raise DataError("data.label: evaluation needs labels")
        res = {"auc": auc(y, p), "logloss": logloss(y, p)}
        if groups is not None:
            res["gauc"] = group_auc(y, p, groups, min_groups=GAUC_MIN_GROUPS)
        return res


class DistillTask(PointwiseTask):
    """IncCTR's model module: pointwise BCE on the labels plus ``weight`` x BCE against the previous model's
    click probabilities (L = CE(y, p) + lambda CE(p_teacher, p)), so a warm-started model learning a new day
    keeps what it knew. The teacher's table may be smaller than the student's (rows added for new ids):
    ``teacher_rows`` maps every student row to the teacher row that id used (its OOV row for new ids)."""
    name = "pointwise_distill"

    def __init__(self, teacher: nn.Module, weight: float = 0.5, teacher_rows: torch.Tensor | None = None) -> None:
        if weight < 0:
            raise ValueError(f"weight: {weight} must be >= 0")
        self.teacher = teacher.eval()
        self.weight = weight
        self.teacher_rows = teacher_rows

    def row_loss(self, net, batch) -> torch.Tensor:
        logit = net(batch).float()
        loss = nn.functional.binary_cross_entropy_with_logits(logit, batch.label, reduction="none")
        if self.weight:
            with torch.no_grad():
                tb = batch if self.teacher_rows is None else dataclasses.replace(
                    batch, cat=self.teacher_rows.to(batch.cat.device)[batch.cat])
                target = torch.sigmoid(self.teacher(tb).float())
            loss = loss + self.weight * nn.functional.binary_cross_entropy_with_logits(logit, target, reduction="none")
        return loss


GAUC_MIN_GROUPS = 10  # fewer users with both labels: gAUC is reported undefined (NaN -> "n/a")


class _FullSort:
    ks: Sequence[int] = (5, 10, 20)
    primary = "ndcg@10"

    @staticmethod
    def _mean(parts: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        if not parts:
            return {}
        return {k: float(torch.cat([p[k] for p in parts]).mean()) for k in parts[0]}


class BPRTask(_FullSort):
    """BPR (-log sigmoid(s_pos - s_neg)) over the training edges. Negatives: ``uniform`` draws one item per
    positive uniformly among the items the user has no training edge with (RecBole's uniform sampler: draws
    that hit one are redrawn, up to ``REDRAWS`` times); ``in_batch`` pairs every row with the positives of
    every other row of the batch (popularity-shaped negatives, no extra items scored), those that are the
    user's own training items masked out. A model with ``batch_regularization(batch)`` (per-batch
    embedding L2, RecBole's ``reg_weight``) adds it to every row.

    Evaluation ranks every item, the user's training items (and for test, valid items) excluded: Recall,
    NDCG, Hit and MRR @10 and @20 (RecBole's definitions), and ``tail_*`` the same over the users' gold items
    among the rarely trained ones (``RankingEval.tail``); users are scored in chunks of at most
    ``EVAL_SCORE_BUDGET`` scores, so catalogues of 100k+ items fit in bounded memory.

    ``sampled_negatives`` = N > 0 adds the sampled protocol (CIGF's and many multi-behaviour papers' 1 + 99)
    as an extra, never instead: each (user, gold item) pair ranks the gold item against N items drawn
    uniformly (seeded by ``sample_seed``, the user's row and the gold item's position, so every model meets
    the same negatives) among those neither excluded for the user nor gold, reported as
    ``sampled<N>_hit@k`` / ``sampled<N>_ndcg@k`` (mean over pairs; ties go to the gold item)."""
    name = "bpr"
    ks = (10, 20)
    REDRAWS = 20
    EVAL_SCORE_BUDGET = 1 << 24  # user x item scores held at once during evaluation (64 MiB of float32)

    def __init__(self, n_items: int | None = None, negatives: str = "uniform", sampled_negatives: int = 0,
                 sample_seed: int = 0) -> None:
        if negatives not in ("uniform", "in_batch"):
            raise ValueError(f"negatives: 'uniform' or 'in_batch', not {negatives!r}")
        self.n_items = n_items  # None: the largest item index in the training pairs + 1
        self.negatives = negatives
        self.sampled_negatives = sampled_negatives
        self.sample_seed = sample_seed
        self._known: tuple[int, torch.Tensor] | None = None  # (id of the training data, sorted user*I+item keys)

    def _keys(self, data: PairBatch, n_items: int) -> torch.Tensor:
        if self._known is None or self._known[0] != id(data):
            self._known = (id(data), torch.unique(data.users.long() * n_items + data.items.long()))
        return self._known[1]

    def make_batch(self, data: PairBatch, idx, generator) -> PairBatch:
        b = data.slice(idx)
        n_items = self.n_items or int(data.items.max()) + 1
        keys = self._keys(data, n_items)
        if self.negatives == "in_batch":
            B = len(b)
            cols = (torch.arange(B).unsqueeze(0) + torch.arange(B).unsqueeze(1)) % B  # column 0: the row itself
            return PairBatch(b.users, b.items[cols], b.behaviour)
        neg = torch.randint(1, n_items, (len(b),), generator=generator)
        for _ in range(self.REDRAWS):
            bad = _member(b.users * n_items + neg, keys)
            if not bad.any():
                break
            neg[bad] = torch.randint(1, n_items, (int(bad.sum()),), generator=generator)
        return PairBatch(b.users, torch.stack([b.items, neg], dim=1), b.behaviour)

    def row_loss(self, net, batch: PairBatch) -> torch.Tensor:
        s = net(batch).float()
        diff = -nn.functional.logsigmoid(s[:, :1] - s[:, 1:])
        if s.shape[1] > 2:  # in-batch: mask the negatives that are the user's own training items
            n_items = self.n_items or int(batch.items.max()) + 1
            keys = self._known[1].to(batch.items.device) if self._known is not None else None
            own = batch.items[:, 1:] == batch.items[:, :1]
            if keys is not None:
                own |= _member(batch.users.unsqueeze(1) * n_items + batch.items[:, 1:], keys)
            diff = (diff * (~own)).sum(1) / (~own).sum(1).clamp(min=1)
        else:
            diff = diff[:, 0]
        model = getattr(net, "module", net)
        reg = getattr(model, "batch_regularization", None)
        return diff + reg(batch) if reg is not None else diff

    @torch.no_grad()
    def evaluate(self, model, data: RankingEval, ctx, groups=None) -> dict[str, float]:
        model.eval()
        parts, tail_parts, sampled = [], [], []
        n_items = getattr(model, "n_items", None)  # graph models know it; others are asked once
        if n_items is None and len(data):
            n_items = model.full_scores(data.users[:1].to(ctx.device)).shape[1]
        i = 0
        while i < len(data):
            step = max(1, min(ctx.eval_batch_size, self.EVAL_SCORE_BUDGET // n_items))
            users = data.users[i:i + step]
            with ctx.autocast():
                scores = model.full_scores(users.to(ctx.device)).float().cpu()
            scores[:, 0] = -torch.inf
            gold = torch.zeros_like(scores, dtype=torch.bool)
            g, s = data.gold[i:i + len(users)], data.seen[i:i + len(users)]
            gold[_flat_rows(g), _flat_cols(g)] = True
            scores[_flat_rows(s), _flat_cols(s)] = -torch.inf
            parts.append(full_sort_metrics(scores, gold, self.ks))
            if self.sampled_negatives:
                sampled.append(self._sampled(scores, g, s, i))
            if data.tail is not None and len(data.tail):  # the same ranking, judged on tail gold items only
                mask = torch.zeros(scores.shape[1], dtype=torch.bool)
                mask[torch.as_tensor(data.tail, dtype=torch.long)] = True
                tail_gold = gold & mask
                rows = tail_gold.any(1)
                if rows.any():
                    tail_parts.append(full_sort_metrics(scores[rows], tail_gold[rows], self.ks))
            i += len(users)
        out = self._mean(parts)
        if tail_parts:
            out.update({f"tail_{k}": v for k, v in self._mean(tail_parts).items()})
        out.update(self._mean([x for x in sampled if len(next(iter(x.values())))]))
        return out

    def _sampled(self, scores: torch.Tensor, gold: list[np.ndarray], seen: list[np.ndarray], offset: int
                 ) -> dict[str, torch.Tensor]:
        """Per (user, gold item) pair of a chunk: HR / NDCG of the gold item among ``sampled_negatives``
        uniform negatives (``scores`` already hold -inf at excluded items; the draw avoids them and the gold)."""
        n, n_items = self.sampled_negatives, scores.shape[1]
        ranks = []
        for r, items in enumerate(gold):
            banned = torch.zeros(n_items, dtype=torch.bool)
            banned[0] = True
            banned[torch.as_tensor(np.asarray(seen[r], dtype=np.int64))] = True
            banned[torch.as_tensor(np.asarray(items, dtype=np.int64))] = True
            pool = (~banned).nonzero().squeeze(1)
            if len(pool) < n:
                raise ValueError(f"graph.sampled_negatives: {n} negatives asked, only {len(pool)} items are "
                                 f"eligible for user row {offset + r}")
            for j, item in enumerate(np.asarray(items, dtype=np.int64)):
                g = torch.Generator().manual_seed(self.sample_seed * 1_000_003 + (offset + r) * 1_009 + j)
                neg = pool[torch.randperm(len(pool), generator=g)[:n]]
                ranks.append(int((scores[r, neg] > scores[r, item]).sum()) + 1)
        rank = torch.tensor(ranks, dtype=torch.float32)
        out = {}
        for k in self.ks:
            hit = (rank <= k).float()
            out[f"sampled{n}_hit@{k}"] = hit
            out[f"sampled{n}_ndcg@{k}"] = hit / torch.log2(rank + 1)
        return out


class ScoreMatrix(nn.Module):
    """Stored scores (users x items) behind the graph models' ``full_scores``: a peer's or a paper's code's
    scores judged by ``BPRTask.evaluate`` exactly as llmrec's own models are (full ranking, sampled protocol)."""

    def __init__(self, scores: np.ndarray) -> None:
        super().__init__()
        self.scores = torch.from_numpy(np.asarray(scores, dtype=np.float32))
        self.n_items = int(self.scores.shape[1])

    def full_scores(self, users: torch.Tensor) -> torch.Tensor:
        """The stored scores of ``users``."""
        return self.scores[users.long().cpu()].clone()


def _member(query: torch.Tensor, sorted_keys: torch.Tensor) -> torch.Tensor:
    """``query in sorted_keys`` elementwise (binary search; ``torch.isin`` sorts the keys on every call)."""
    pos = torch.searchsorted(sorted_keys, query).clamp(max=len(sorted_keys) - 1)
    return sorted_keys[pos] == query


def _flat_rows(lists: list[np.ndarray]) -> torch.Tensor:
    return torch.repeat_interleave(torch.arange(len(lists)), torch.tensor([len(x) for x in lists], dtype=torch.long))


def _flat_cols(lists: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.concatenate(lists).astype(np.int64)) if lists else torch.zeros(0, dtype=torch.long)


class NextItemTask(_FullSort):
    """Softmax cross-entropy over every item; index 0 is padding. A batch with one target per row ([B]) asks
    the model for [B, n_items] logits after each history; one with a target per position ([B, L], 0 = none)
    asks for [N, n_items] logits at the N positions that have a target, in row-major order (every
    (prefix -> next) pair of a user's sequence in one forward pass). The loss is the mean over targets.
    Evaluation ranks every item; ``exclude_history`` ranks the items of the user's history last.

    ``sampled_negatives`` = N > 0 adds the sampled protocol as an extra, never instead: the target ranked
    against N items drawn uniformly (seeded, without replacement) from those neither the target nor in the
    history, reported as ``sampled<N>_hit@k`` / ``sampled<N>_ndcg@k`` beside the full-ranking metrics."""
    name = "next_item"

    def __init__(self, exclude_history: bool = False, sampled_negatives: int = 0, sample_seed: int = 0) -> None:
        self.exclude_history = exclude_history
        self.sampled_negatives = sampled_negatives
        self.sample_seed = sample_seed

    def make_batch(self, data: SeqBatch, idx, generator) -> SeqBatch:
        return data.slice(idx)

    def row_loss(self, net, batch: SeqBatch) -> torch.Tensor:
        logits = net(batch).float()
        logits[:, 0] = -torch.inf
        target = batch.target[batch.target > 0] if batch.target.ndim == 2 else batch.target
        return nn.functional.cross_entropy(logits, target, reduction="none")

    @torch.no_grad()
    def evaluate(self, model, data: SeqBatch, ctx, groups=None) -> dict[str, float]:
        model.eval()
        parts = []
        for i in range(0, len(data), ctx.eval_batch_size):
            b = data.slice(torch.arange(i, min(len(data), i + ctx.eval_batch_size)))
            with ctx.autocast():
                scores = model(b.to(ctx.device)).float().cpu()
            scores[:, 0] = -torch.inf
            if self.exclude_history:
                scores.scatter_(1, b.items.cpu(), -torch.inf)  # padding 0 is -inf already
            gold = torch.zeros_like(scores, dtype=torch.bool)
            gold[torch.arange(len(b)), b.target] = True
            metrics = full_sort_metrics(scores, gold, self.ks)
            if self.sampled_negatives:
                metrics.update(self._sampled(scores, b, i))
            parts.append(metrics)
        return self._mean(parts)

    def _sampled(self, scores: torch.Tensor, b: SeqBatch, offset: int) -> dict[str, torch.Tensor]:
        """HR / NDCG of the target among ``sampled_negatives`` uniform negatives (row i's draw is seeded by
        ``sample_seed`` and its index in the split, so every model meets the same negatives)."""
        n, out = self.sampled_negatives, {}
        n_items = scores.shape[1]
        ranks = torch.empty(len(b))
        for r in range(len(b)):
            banned = torch.zeros(n_items, dtype=torch.bool)
            banned[0] = True
            banned[b.items[r]] = True
            banned[b.target[r]] = True
            pool = (~banned).nonzero().squeeze(1)
            if len(pool) < n:
                raise ValueError(f"sampled_negatives: {n} negatives asked, only {len(pool)} items are eligible")
            g = torch.Generator().manual_seed(self.sample_seed * 1_000_003 + offset + r)
            neg = pool[torch.randperm(len(pool), generator=g)[:n]]
            t = scores[r, b.target[r]]
            ranks[r] = (scores[r, neg] > t).sum() + 1  # ties go to the target, as most sampled evaluations
        for k in self.ks:
            hit = (ranks <= k).float()
            out[f"sampled{n}_hit@{k}"] = hit
            out[f"sampled{n}_ndcg@{k}"] = hit / torch.log2(ranks + 1)
        return out


class MultiLabelTaskConfig(StrictConfig):
    """How the multi-label task uses incomplete labels (KAML, papers.md §16): which cells train (``strict``:
    reported labels only; ``attribution``: also labels implied by attribution, ADM), the weight of the
    ranking loss over the cells left unlabeled (RLU; 0 = off) and per-task loss weights."""
    masking: Literal["strict", "attribution"] = "strict"
    ranking_weight: float = Field(0.0, ge=0.0)
    task_weights: list[float] | None = None  # None: 1 per task


class MultiLabelTask:
    """Several labels per row, some unknown (``Batch.labels`` / ``Batch.observed``; a single-label ``Batch``
    is one task). Loss: per task, BCE averaged over the cells that train under ``masking`` (a task without
    such a cell in the batch adds nothing), weighted; with ``ranking_weight`` (RLU), the cells left out of
    the BCE (unlabeled) still order the scores: a positive's expected label (1) is above an unlabeled cell's,
    which is above a negative's (0), so per task the mean of softplus(s_lo - s_hi) over the (positive,
    unlabeled) pairs of the batch is added to the positive's row and over the (unlabeled, negative) pairs to
    the unlabeled cell's row, times ``ranking_weight`` (pairing within one advertiser only was tried and
    was worse; under strict masking no advertiser has both kinds of cell). Evaluation: AUC and logloss per
    task on the cells whose label is reported (the test split's are complete), and their mean AUC (primary)."""
    name, primary = "multilabel", "auc"

    def __init__(self, config: MultiLabelTaskConfig | None = None, names: Sequence[str] = ()) -> None:
        self.config = config or MultiLabelTaskConfig()
        self.names = list(names)

    @staticmethod
    def targets(batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels [N, T], codes [N, T]) of a batch; a single-label batch is one reported task."""
        if batch.labels is not None:
            return batch.labels, batch.observed
        return batch.label.unsqueeze(1), torch.full((len(batch), 1), REPORTED, dtype=torch.int8,
                                                     device=batch.label.device)

    def make_batch(self, data, idx, generator):
        return data.slice(idx)

    def row_loss(self, net, batch) -> torch.Tensor:
        logits = net(batch).float()
        y, code = self.targets(batch)
        logits = logits.reshape(len(y), -1)
        if logits.shape[1] != y.shape[1]:
            raise ConfigError(f"model: predicts {logits.shape[1]} tasks, the data has {y.shape[1]}")
        c = self.config
        w = c.task_weights or [1.0] * y.shape[1]
        if len(w) != y.shape[1]:
            raise ConfigError(f"multilabel.task_weights: {len(w)} weights for {y.shape[1]} tasks")
        train = (code == REPORTED) | ((code == ATTRIBUTED) if c.masking == "attribution" else False)
        bce = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
        n = len(y)
        rows = torch.zeros(n, device=logits.device)
        for t in range(y.shape[1]):
            m = train[:, t]
            k = int(m.sum())
            if k:
                rows = rows + w[t] * n / k * torch.where(m, bce[:, t], torch.zeros_like(bce[:, t]))
            if c.ranking_weight > 0:  # RLU: positive > unlabeled > negative, in expectation of the label
                s = logits[:, t]
                pos, neg, unl = m & (y[:, t] > 0), m & (y[:, t] == 0), ~m
                for hi, lo in ((pos, unl), (unl, neg)):
                    if hi.any() and lo.any():
                        pair = nn.functional.softplus(s[lo].unsqueeze(0) - s[hi].unsqueeze(1)).mean(1)
                        rows = rows.index_add(0, hi.nonzero().squeeze(1), c.ranking_weight * n / int(hi.sum()) * pair)
        return rows

    def predict(self, model: nn.Module, data, ctx: EvalContext) -> np.ndarray:
        """Probabilities [N, T] for every row of ``data``."""
        return PointwiseTask().scored(model, data, ctx)[0].reshape(len(data), -1)

    def evaluate(self, model, data, ctx, groups=None) -> dict[str, float]:
        if data.label is None and data.labels is None:
            raise DataError("data.labels: evaluation needs labels")
        p = self.predict(model, data, ctx)
        y, code = (x.numpy() for x in self.targets(data))
        names = self.names or [f"task{t}" for t in range(y.shape[1])]
        res: dict[str, float] = {}
        for t, name in enumerate(names):
            m = code[:, t] == REPORTED
            res[f"auc_{name}"] = auc(y[m, t], p[m, t])
            res[f"logloss_{name}"] = logloss(y[m, t], p[m, t])
        aucs = [res[f"auc_{n}"] for n in names]
        res["auc"] = float(np.nanmean(aucs)) if not all(np.isnan(aucs)) else float("nan")
        return res


TASKS.add("pointwise", PointwiseTask)
TASKS.add("multilabel", MultiLabelTask)
TASKS.add("bpr", BPRTask)
TASKS.add("next_item", NextItemTask)
