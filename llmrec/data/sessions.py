"""The session view (AHC-KNN, papers.md §31): anonymous sessions of clicked items, split by time.

Sources:
- **MovieLens** (``movielens100k`` / ``movielens1m``): each user's ratings in time order, cut into a new
  session wherever ``gap_seconds`` (default 1 hour) pass without a rating. The user id is then dropped: the
  sessions are anonymous. (MovieLens users rate in bursts; within a burst the order is the rating order, so
  the "next click" is the next rated movie.)
- **synthetic** (``SessionWorldConfig``): each session has a hidden intent (one of ``intents`` groups of
  items); a click is an item of the intent, drawn by a Zipf popularity within the group, or with probability
  ``noise`` an item drawn by a Zipf popularity over the whole catalogue. Co-occurrence within intents is the
  signal; the popular noise items are what a plain overlap similarity over-rewards.
- **yoochoose** (RecSys Challenge 2015 ``yoochoose-clicks.dat``: ``session_id,timestamp,item_id,category``,
  no header, ISO-8601 times) and **diginetica** (CIKM Cup 2016 ``train-item-views.csv``:
  ``sessionId;userId;itemId;timeframe;eventdate`` with a header; ordered by date, then timeframe).

Preprocessing as SR-GNN's: items clicked fewer than ``min_item_support`` times are dropped, then sessions
shorter than 2; the last ``test_fraction`` of sessions by start time are the test split and the
``valid_fraction`` before them the validation split; test / validation clicks on items never seen in
training are dropped (and counted), and sessions left shorter than 2 too. Every prefix of an evaluated session
predicts its next click."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.data.catalog import require_dataset
from llmrec.data.movielens import load_movielens
from llmrec.data.schema import DataError, DataFormatError, RecData


class SessionWorldConfig(StrictConfig):
    """The synthetic session world: catalogue, intents, session lengths, popularity skew and noise."""
    n_items: int = Field(1000, ge=10)
    n_sessions: int = Field(8000, ge=10)
    intents: int = Field(40, ge=2)
    mean_length: float = Field(5.0, ge=1.0)  # session length ~ 2 + Poisson(mean_length - 2)
    zipf: float = Field(1.1, gt=0)  # popularity exponent, within an intent and over the catalogue
    noise: float = Field(0.3, ge=0.0, le=1.0)  # share of clicks on globally popular items, off-intent
    seed: int = 0


class SessionSplit(StrictConfig):
    """How interactions become sessions and how the sessions are split (SR-GNN's preprocessing)."""
    gap_seconds: float = Field(3600.0, gt=0)  # user interactions: a pause this long starts a new session
    min_item_support: int = Field(5, ge=1)
    valid_fraction: float = Field(0.1, gt=0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0, lt=0.5)
    max_length: int | None = Field(None, ge=2)  # keep the first N clicks of a session (None: all)


class SessionViewConfig(SessionSplit):
    """The session family's view of a training job's data (``session:``): how the data's interactions are cut
    into sessions and split, and the cutoff k of HR@k and MRR@k."""
    cutoff: int = Field(20, ge=1)


class SessionConfig(SessionSplit):
    """Which sessions to load (a session source) and how to split them."""
    source: Literal["movielens100k", "movielens1m", "synthetic", "yoochoose", "diginetica"] = "synthetic"
    path: str | None = None  # yoochoose / diginetica file; MovieLens folder (None: the catalog's copy)
    synthetic: SessionWorldConfig = SessionWorldConfig()


@dataclass
class Sessions:
    """Sessions as arrays of item indices (into ``item_ids``), split into train / valid / test."""
    item_ids: np.ndarray
    train: list[np.ndarray]
    valid: list[np.ndarray]
    test: list[np.ndarray]
    train_start: np.ndarray  # start time of each training session (recency for neighbour sampling)
    dropped: dict[str, int] = field(default_factory=dict)  # clicks / sessions removed by preprocessing

    @property
    def n_items(self) -> int:
        """Items seen in training."""
        return len(self.item_ids)

    def prefixes(self, split: str) -> tuple[list[np.ndarray], np.ndarray]:
        """Every (prefix, next item) of the split's sessions."""
        out, nxt = [], []
        for s in getattr(self, split):
            for n in range(1, len(s)):
                out.append(s[:n])
                nxt.append(s[n])
        return out, np.asarray(nxt, np.int64)


def synthetic_sessions(c: SessionWorldConfig) -> tuple[list[list[str]], np.ndarray]:
    """(sessions of item ids, start times) of the synthetic world (see the module doc)."""
    rng = np.random.default_rng(c.seed)
    group = rng.integers(0, c.intents, c.n_items)
    members = [np.flatnonzero(group == g) for g in range(c.intents)]
    glob = 1.0 / np.arange(1, c.n_items + 1) ** c.zipf
    glob = glob[rng.permutation(c.n_items)]  # popularity rank unrelated to the intent
    glob /= glob.sum()
    within = []
    for m in members:
        w = 1.0 / np.arange(1, len(m) + 1) ** c.zipf
        within.append(w / w.sum() if len(m) else w)
    sessions, starts = [], np.sort(rng.uniform(0, 1e7, c.n_sessions))
    for _ in range(c.n_sessions):
        g = rng.integers(0, c.intents)
        while not len(members[g]):
            g = rng.integers(0, c.intents)
        n = 2 + rng.poisson(max(c.mean_length - 2, 0.0))
        noisy = rng.random(n) < c.noise
        clicks = np.where(noisy, rng.choice(c.n_items, n, p=glob), members[g][rng.choice(len(members[g]), n, p=within[g])])
        sessions.append([str(i) for i in clicks])
    return sessions, starts


def cut_by_gap(user: np.ndarray, item: np.ndarray, t: np.ndarray, gap: float) -> tuple[list[list[str]], np.ndarray]:
    """Each user's clicks in time order, a new session after every pause of ``gap`` or more."""
    order = np.lexsort((np.arange(len(t)), t, user))
    u, i, tt = user[order], item[order], t[order]
    new = np.r_[True, (u[1:] != u[:-1]) | (tt[1:] - tt[:-1] >= gap)]
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(u)]
    return [list(i[a:b]) for a, b in zip(starts, ends)], tt[starts].astype(np.float64)


