"""Data views: the same ``RecData`` impressions seen as each model family needs them.

- impressions (ctr, multitask): the table itself, encoded by ``llmrec.ctr.FeatureEncoder`` into ``Batch``.
- interactions (graph): positive (user, item) pairs split by time; training rows are ``PairBatch``es
  (negatives are sampled by the BPR task), evaluation is full-sort over every item with the user's
  training items excluded.
- sequences (sequential): each user's interactions in time order, leave-one-out (last item = test, the one
  before = valid); training rows are each user's sequence with a target at every position (or every
  prefix -> next item as its own row), as ``SeqBatch``.

Ids are dense: users 0..U-1, items 1..I (0 is padding / unknown), fixed by ``ItemSpace`` from the
training rows."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.data.schema import RecData
from llmrec.errors import DataError


@dataclass(frozen=True)
class ItemSpace:
    """Dense id maps; what ranking models are built from. Item index 0 is padding. ``item_vectors``
    (optional, [n_items, d], row 0 zeros): knowledge / text vectors of the items, aligned with their ids."""
    users: dict[str, int]
    items: dict[str, int]
    item_vectors: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def n_users(self) -> int:
        """Number of users (ids 0..n-1)."""
        return len(self.users)

    @property
    def n_items(self) -> int:  # including the padding index 0
        """Number of item ids, the padding id 0 included."""
        return len(self.items) + 1


@dataclass
class PairBatch:
    """A batch of (user, positive item, negative item) ids for pairwise (BPR) training."""
    users: torch.Tensor  # [B] long
    items: torch.Tensor  # [B] (positives) or [B, C] (positive first, then sampled negatives)

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def slice(self, idx: torch.Tensor) -> "PairBatch":
        """The rows ``idx`` of the batch."""
        return PairBatch(self.users[idx], self.items[idx])

    def to(self, device: str | torch.device) -> "PairBatch":
        """The batch on ``device``."""
        return PairBatch(self.users.to(device), self.items.to(device))


@dataclass
class SeqBatch:
    """A batch of padded item sequences (id 0 = padding) with their next-item targets: one per row ([B], the
    item after the history) or one per position ([B, L], the item after each position; 0 = none)."""
    items: torch.Tensor  # [B, L] long, right-aligned history, 0 = padding
    target: torch.Tensor  # [B] or [B, L] long
    users: torch.Tensor  # [B] long

    def __len__(self) -> int:
        return int(self.target.shape[0])

    @property
    def lengths(self) -> torch.Tensor:
        """Non-padding length of every sequence."""
        return (self.items > 0).sum(1)

    def slice(self, idx: torch.Tensor) -> "SeqBatch":
        """The rows ``idx`` of the batch."""
        return SeqBatch(self.items[idx], self.target[idx], self.users[idx])

    def to(self, device: str | torch.device) -> "SeqBatch":
        """The batch on ``device``."""
        return SeqBatch(self.items.to(device), self.target.to(device), self.users.to(device))


@dataclass
class RankingEval:
    """Full-sort evaluation rows: for each user, the gold items and the items to exclude."""
    users: torch.Tensor  # [U] long
    gold: list[np.ndarray]  # per user: item indices
    seen: list[np.ndarray] = field(default_factory=list)  # per user: item indices to exclude (may be empty)

    def __len__(self) -> int:
        return int(self.users.shape[0])


def _positives(data: RecData) -> np.ndarray:
    return np.flatnonzero(np.asarray(data.columns[data.label]) > 0.5)


def item_space(data: RecData, train_rows: np.ndarray) -> ItemSpace:
    """Every user of the data set; the items that occur in the training rows."""
    users = sorted({str(x) for x in data.columns[data.user_col]})
    items = sorted({str(x) for x in data.columns[data.item_col][train_rows]})
    return ItemSpace(users={u: n for n, u in enumerate(users)}, items={i: n + 1 for n, i in enumerate(items)})


def interaction_view(data: RecData, split: tuple[float, float, float] = (0.8, 0.1, 0.1)
                     ) -> tuple[ItemSpace, PairBatch, RankingEval, RankingEval]:
    """Positive interactions split by time: (space, train pairs, valid eval, test eval). Valid/test keep
    only items seen in training; the user's training items (and, for test, valid items) are excluded."""
    pos = _positives(data)
    if len(pos) == 0:
        raise DataError(f"{data.name}.{data.label}: no positive rows to build interactions from")
    order = pos[np.argsort(data.columns[data.time][pos], kind="stable")]
    a, b = int(len(order) * split[0]), int(len(order) * (split[0] + split[1]))
    tr, va, te = order[:a], order[a:b], order[b:]
    space = item_space(data, tr)
    uid = np.array([space.users[str(x)] for x in data.columns[data.user_col]])
    iid = np.array([space.items.get(str(x), 0) for x in data.columns[data.item_col]])
    train = PairBatch(torch.from_numpy(uid[tr]), torch.from_numpy(iid[tr]))
    seen: dict[int, set[int]] = {}
    for u, i in zip(uid[tr], iid[tr]):
        seen.setdefault(int(u), set()).add(int(i))

    def evaluation(rows: np.ndarray, extra_seen: dict[int, set[int]]) -> RankingEval:
        gold: dict[int, set[int]] = {}
        for u, i in zip(uid[rows], iid[rows]):
            if i > 0 and i not in seen.get(int(u), ()):
                gold.setdefault(int(u), set()).add(int(i))
        users = sorted(gold)
        return RankingEval(torch.tensor(users, dtype=torch.long), [np.array(sorted(gold[u])) for u in users],
                           [np.array(sorted(seen.get(u, set()) | extra_seen.get(u, set()))) for u in users])

    valid = evaluation(va, {})
    va_seen: dict[int, set[int]] = {}
    for u, i in zip(uid[va], iid[va]):
        va_seen.setdefault(int(u), set()).add(int(i))
    return space, train, valid, evaluation(te, va_seen)


