"""Data views: the same ``RecData`` impressions seen as each model family needs them.

- impressions (ctr, multitask): the table itself, encoded by ``llmrec.ctr.FeatureEncoder`` into ``Batch``.
- interactions (graph): (user, item) edges split per user (random or by time, ``GraphViewConfig``); the
  training edges form the ``InteractionGraph`` carried by the ``ItemSpace``; training rows are ``PairBatch``es
  (negatives are sampled by the BPR task), evaluation is full-sort over every item with the user's
  training items excluded.
- sequences (sequential): each user's interactions in time order, leave-one-out (last item = test, the one
  before = valid); training rows are each user's sequence with a target at every position (or every
  prefix -> next item as its own row), as ``SeqBatch``.

Ids are dense: users 0..U-1, items 1..I (0 is padding / unknown), fixed by ``ItemSpace`` from the
training rows."""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from llmrec.config import StrictConfig
from llmrec.data.graph import InteractionGraph, split_counts
from llmrec.data.schema import RecData
from llmrec.errors import DataError


@dataclass(frozen=True)
class ItemSpace:
    """Dense id maps; what ranking models are built from. Item index 0 is padding. ``item_vectors``
    (optional, [n_items, d], row 0 zeros): knowledge / text vectors of the items, aligned with their ids. ``graph`` (graph family): the training
    edges and their cached adjacencies."""
    users: dict[str, int]
    items: dict[str, int]
    item_vectors: np.ndarray | None = field(default=None, compare=False, repr=False)
    graph: InteractionGraph | None = field(default=None, compare=False, repr=False)  # graph family: training edges

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
    """A batch of (user, positive item, negative item) ids for pairwise (BPR) training; multi-behaviour data
    adds the behaviour of every row (its index in ``GraphViewConfig.behaviours``)."""
    users: torch.Tensor  # [B] long
    items: torch.Tensor  # [B] (positives) or [B, C] (positive first, then sampled negatives)
    behaviour: torch.Tensor | None = None  # [B] long, or None: the target behaviour only

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def slice(self, idx: torch.Tensor) -> "PairBatch":
        """The rows ``idx`` of the batch."""
        return PairBatch(self.users[idx], self.items[idx], None if self.behaviour is None else self.behaviour[idx])

    def to(self, device: str | torch.device) -> "PairBatch":
        """The batch on ``device``."""
        return PairBatch(self.users.to(device), self.items.to(device),
                         None if self.behaviour is None else self.behaviour.to(device))


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
    tail: np.ndarray | None = None  # item indices with few training edges: metrics on them are also reported

    def __len__(self) -> int:
        return int(self.users.shape[0])


def _positives(data: RecData) -> np.ndarray:
    return np.flatnonzero(np.asarray(data.columns[data.label]) > 0.5)


def item_space(data: RecData, train_rows: np.ndarray) -> ItemSpace:
    """Every user of the data set; the items that occur in the training rows."""
    users = sorted({str(x) for x in data.columns[data.user_col]})
    items = sorted({str(x) for x in data.columns[data.item_col][train_rows]})
    return ItemSpace(users={u: n for n, u in enumerate(users)}, items={i: n + 1 for n, i in enumerate(items)})


class Behaviour(StrictConfig):
    """One behaviour of a multi-behaviour graph: the rows whose ``column`` lies in [min, max] (a numeric
    column, e.g. MovieLens ``rating``) or is one of ``values`` (a token column, e.g. the plain format's
    ``behaviour``)."""
    name: str
    column: str = "rating"
    min: float | None = None
    max: float | None = None
    values: list[str] | None = None


