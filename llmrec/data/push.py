"""The push view (PSP, papers.md §34): whom to send a push about a campaign's items.

The interaction log is cut by time into a **graph period** (the user-item graph the push methods read), a
**validation period** (to choose hyperparameters) and a **test period**. A **campaign** is a group of items
(a MovieLens genre, a synthetic-world category); its **seed items** are ``seed_items`` of its items drawn
from those in the graph (seeded: one draw per run seed), and its **targets** in a period are the candidate
users who interact with a campaign item other than a seed in that period. The **candidates** of a period are
the users in the graph who are active in that period at all: a push goes to users who come back, and the
question is which of them care about the campaign. A method ranks the candidates; precision@k is the share of
targets among its top k.

Edges: every row (``edges: all``: a MovieLens rating is an "install") or only positive rows (``edges: positive``:
a synthetic-world click); ``weight: rating`` weights MovieLens edges by the rating. Users or items without an
edge in the graph period are **isolated**: they are counted (``PushData.isolated``), never candidates, and a
seed drawn among them is impossible by construction."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.data.schema import DataError, RecData


class PushConfig(StrictConfig):
    """How a ``RecData`` becomes push campaigns: the campaign column, the period split, seeds, edges."""
    campaign_by: str = "genres"  # an item column: multi-hot (MovieLens genres) or categorical (category)
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)  # graph / validation / test periods, by time
    # time: one global cut (users who do not come back are no candidates); user: each user's own log is cut
    # at these fractions (every user has a past and a future; MovieLens, where most users rate in one burst)
    split_by: Literal["time", "user"] = "time"
    # split_by user: instead of fractions, each user's last ``horizon`` interactions are the test period and the
    # ``horizon`` before them the validation period (a push reaches a user at the next visits: every user has
    # the same number of future interactions, so being a heavy user alone does not make a target)
    horizon: int | None = Field(None, ge=1)
    seed_items: int = Field(10, ge=1)
    min_items: int = Field(20, ge=2)  # a campaign needs this many items in the graph (seeds + others)
    min_targets: int = Field(10, ge=1)  # ... and this many targets in each evaluated period
    edges: Literal["all", "positive"] = "all"
    weight: Literal["binary", "rating"] = "binary"
    campaigns: list[str] | None = None  # None: every campaign that has enough items and targets
    exclude: list[str] = ["unknown"]  # campaign values never used (MovieLens' "unknown" genre)


class PushViewConfig(PushConfig):
    """The push family's view of a training job's data (``push:``): how the log becomes campaigns and periods,
    the k of precision@k and how many seeded draws of each campaign's seed items are averaged."""
    k: int = Field(100, ge=1)
    draws: int = Field(3, ge=1)


@dataclass
class PushPeriod:
    """One evaluated period: its candidate users and its interactions (user index, item index or -1 for an
    item outside the graph, and per campaign which interactions are with the campaign's items)."""
    candidates: np.ndarray
    user: np.ndarray
    item: np.ndarray
    in_campaign: dict[str, np.ndarray]

    def targets(self, campaign: str, seeds: np.ndarray) -> np.ndarray:
        """The candidate users who interact with an item of ``campaign`` other than the ``seeds``."""
        hit = self.in_campaign[campaign] & ~np.isin(self.item, seeds)
        return np.unique(self.user[hit])


@dataclass
class PushData:
    """The graph period's user x item weights, the campaigns' items, and the validation / test periods."""
    users: np.ndarray  # user id per row of ``weights``
    items: np.ndarray  # item id per column
    weights: sp.csr_matrix  # users x items, the graph period's edges
    campaign_items: dict[str, np.ndarray]  # campaign -> item indices (in the graph)
    periods: dict[str, PushPeriod]  # "valid", "test"
    isolated: dict[str, int] = field(default_factory=dict)  # users / items of the log with no graph edge

    def seeds(self, campaign: str, n: int, seed: int) -> np.ndarray:
        """``n`` seed items of ``campaign`` (item indices), drawn with ``seed``."""
        pool = self.campaign_items[campaign]
        rng = np.random.default_rng([seed, sum(campaign.encode())])
        return np.sort(rng.choice(pool, size=min(n, len(pool) - 1), replace=False))


def _periods(t: np.ndarray, user: np.ndarray | None, split: tuple[float, float, float],
             horizon: int | None = None) -> np.ndarray:
    """0 / 1 / 2 (graph / validation / test) per row: by one global time cut, or within each user's log (by
    fractions, or the last ``horizon`` rows test and the ``horizon`` before them validation)."""
    period = np.empty(len(t), np.int8)
    if user is None:
        order = np.argsort(t, kind="stable")
        a, b = int(len(order) * split[0]), int(len(order) * (split[0] + split[1]))
        period[order[:a]], period[order[a:b]], period[order[b:]] = 0, 1, 2
        return period
    order = np.lexsort((np.arange(len(t)), t, user))  # by user, then time
    _, start, count = np.unique(user[order], return_index=True, return_counts=True)
    rank = np.arange(len(t)) - np.repeat(start, count)  # position within the user's log
    if horizon is not None:
        left = np.repeat(count, count) - 1 - rank  # rows after this one in the user's log
        period[order] = np.where(left < horizon, 2, np.where(left < 2 * horizon, 1, 0))
        return period
    frac = rank / np.repeat(count, count)
    period[order] = np.where(frac < split[0], 0, np.where(frac < split[0] + split[1], 1, 2))
    return period


