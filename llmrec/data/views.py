"""Data views: the same ``RecData`` impressions seen as each model family needs them.

- impressions (ctr, multitask): the table itself, encoded by ``llmrec.ctr.FeatureEncoder`` into ``Batch``.
- interactions (graph): positive (user, item) pairs split by time; training rows are ``PairBatch``es
  (negatives are sampled by the BPR task), evaluation is full-sort over every item with the user's
  training items excluded.
- sequences (sequential): each user's positives in time order, leave-one-out (last item = test, the one
  before = valid); training rows are every prefix -> next item, as ``SeqBatch``.

Ids are dense: users 0..U-1, items 1..I (0 is padding / unknown), fixed by ``ItemSpace`` from the
training rows."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from llmrec.data.schema import RecData
from llmrec.errors import DataError


@dataclass(frozen=True)
class ItemSpace:
    """Dense id maps; what ranking models are built from. Item index 0 is padding."""
    users: dict[str, int]
    items: dict[str, int]

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
    """A batch of padded item sequences (id 0 = padding) with their next-item targets."""
    items: torch.Tensor  # [B, L] long, right-aligned history, 0 = padding
    target: torch.Tensor  # [B] long, the next item
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


def sequence_view(data: RecData, max_len: int = 50, min_len: int = 3
                  ) -> tuple[ItemSpace, SeqBatch, SeqBatch, SeqBatch]:
    """Leave-one-out next-item view: (space, train prefixes, valid, test). Users with fewer than
    ``min_len`` positives are dropped; histories keep the last ``max_len`` items."""
    pos = _positives(data)
    order = pos[np.argsort(data.columns[data.time][pos], kind="stable")]
    by_user: dict[str, list[str]] = {}
    for r in order:
        by_user.setdefault(str(data.columns[data.user_col][r]), []).append(str(data.columns[data.item_col][r]))
    by_user = {u: s for u, s in by_user.items() if len(s) >= min_len}
    if not by_user:
        raise DataError(f"{data.name}: no user has {min_len} or more positive interactions")
    items = sorted({i for s in by_user.values() for i in s[:-2]})
    space = ItemSpace(users={u: n for n, u in enumerate(sorted(by_user))}, items={i: n + 1 for n, i in enumerate(items)})

    def rows(pairs: list[tuple[int, list[int], int]]) -> SeqBatch:
        mat = np.zeros((len(pairs), max_len), np.int64)
        for r, (_, hist, _) in enumerate(pairs):
            h = hist[-max_len:]
            if h:
                mat[r, max_len - len(h):] = h
        return SeqBatch(torch.from_numpy(mat), torch.tensor([t for _, _, t in pairs], dtype=torch.long),
                        torch.tensor([u for u, _, _ in pairs], dtype=torch.long))

    train, valid, test = [], [], []
    for u, seq in by_user.items():
        ids = [space.items.get(i, 0) for i in seq]
        uix = space.users[u]
        train += [(uix, ids[:t], ids[t]) for t in range(1, len(ids) - 2)]
        valid.append((uix, ids[:-2], ids[-2]))
        test.append((uix, ids[:-1], ids[-1]))
    return space, rows(train), rows(valid), rows(test)