class GraphViewConfig(StrictConfig):
    """How interactions become the user-item graph and its splits: every user's interactions split 80/10/10
    (``data.split``) in a seeded random order (RecBole's ``RS`` + ``RO``, per user) or by time, with RecBole's
    rounding (``llmrec.data.graph.split_counts``); over positive rows (``label``) or every row (``all``:
    MovieLens ratings as implicit feedback, as RecBole's graph benchmarks).

    Multi-behaviour (``behaviours``, ordered, the last is the target): only the target's rows are split and
    evaluated; every other behaviour's rows become a training graph without the target's valid / test
    (user, item) pairs (no leak of a held-out pair through another behaviour) and without items the target
    never trains on (the item space, and so every evaluation, is the same as the target-only model's).
    ``train_on: all`` trains on every behaviour's edges, each row tagged with its behaviour (CIGF);
    ``graph: union`` makes the graph single-behaviour models propagate over the union of all behaviours."""
    split: Literal["random", "temporal"] = "random"
    interactions: Literal["all", "positive"] = "positive"
    split_seed: int = 2020  # the random order (fixed across training seeds: every seed sees one split)
    negatives: Literal["uniform", "in_batch"] = "uniform"  # BPR negatives (``llmrec.train.tasks.BPRTask``)
    tail_degree: int = Field(5, ge=0)  # items with fewer training edges are the tail (tail_* metrics); 0: off
    sampled_negatives: int = Field(0, ge=0)  # > 0: also the sampled protocol (each gold item vs N negatives,
    # CIGF's 1 + 99), as extra metrics beside full ranking (``llmrec.train.tasks.BPRTask``)
    behaviours: list[Behaviour] = []
    train_on: Literal["target", "all"] = "target"
    graph: Literal["target", "union"] = "target"

    @model_validator(mode="after")
    def _distinct_behaviours(self) -> "GraphViewConfig":
        names = [b.name for b in self.behaviours]
        if len(set(names)) != len(names):
            raise ValueError(f"behaviours: names must be distinct, got {names}")
        return self


@dataclass
class GraphStats:
    """What ``interaction_view`` merged and dropped, for the report."""
    users: int
    items: int  # item ids seen in training, padding excluded
    train_edges: int
    duplicate_edges: int  # repeated (user, item) rows merged into one edge (the earliest kept)
    cold_item_rows: int  # valid / test rows whose item never occurs in training: dropped (not rankable)
    users_without_test: int  # users with no test item after the split (not evaluated on test)
    behaviour_edges_dropped: dict[str, int] = field(default_factory=dict)  # per auxiliary behaviour: rows on a
    # held-out target pair or on an item the target never trains on


def interaction_view(data: RecData, split: tuple[float, float, float] = (0.8, 0.1, 0.1),
                     config: GraphViewConfig | None = None
                     ) -> tuple[ItemSpace, PairBatch, RankingEval, RankingEval]:
    """Implicit-feedback view: (space with its training ``InteractionGraph``, train pairs, valid eval, test
    eval). Each user's interactions are split by ``split`` per user (``config``); valid / test keep only
    items seen in training; evaluation excludes the user's training items (and, for test, valid items), as
    RecBole's full ranking. ``graph_stats`` tells what was merged and dropped."""
    return _graph_split(data, split, config or GraphViewConfig())[:4]


def graph_stats(data: RecData, split: tuple[float, float, float] = (0.8, 0.1, 0.1),
                config: GraphViewConfig | None = None) -> GraphStats:
    """The counts of ``interaction_view``: edges, merged duplicates, dropped cold rows."""
    return _graph_split(data, split, config or GraphViewConfig())[4]


def behaviour_rows(data: RecData, b: Behaviour, index: int) -> np.ndarray:
    """The rows of ``data`` a behaviour rule selects (a named error for a missing column or a bad rule)."""
    where = f"graph.behaviours[{index}] ({b.name})"
    if b.column not in data.columns:
        raise DataError(f"{where}.column: {b.column!r} is not a column of {data.name} (have {sorted(data.columns)})")
    col = np.asarray(data.columns[b.column])
    if b.values is not None:
        return np.flatnonzero(np.isin(col.astype(str), b.values))
    if b.min is None and b.max is None:
        return np.arange(len(data))
    try:
        x = col.astype(np.float64)
    except ValueError:
        raise DataError(f"{where}.min/max: column {b.column!r} is not numeric; select with values") from None
    keep = np.ones(len(x), bool)
    if b.min is not None:
        keep &= x >= b.min
    if b.max is not None:
        keep &= x <= b.max
    return np.flatnonzero(keep)