def _iso_seconds(text: str, path: str, lineno: int) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise DataFormatError(path, lineno, "timestamp", f"not an ISO-8601 time: {text!r}") from None


def read_yoochoose(path: str | Path) -> tuple[list[list[str]], np.ndarray]:
    """Sessions (clicks in time order) and start times from a Yoochoose clicks file."""
    by: dict[str, list[tuple[float, int, str]]] = {}
    with open(path, newline="") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if len(row) != 4:
                raise DataFormatError(str(path), n, "row", f"expected session_id,timestamp,item_id,category, "
                                                          f"got {len(row)} fields")
            by.setdefault(row[0], []).append((_iso_seconds(row[1], str(path), n), n, row[2]))
    return _ordered(by)


def read_diginetica(path: str | Path) -> tuple[list[list[str]], np.ndarray]:
    """Sessions and start times from a Diginetica ``train-item-views.csv`` (ordered by date, then timeframe)."""
    by: dict[str, list[tuple[float, int, str]]] = {}
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter=";")
        header = next(reader, None)
        need = ["sessionId", "userId", "itemId", "timeframe", "eventdate"]
        if header != need:
            raise DataFormatError(str(path), 1, "header", f"expected {';'.join(need)}, got {header}")
        for n, row in enumerate(reader, 2):
            if len(row) != 5:
                raise DataFormatError(str(path), n, "row", f"expected 5 ';'-separated fields, got {len(row)}")
            try:
                day = datetime.strptime(row[4], "%Y-%m-%d").timestamp()
                frame = float(row[3]) / 1000.0
            except ValueError:
                raise DataFormatError(str(path), n, "eventdate/timeframe", f"bad value in {row}") from None
            by.setdefault(row[0], []).append((day + frame, n, row[2]))
    return _ordered(by)