def _busiest(period: PushPeriod, campaign: str, n: int) -> np.ndarray:
    """The ``n`` graph items of ``campaign`` with the most interactions in ``period``."""
    its = period.item[period.in_campaign[campaign] & (period.item >= 0)]
    vals, counts = np.unique(its, return_counts=True)
    return vals[np.argsort(-counts, kind="stable")[:n]]


def _campaign_values(value) -> tuple[str, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (str(value),)


def push_view(data: RecData, c: PushConfig) -> PushData:
    """``data`` cut into the graph period and the validation / test periods with each campaign's targets."""
    cols = data.columns
    if c.campaign_by not in cols:
        raise DataError(f"push.campaign_by: the data has no column {c.campaign_by!r} (have {sorted(cols)})")
    if abs(sum(c.split) - 1) > 1e-6 or min(c.split) <= 0:
        raise DataError(f"push.split: must be three positive fractions summing to 1, got {c.split}")
    rows = np.arange(len(data)) if c.edges == "all" else np.flatnonzero(np.asarray(cols[data.label]) > 0)
    if c.weight == "rating" and "rating" not in cols:
        raise DataError("push.weight: 'rating' needs a rating column")
    t = np.asarray(cols[data.time], dtype=np.float64)
    user, item = np.asarray(cols[data.user_col]).astype(str), np.asarray(cols[data.item_col]).astype(str)
    if c.horizon is not None and c.split_by != "user":
        raise DataError("push.horizon: a horizon of interactions per user needs split_by: user")
    period = np.full(len(data), -1, np.int8)  # rows that are no edge (edges: positive) belong to no period
    period[rows] = _periods(t[rows], user[rows] if c.split_by == "user" else None, c.split, c.horizon)

    g = rows[period[rows] == 0]
    g = g[np.argsort(t[g], kind="stable")]
    _, last = np.unique(np.char.add(np.char.add(user[g], "\x1f"), item[g])[::-1], return_index=True)
    g = g[len(g) - 1 - last]  # a repeated (user, item) pair is one edge, at its latest weight
    users, uidx = np.unique(user[g], return_inverse=True)
    items, iidx = np.unique(item[g], return_inverse=True)
    w = np.asarray(cols["rating"], np.float64)[g] if c.weight == "rating" else np.ones(len(g))
    weights = sp.csr_matrix((w, (uidx, iidx)), shape=(len(users), len(items)))
    isolated = {"users": int(len(np.setdiff1d(np.unique(user), users))),
                "items": int(len(np.setdiff1d(np.unique(item), items)))}

    item_pos = {i: n for n, i in enumerate(items)}
    user_pos = {u: n for n, u in enumerate(users)}
    by_campaign: dict[str, set[int]] = {}
    first_row = {}
    for r in range(len(data)):
        first_row.setdefault(item[r], r)
    for it, r in first_row.items():
        for v in _campaign_values(cols[c.campaign_by][r]):
            if v not in c.exclude and it in item_pos:
                by_campaign.setdefault(v, set()).add(item_pos[it])
    campaign_items = {k: np.array(sorted(v)) for k, v in sorted(by_campaign.items()) if len(v) >= c.min_items}
    if c.campaigns is not None:
        missing = [k for k in c.campaigns if k not in campaign_items]
        if missing:
            raise DataError(f"push.campaigns: {missing} have fewer than {c.min_items} items in the graph period "
                            f"(usable: {sorted(campaign_items)})")
        campaign_items = {k: campaign_items[k] for k in c.campaigns}

    periods = {}
    for name, p in (("valid", 1), ("test", 2)):
        pr = rows[period[rows] == p]
        pr = pr[np.array([u in user_pos for u in user[pr]], bool)]
        values = [_campaign_values(cols[c.campaign_by][r]) for r in pr]
        periods[name] = PushPeriod(
            candidates=np.unique([user_pos[u] for u in user[pr]]).astype(np.int64),
            user=np.array([user_pos[u] for u in user[pr]], np.int64),
            item=np.array([item_pos.get(i, -1) for i in item[pr]], np.int64),
            in_campaign={k: np.array([k in v for v in values], bool) for k in campaign_items})
    # a campaign needs enough targets in every period once its seeds are taken out (checked with its
    # busiest items as the seeds, a pessimistic draw)
    keep = []
    for k, its in campaign_items.items():
        worst = min(len(per.targets(k, _busiest(per, k, c.seed_items))) for per in periods.values())
        if worst >= c.min_targets:
            keep.append(k)
    if c.campaigns is not None and len(keep) < len(c.campaigns):
        raise DataError(f"push.campaigns: {sorted(set(c.campaigns) - set(keep))} have fewer than {c.min_targets} "
                        f"targets in a period")
    if not keep:
        raise DataError(f"push: no campaign of {c.campaign_by!r} has {c.min_items} graph items and "
                        f"{c.min_targets} targets per period")
    campaign_items = {k: campaign_items[k] for k in keep}
    for per in periods.values():
        per.in_campaign = {k: per.in_campaign[k] for k in keep}
    return PushData(users=users, items=items, weights=weights, campaign_items=campaign_items, periods=periods,
                    isolated=isolated)