def graph_split_rows(data: RecData, split: tuple[float, float, float], c: GraphViewConfig
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Row indices of train / valid / test (duplicates merged, per-user split) and the number merged."""
    if abs(sum(split) - 1) > 1e-6 or min(split) < 0 or split[0] <= 0:
        raise DataError(f"data.split: fractions must be >= 0, train > 0, and sum to 1, got {split}")
    if c.behaviours:
        rows = behaviour_rows(data, c.behaviours[-1], len(c.behaviours) - 1)
        if len(rows) == 0:
            raise DataError(f"graph.behaviours[{len(c.behaviours) - 1}] ({c.behaviours[-1].name}): the target "
                            f"behaviour matches no row of {data.name}")
    else:
        rows = _positives(data) if c.interactions == "positive" else np.arange(len(data))
    if len(rows) == 0:
        raise DataError(f"{data.name}.{data.label}: no positive rows to build interactions from")
    users = np.asarray(data.columns[data.user_col])[rows].astype(str)
    items = np.asarray(data.columns[data.item_col])[rows].astype(str)
    times = np.asarray(data.columns[data.time], dtype=np.float64)[rows]
    # duplicates: the earliest (time, then file order) row of each (user, item) is the edge
    first = np.lexsort((rows, times))
    ucode = np.unique(users, return_inverse=True)[1].astype(np.int64)
    icode, n_codes = np.unique(items, return_inverse=True)[1].astype(np.int64), len(set(items))
    _, keep = np.unique((ucode * n_codes + icode)[first], return_index=True)
    kept = np.sort(first[keep])
    duplicates = len(rows) - len(kept)
    rows, users, times = rows[kept], users[kept], times[kept]
    if c.split == "random":
        key = np.random.default_rng(c.split_seed).permutation(len(rows))
        order = np.lexsort((key, users))
    else:
        order = np.lexsort((rows, times, users))
    u_sorted = users[order]
    starts = np.flatnonzero(np.r_[True, u_sorted[1:] != u_sorted[:-1]])
    totals = np.diff(np.r_[starts, len(order)])
    cnt = split_counts(totals, split)
    pos = np.arange(len(order)) - np.repeat(starts, totals)  # index within the user's ordered rows
    a, b = np.repeat(cnt[:, 0], totals), np.repeat(cnt[:, 0] + cnt[:, 1], totals)
    ordered = rows[order]
    return ordered[pos < a], ordered[(pos >= a) & (pos < b)], ordered[pos >= b], duplicates


def _graph_split(data: RecData, split: tuple[float, float, float], c: GraphViewConfig):
    tr, va, te, duplicates = graph_split_rows(data, split, c)
    space = item_space(data, tr)
    ucol = np.asarray(data.columns[data.user_col]).astype(str)
    icol = np.asarray(data.columns[data.item_col]).astype(str)
    uid = np.array([space.users[x] for x in ucol])
    iid = np.array([space.items.get(x, 0) for x in icol])
    target = (uid[tr].astype(np.int64), iid[tr].astype(np.int64))
    behaviours, dropped = _behaviour_edges(data, c, uid, iid, target, np.concatenate([va, te]))
    main = target
    if c.graph == "union" and behaviours:
        main = _dedup(np.concatenate([e[0] for e in behaviours.values()]),
                      np.concatenate([e[1] for e in behaviours.values()]), space.n_items)
    graph = InteractionGraph(space.n_users, space.n_items, *main, behaviours)
    space = replace(space, graph=graph)
    if c.train_on == "all" and behaviours:
        parts = list(behaviours.values())
        train = PairBatch(torch.from_numpy(np.concatenate([p[0] for p in parts])),
                          torch.from_numpy(np.concatenate([p[1] for p in parts])),
                          torch.from_numpy(np.concatenate([np.full(len(p[0]), k) for k, p in enumerate(parts)])))
    else:
        train = PairBatch(torch.from_numpy(uid[tr]), torch.from_numpy(iid[tr]))
    seen: dict[int, set[int]] = {}
    for u, i in zip(uid[tr], iid[tr]):
        seen.setdefault(int(u), set()).add(int(i))

    def evaluation(rows: np.ndarray, extra_seen: dict[int, set[int]]) -> RankingEval:
        gold: dict[int, set[int]] = {}
        for u, i in zip(uid[rows], iid[rows]):
            if i > 0:
                gold.setdefault(int(u), set()).add(int(i))
        users = sorted(gold)
        return RankingEval(torch.tensor(users, dtype=torch.long), [np.array(sorted(gold[u])) for u in users],
                           [np.array(sorted(seen.get(u, set()) | extra_seen.get(u, set()))) for u in users])

    valid = evaluation(va, {})
    if c.tail_degree:
        deg = np.bincount(iid[tr], minlength=space.n_items)
        valid.tail = np.flatnonzero((deg > 0) & (deg < c.tail_degree))
    va_seen: dict[int, set[int]] = {}
    for u, i in zip(uid[va], iid[va]):
        if i > 0:
            va_seen.setdefault(int(u), set()).add(int(i))
    test = evaluation(te, va_seen)
    test.tail = valid.tail
    stats = GraphStats(users=space.n_users, items=space.n_items - 1, train_edges=len(tr), duplicate_edges=duplicates,
                       cold_item_rows=int((iid[va] == 0).sum() + (iid[te] == 0).sum()),
                       users_without_test=space.n_users - len(test), behaviour_edges_dropped=dropped)
    return space, train, valid, test, stats


def _dedup(u: np.ndarray, i: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    key = np.unique(u.astype(np.int64) * n_items + i)
    return key // n_items, key % n_items


def _behaviour_edges(data: RecData, c: GraphViewConfig, uid: np.ndarray, iid: np.ndarray,
                     target: tuple[np.ndarray, np.ndarray], held_rows: np.ndarray
                     ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, int]]:
    """Every behaviour's training edges (the target's are ``target``), without held-out target pairs and
    items outside the space; and how many rows each lost that way."""
    if not c.behaviours:
        return {}, {}
    n_items = int(iid.max()) + 1
    held = np.unique(uid[held_rows].astype(np.int64) * n_items + iid[held_rows])
    out, dropped = {}, {}
    for k, b in enumerate(c.behaviours[:-1]):
        rows = behaviour_rows(data, b, k)
        key = uid[rows].astype(np.int64) * n_items + iid[rows]
        keep = (iid[rows] > 0) & ~np.isin(key, held)
        dropped[b.name] = int(len(rows) - keep.sum())
        out[b.name] = _dedup(uid[rows][keep], iid[rows][keep], n_items)
    out[c.behaviours[-1].name] = target
    return out, dropped



class SequenceViewConfig(StrictConfig):
    """How interactions become next-item sequences: leave-one-out by time, histories of at most 50 items,
    every item ranked (RecBole's sequential protocol), over positive interactions by default (``all`` counts
    every row, as RecBole does with MovieLens ratings)."""
    max_len: int = Field(50, ge=1)
    min_len: int = Field(3, ge=3)  # users with fewer interactions are dropped (counted in ``SequenceStats``)
    interactions: Literal["all", "positive"] = "positive"  # "all": every row (RecBole on MovieLens)
    train: Literal["sequences", "prefixes"] = "sequences"  # one row per user with a target at every position
    # (the same (prefix -> next) pairs as prefix rows, one forward pass per user) or one row per prefix
    # train: sequences with histories over max_len: "half" = windows every max_len // 2 items, so every
    # (prefix -> next) pair of a long history is a target once with at least half a window of context (RecBole's
    # prefix rows also cover every pair); k = windows every k items (``sequence_rows``); None = the last
    # max_len items only (SASRec's original: on MovieLens-100K that drops about half the pairs)
    stride: int | Literal["half"] | None = "half"
    exclude_history: bool = False  # at evaluation, rank the user's history items last (RecBole does not)
    sampled_negatives: int = Field(0, ge=0)  # > 0: also the sampled protocol (target vs N negatives), as extra
    # metrics beside full ranking

    @field_validator("stride")
    @classmethod
    def _stride_positive(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError(f"stride: must be at least 1, got {v}")
        return v

    @property
    def window_stride(self) -> int | None:
        """The stride ``sequence_rows`` takes (``"half"`` resolved against ``max_len``)."""
        return max(1, self.max_len // 2) if self.stride == "half" else self.stride

    # a seeded random share of the kept users (their whole sequences): leave-one-out has no split seed, so
    # out-of-sample checks draw other user samples instead (the same draw for every library given the view)
    sample_users: float | None = Field(None, gt=0, le=1)
    sample_seed: int = 0  # the draw's seed


@dataclass
class SequenceStats:
    """What ``sequence_view`` kept and dropped, for the report."""
    users: int
    items: int  # item ids, padding excluded
    interactions: int
    dropped_users: int  # fewer than min_len interactions
    dropped_interactions: int
    tied_timestamps: int  # interactions sharing their user's timestamp with another (kept in file order)
    sampled_out_users: int = 0  # kept but left out of the ``sample_users`` draw


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
    train_batch = sequence_rows(seq_rows, L, c.window_stride) if c.train == "sequences" else rows(train)
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
    eligible = len(kept)
    if c.sample_users is not None:
        names = sorted(kept)
        draw = np.random.default_rng(c.sample_seed).permutation(len(names))[:max(1, round(c.sample_users * len(names)))]
        kept = {names[i]: kept[names[i]] for i in sorted(draw)}
    items = sorted({i for s in kept.values() for i in s})
    space = ItemSpace(users={u: n for n, u in enumerate(sorted(kept))}, items={i: n + 1 for n, i in enumerate(items)})
    ties = sum(len(t) - len(set(t)) for u, t in stamps.items() if u in kept)
    stats = SequenceStats(users=len(kept), items=len(items), interactions=sum(len(s) for s in kept.values()),
                          dropped_users=len(by_user) - eligible,
                          dropped_interactions=sum(len(s) for s in by_user.values() if len(s) < c.min_len),
                          sampled_out_users=eligible - len(kept),
                          tied_timestamps=int(ties))
    return space, {u: [space.items[i] for i in kept[u]] for u in sorted(kept)}, stats


def sequence_stats(data: RecData, config: SequenceViewConfig | None = None) -> SequenceStats:
    """Users, items and interactions ``sequence_view`` keeps, what it drops and how many timestamps tie."""
    return user_sequences(data, config or SequenceViewConfig())[2]


def add_history(data: RecData, max_len: int, name: str = "history", positive_only: bool = False) -> RecData:
    """``data`` with a behaviour column ``name`` (field type ``behavior``, DIN's input): on every row, the
    items of the same user's earlier rows (time order, ties in file order), oldest first, the most recent
    ``max_len`` of them; ``positive_only``: earlier rows with a positive label only. Only earlier rows: an
    impression never sees itself or anything after it."""
    if max_len < 1:
        raise DataError(f"history: max_len must be >= 1, got {max_len}")
    if name in data.columns:
        raise DataError(f"history: the data already has a column {name!r}")
    users, items = data.columns[data.user_col], data.columns[data.item_col]
    label = data.columns[data.label]
    order = np.argsort(data.columns[data.time], kind="stable")
    hist = np.empty(len(data), dtype=object)
    seen: dict = {}
    for r in order.tolist():
        past = seen.setdefault(users[r], [])
        hist[r] = tuple(past[-max_len:])
        if not positive_only or label[r] > 0:
            past.append(items[r])
    return replace(data, columns={**data.columns, name: hist}, fields={**data.fields, name: "behavior"})


def add_search_history(data: RecData, max_len: int) -> RecData:
    """``data`` with the user's earlier searches on every row (QueryRec's input; ``RecData.searches``):
    ``queries`` (the texts of the user's queries strictly before the row's time, the most recent
    ``max_len``, oldest first), ``query_key`` (those texts joined by newlines: one key per search state,
    "" for none), ``query_item_key`` (the state and the row's item, tab-separated) and ``searched`` ("yes"
    when there is at least one). None of them is a feature field."""
    if max_len < 1:
        raise DataError(f"search_history: max_len must be >= 1, got {max_len}")
    if not data.searches:
        raise DataError(f"search_history: {data.name} has no search log (RecData.searches)")
    missing = [k for k in ("user_id", "timestamp", "query") if k not in data.searches]
    if missing:
        raise DataError(f"searches: the search log lacks columns {missing}")
    by_user: dict = {}
    s = data.searches
    for r in np.argsort(s["timestamp"], kind="stable").tolist():
        times, texts = by_user.setdefault(str(s["user_id"][r]), ([], []))
        times.append(float(s["timestamp"][r]))
        texts.append(str(s["query"][r]))
    users, stamps = data.columns[data.user_col], data.columns[data.time]
    queries = np.empty(len(data), dtype=object)
    for r in range(len(data)):
        times, texts = by_user.get(str(users[r]), ((), ()))
        k = bisect.bisect_left(times, float(stamps[r]))
        queries[r] = tuple(texts[max(0, k - max_len): k])
    keys = np.array(["\n".join(q) for q in queries], dtype=object)
    pair = np.array([f"{k}\t{i}" for k, i in zip(keys.tolist(), data.columns[data.item_col].tolist())], dtype=object)
    searched = np.where([len(q) > 0 for q in queries], "yes", "no").astype(object)
    return replace(data, columns={**data.columns, "queries": queries, "query_key": keys, "query_item_key": pair,
                                  "searched": searched})