def _ordered(by: dict[str, list[tuple[float, int, str]]]) -> tuple[list[list[str]], np.ndarray]:
    sessions, starts = [], []
    for clicks in by.values():
        clicks.sort()
        sessions.append([c[2] for c in clicks])
        starts.append(clicks[0][0])
    return sessions, np.asarray(starts, np.float64)


def load_sessions(c: SessionConfig) -> Sessions:
    """The configured sessions, preprocessed and split (see the module doc)."""
    if c.source == "synthetic":
        raw, starts = synthetic_sessions(c.synthetic)
    elif c.source in ("yoochoose", "diginetica"):
        if c.path is None:
            raise DataError(f"sessions.path: a {c.source} file is needed (it is not shipped; see the module doc)")
        raw, starts = (read_yoochoose if c.source == "yoochoose" else read_diginetica)(c.path)
    else:
        raw, starts = user_sessions(load_movielens(c.path or require_dataset(c.source)), c)
    return split_sessions(raw, starts, c)


def user_sessions(data: RecData, c: SessionSplit) -> tuple[list[list[str]], np.ndarray]:
    """A data set's interactions cut into sessions: each user's rows in time order, a new session after every
    pause of ``c.gap_seconds`` (the data's time column, in seconds)."""
    if data.time not in data.columns:
        raise DataError(f"{data.name}: sessions need a time column ({data.time!r} is not among its columns)")
    return cut_by_gap(np.asarray(data.columns[data.user_col]).astype(str),
                      np.asarray(data.columns[data.item_col]).astype(str),
                      np.asarray(data.columns[data.time], np.float64), c.gap_seconds)


def split_sessions(raw: list[list[str]], starts: np.ndarray, c: SessionSplit) -> Sessions:
    """SR-GNN's filtering, then the time split and the removal of items unseen in training."""
    if c.max_length is not None:
        raw = [s[: c.max_length] for s in raw]
    clicks = sum(len(s) for s in raw)
    ids, counts = np.unique(np.concatenate([np.asarray(s, dtype=object) for s in raw if s]).astype(str),
                            return_counts=True)
    keep_item = set(ids[counts >= c.min_item_support])
    kept = [(t, [i for i in s if i in keep_item]) for s, t in zip(raw, starts)]
    kept = [(t, s) for t, s in kept if len(s) >= 2]
    if len(kept) < 3:
        raise DataError(f"sessions: only {len(kept)} sessions of 2+ clicks remain after dropping items with fewer "
                        f"than {c.min_item_support} clicks")
    kept.sort(key=lambda x: x[0])
    n = len(kept)
    n_test, n_valid = max(1, int(n * c.test_fraction)), max(1, int(n * c.valid_fraction))
    train, valid, test = kept[: n - n_test - n_valid], kept[n - n_test - n_valid: n - n_test], kept[n - n_test:]
    item_ids = np.array(sorted({i for _, s in train for i in s}), dtype=object)
    pos = {i: k for k, i in enumerate(item_ids)}
    unseen = 0

    def encode(part: list[tuple[float, list[str]]]) -> list[np.ndarray]:
        nonlocal unseen
        out = []
        for _, s in part:
            e = [pos[i] for i in s if i in pos]
            unseen += len(s) - len(e)
            if len(e) >= 2:
                out.append(np.asarray(e, np.int64))
        return out

    tr = encode(train)
    va, te = encode(valid), encode(test)
    dropped = {"clicks_rare_or_in_short_sessions": clicks - sum(len(s) for _, s in kept),
               "sessions_shorter_than_2": len(raw) - n, "clicks_on_items_unseen_in_training": unseen}
    return Sessions(item_ids=item_ids, train=tr, valid=va, test=te,
                    train_start=np.asarray([t for t, _ in train], np.float64), dropped=dropped)