class SequenceViewConfig(StrictConfig):
    """How interactions become next-item sequences: leave-one-out by time, histories of at most 50 items,
    every item ranked (RecBole's sequential protocol), over positive interactions by default (``all`` counts
    every row, as RecBole does with MovieLens ratings)."""
    max_len: int = Field(50, ge=1)
    min_len: int = Field(3, ge=3)  # users with fewer interactions are dropped (counted in ``SequenceStats``)
    interactions: Literal["all", "positive"] = "positive"  # "all": every row (RecBole on MovieLens)
    train: Literal["sequences", "prefixes"] = "sequences"  # one row per user with a target at every position
    # (the same (prefix -> next) pairs as prefix rows, one forward pass per user) or one row per prefix
    stride: int | None = Field(None, ge=1)  # train: sequences with histories over max_len: None = the last
    # max_len items only (SASRec's original); k = also earlier windows every k items (``sequence_rows``)
    exclude_history: bool = False  # at evaluation, rank the user's history items last (RecBole does not)
    sampled_negatives: int = Field(0, ge=0)  # > 0: also the sampled protocol (target vs N negatives), an extra


@dataclass
class SequenceStats:
    """What ``sequence_view`` kept and dropped, for the report."""
    users: int
    items: int  # item ids, padding excluded
    interactions: int
    dropped_users: int  # fewer than min_len interactions
    dropped_interactions: int
    tied_timestamps: int  # interactions sharing their user's timestamp with another (kept in file order)


def sequence_view(data: RecData, max_len: int = 50, min_len: int = 3, config: SequenceViewConfig | None = None,
                  ) -> tuple[ItemSpace, SeqBatch, SeqBatch, SeqBatch]:
    """Leave-one-out next-item view: (space, train, valid, test); ``config`` (else ``max_len`` / ``min_len``
    with positive interactions and prefix rows, the original defaults). Each user's interactions in time order
    (ties in file order); the last is the test target, the one before the valid target, the rest train.
    Items are every item of the kept users (as RecBole's vocabulary), so valid / test targets are always
    rankable. ``sequence_stats`` tells what was dropped."""
    c = config or SequenceViewConfig(max_len=max_len, min_len=min_len, interactions="positive", train="prefixes")
    space, by_user, _ = user_sequences(data, c)
    L = c.max_len

    def rows(pairs: list[tuple[int, list[int], int]]) -> SeqBatch:
        mat = np.zeros((len(pairs), L), np.int64)
        for r, (_, hist, _) in enumerate(pairs):
            h = hist[-L:]
            if h:
                mat[r, L - len(h):] = h
        return SeqBatch(torch.from_numpy(mat), torch.tensor([t for _, _, t in pairs], dtype=torch.long),
                        torch.tensor([u for u, _, _ in pairs], dtype=torch.long))

    train, valid, test = [], [], []
    seq_rows = []
    for u, ids in by_user.items():
        uix = space.users[u]
        if c.train == "prefixes":
            train += [(uix, ids[:t], ids[t]) for t in range(1, len(ids) - 2)]
        else:  # one row: inputs ids[:-3], targets ids[1:-2] position by position (the last L of them)
            seq_rows.append((uix, ids[:-2]))
        valid.append((uix, ids[:-2], ids[-2]))
        test.append((uix, ids[:-1], ids[-1]))
    train_batch = sequence_rows(seq_rows, L, c.stride) if c.train == "sequences" else rows(train)
    return space, train_batch, rows(valid), rows(test)


def sequence_rows(seqs: list[tuple[int, list[int]]], max_len: int, stride: int | None = None) -> SeqBatch:
    """Training rows with a target at every position: per (user index, item ids), inputs ids[:-1] and targets
    ids[1:], right-aligned. ``stride`` None: the last ``max_len`` of each only. ``stride`` k: windows of
    ``max_len`` ending every k items back from the end, each supervising its last k targets (the earliest
    window all of its own), so every (prefix -> next) pair is a target exactly once with at least
    max_len - k items of context (k = 1: RecBole's prefix rows)."""
    L = max_len
    windows: list[tuple[int, list[int], list[int]]] = []
    for user, ids in seqs:
        x, y = ids[:-1], ids[1:]
        if stride is None or len(x) <= L:
            windows.append((user, x[-L:], y[-L:]))
            continue
        end = len(x)
        while end > 0:
            start = max(0, end - L)
            low = start if start == 0 else max(start, end - stride)
            windows.append((user, x[start:end], [0] * (low - start) + y[low:end]))
            end = low
    inp = np.zeros((len(windows), L), np.int64)
    tgt = np.zeros((len(windows), L), np.int64)
    for r, (_, x, y) in enumerate(windows):
        if x:
            inp[r, L - len(x):], tgt[r, L - len(y):] = x, y
    return SeqBatch(torch.from_numpy(inp), torch.from_numpy(tgt),
                    torch.tensor([u for u, _, _ in windows], dtype=torch.long))


def user_sequences(data: RecData, c: SequenceViewConfig) -> tuple[ItemSpace, dict[str, list[int]], SequenceStats]:
    """The id space, every kept user's item ids in time order (ties in file order) and the counts."""
    rows = _positives(data) if c.interactions == "positive" else np.arange(len(data))
    times = np.asarray(data.columns[data.time])[rows]
    users = np.asarray(data.columns[data.user_col])[rows].astype(str)
    order = rows[np.lexsort((rows, times, users))]  # by user, then time, then file order
    by_user: dict[str, list[str]] = {}
    stamps: dict[str, list] = {}
    for r in order:
        u = str(data.columns[data.user_col][r])
        by_user.setdefault(u, []).append(str(data.columns[data.item_col][r]))
        stamps.setdefault(u, []).append(data.columns[data.time][r])
    kept = {u: s for u, s in by_user.items() if len(s) >= c.min_len}
    if not kept:
        raise DataError(f"{data.name}: no user has {c.min_len} or more interactions (sequence min_len)")
    items = sorted({i for s in kept.values() for i in s})
    space = ItemSpace(users={u: n for n, u in enumerate(sorted(kept))}, items={i: n + 1 for n, i in enumerate(items)})
    ties = sum(len(t) - len(set(t)) for u, t in stamps.items() if u in kept)
    stats = SequenceStats(users=len(kept), items=len(items), interactions=sum(len(s) for s in kept.values()),
                          dropped_users=len(by_user) - len(kept),
                          dropped_interactions=sum(len(s) for u, s in by_user.items() if u not in kept),
                          tied_timestamps=int(ties))
    return space, {u: [space.items[i] for i in kept[u]] for u in sorted(kept)}, stats


def sequence_stats(data: RecData, config: SequenceViewConfig | None = None) -> SequenceStats:
    """Users, items and interactions ``sequence_view`` keeps, what it drops and how many timestamps tie."""
    return user_sequences(data, config or SequenceViewConfig())[2]
