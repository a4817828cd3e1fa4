"""The multi-label view (KAML, papers.md §16): impressions with several funnel labels, some of them missing.

Labels are ordered shallow to deep (a deeper positive implies every shallower one): the synthetic world's
``click -> cart -> purchase`` (``SyntheticConfig.funnel``) and MovieLens' ``rated -> liked (rating >= 4) ->
loved (rating = 5)``, where the impressions a user did not rate are sampled (``negatives`` per rating,
items drawn by popularity among those the user never rated, at the time of one of the user's ratings).

**Missingness, simulated as in advertising.** Every item belongs to one of ``advertisers`` advertisers
(seeded assignment, column and categorical field ``advertiser``; with ``advertiser_by`` advertisers
specialise: items sorted by that column are dealt in contiguous blocks, so an advertiser sells one category). An advertiser reports only some conversion
types: a fraction ``report[t]`` of the advertisers reports task t (exactly ``round(report[t] * advertisers)``
of them, drawn per task; the first task, the impression-level label, is reported by everyone by default).
A label an advertiser does not report is missing for its rows, except where the platform's own attribution
saw the conversion: each unreported positive is attributed with probability ``attribution`` (column
``<task>:attributed``). Reported labels are in ``<task>:reported``; the complete labels stay in the task
columns, and only the test split reads them (per-task AUC on complete labels).

**What a training row knows about task t** (``label_matrix``), as a code per (row, task):
``REPORTED`` (the advertiser reports t: the true label), ``ATTRIBUTED`` (not reported, but implied: the
conversion was attributed, or a deeper conversion is known positive -> 1; or a shallower one is reported
negative -> 0; e.g. an impression without a click has no cart) or ``UNKNOWN``. Strict masking trains task t
on ``REPORTED`` cells only; KAML's attribution-driven masking adds the ``ATTRIBUTED`` ones. Data of one's own
(no simulation) may hold NaN in a task column for a missing label: those cells are ``UNKNOWN``, the others
``REPORTED``."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.data.schema import RecData
from llmrec.errors import ConfigError, DataError

UNKNOWN, REPORTED, ATTRIBUTED = 0, 1, 2
MOVIELENS_TASKS = ("rated", "liked", "loved")
SYNTHETIC_TASKS = ("click", "cart", "purchase")


class MultiLabelConfig(StrictConfig):
    """The multi-label view's simulated advertisers, reporting and attribution (and MovieLens' negatives)."""
    advertisers: int = Field(20, ge=1)
    # fraction of advertisers reporting each task, shallow -> deep; None: 1.0, 0.5, 0.3
    report: list[float] | None = None
    attribution: float = Field(0.3, ge=0.0, le=1.0)  # P(an unreported conversion is attributed anyway)
    negatives: float = Field(1.0, gt=0.0)  # MovieLens: sampled unrated impressions per rating
    # a per-item column advertisers specialise in (each advertiser's items share its value where the counts
    # allow, e.g. the synthetic world's category): unreported labels are then whole market segments, as when
    # one kind of advertiser does not report a conversion; None: items dealt to advertisers at random
    advertiser_by: str | None = None
    seed: int = 0


def _constant_within(values: np.ndarray, keys: np.ndarray) -> bool:
    first: dict = {}
    for k, v in zip(keys.tolist(), values.tolist()):
        if first.setdefault(k, v) != v:
            return False
    return True


def movielens_labels(data: RecData, negatives: float, seed: int) -> RecData:
    """MovieLens ratings as ``rated / liked / loved`` impressions: every rating is a rated impression, plus
    ``negatives`` sampled unrated ones per rating (user, time and user columns of a random rating of that
    user; an item the user never rated, drawn by rating count; item columns from that item's rows)."""
    if "rating" not in data.columns:
        raise DataError(f"{data.name}: the rated / liked / loved view needs a 'rating' column")
    rng = np.random.default_rng([seed, 2])
    cols, n = data.columns, len(data)
    users, items = cols[data.user_col], cols[data.item_col]
    skip = {data.label, data.user_col, data.item_col, data.time, "rating"}
    item_cols = [k for k in cols if k not in skip and _constant_within(cols[k], items)]
    user_cols = [k for k in cols if k not in skip and k not in item_cols and _constant_within(cols[k], users)]
    other = sorted(set(cols) - skip - set(item_cols) - set(user_cols))
    if other:
        raise DataError(f"{data.name}: columns {other} are neither per-user nor per-item; sampled impressions "
                        "cannot be given a value")
    item_names, first_row, counts = np.unique(items, return_index=True, return_counts=True)
    rated = set(zip(users.tolist(), items.tolist()))
    m = int(round(negatives * n))
    src = rng.integers(0, n, m)  # the rating each sampled impression copies user, time and user columns from
    p = counts / counts.sum()
    neg_item = np.empty(m, dtype=np.int64)
    for j, r in enumerate(src.tolist()):
        u = users[r]
        for _ in range(50):  # a user who rated nearly everything: give up after 50 draws
            k = int(rng.choice(len(item_names), p=p))
            if (u, item_names[k]) not in rated:
                break
        neg_item[j] = k
    keep = np.array([(users[r], item_names[k]) not in rated for r, k in zip(src.tolist(), neg_item.tolist())])
    src, neg_item = src[keep], neg_item[keep]
    out = {}
    for k, v in cols.items():
        if k in item_cols or k == data.item_col:
            extra = v[first_row[neg_item]]
        elif k == "rating":
            extra = np.zeros(len(src), v.dtype)
        elif k == data.label:
            continue
        else:
            extra = v[src]
        out[k] = np.concatenate([v, extra])
    rating = out["rating"]
    out["rated"] = np.concatenate([np.ones(n, np.float32), np.zeros(len(src), np.float32)])
    out["liked"] = ((rating >= 4) & (out["rated"] > 0)).astype(np.float32)
    out["loved"] = ((rating >= 5) & (out["rated"] > 0)).astype(np.float32)
    out["label"] = out["rated"].copy()
    return replace(data, columns=out, label="label")


def multi_label_view(data: RecData, tasks: tuple[str, ...], c: MultiLabelConfig) -> RecData:
    """``data`` (its ``tasks`` columns hold complete funnel labels) with simulated advertisers, reporting and
    attribution (module doc); sets ``RecData.tasks``."""
    report = list(c.report) if c.report is not None else [1.0, 0.5, 0.3][: len(tasks)] + [0.3] * (len(tasks) - 3)
    if len(report) != len(tasks):
        raise ConfigError(f"data.multi_label.report: {len(report)} fractions for {len(tasks)} tasks {list(tasks)}")
    bad = [r for r in report if not 0 <= r <= 1]
    if bad:
        raise ConfigError(f"data.multi_label.report: fractions must be in [0, 1], got {bad}")
    if "advertiser" in data.columns:
        raise DataError(f"{data.name}: already has a column 'advertiser'")
    y = np.stack([np.asarray(data.columns[t], np.float32) for t in tasks], 1)
    for t in range(1, len(tasks)):
        worse = y[:, t] > y[:, t - 1]
        if worse.any():
            raise DataError(f"{tasks[t]}[{int(np.argmax(worse))}]: positive while {tasks[t - 1]} is not (labels must "
                            "form a funnel, shallow to deep)")
    rng = np.random.default_rng([c.seed, 3])
    items = data.columns[data.item_col]
    names, first = np.unique(items, return_index=True)
    if c.advertiser_by is None:
        owner = dict(zip(names.tolist(), (rng.permutation(len(names)) % c.advertisers).tolist()))
    else:
        if c.advertiser_by not in data.columns:
            raise ConfigError(f"data.multi_label.advertiser_by: {c.advertiser_by!r} is not a column of {data.name}")
        if not _constant_within(data.columns[c.advertiser_by], items):
            raise ConfigError(f"data.multi_label.advertiser_by: {c.advertiser_by!r} varies within an item")
        value = np.asarray(data.columns[c.advertiser_by][first]).astype(str)
        order = np.lexsort((rng.permutation(len(names)), value))  # by value, random within a value
        block = np.empty(len(names), np.int64)
        block[order] = np.arange(len(names)) * c.advertisers // len(names)
        owner = dict(zip(names.tolist(), block.tolist()))
    adv = np.fromiter((owner[i] for i in items.tolist()), np.int64, len(items))
    cols = {**data.columns, "advertiser": adv.astype(str).astype(object)}
    for t, name in enumerate(tasks):
        k = int(round(report[t] * c.advertisers))
        goal = np.zeros(c.advertisers, bool)
        goal[rng.choice(c.advertisers, k, replace=False)] = True
        reported = goal[adv]
        cols[f"{name}:reported"] = reported
        cols[f"{name}:attributed"] = ~reported & (y[:, t] > 0) & (rng.random(len(adv)) < c.attribution)
    return replace(data, columns=cols, fields={**data.fields, "advertiser": "categorical"}, tasks=tuple(tasks))


def label_matrix(data: RecData, rows: np.ndarray, complete: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(labels [n, T] float32, codes [n, T] int8) of ``rows`` for ``data.tasks`` (module doc); ``complete``:
    every known label as ``REPORTED`` (the test split's complete labels). An unknown cell's label is 0."""
    tasks = data.tasks
    truth = np.stack([np.asarray(data.columns[t], np.float32)[rows] for t in tasks], 1)
    known = np.isfinite(truth)
    if complete or f"{tasks[0]}:reported" not in data.columns:
        return np.where(known, truth, 0).astype(np.float32), known.astype(np.int8) * REPORTED
    rep = np.stack([np.asarray(data.columns[f"{t}:reported"], bool)[rows] for t in tasks], 1) & known
    attr = np.stack([np.asarray(data.columns[f"{t}:attributed"], bool)[rows] for t in tasks], 1)
    pos_known = (rep & (truth > 0)) | attr
    neg_known = rep & (truth == 0)
    n_t = len(tasks)
    deeper_pos = np.zeros_like(rep)
    shallower_neg = np.zeros_like(rep)
    for t in range(n_t - 2, -1, -1):
        deeper_pos[:, t] = deeper_pos[:, t + 1] | pos_known[:, t + 1]
    for t in range(1, n_t):
        shallower_neg[:, t] = shallower_neg[:, t - 1] | neg_known[:, t - 1]
    implied_pos = ~rep & (attr | deeper_pos)
    implied_neg = ~rep & ~implied_pos & shallower_neg
    codes = np.where(rep, REPORTED, np.where(implied_pos | implied_neg, ATTRIBUTED, UNKNOWN)).astype(np.int8)
    labels = np.where(rep, np.where(known, truth, 0), implied_pos.astype(np.float32)).astype(np.float32)
    return labels, codes


def check_reported(tasks: tuple[str, ...], codes: np.ndarray, split: str = "train") -> None:
    """A task whose label is missing on every row of ``split``: a ``DataError`` naming it."""
    for t, name in enumerate(tasks):
        if not (codes[:, t] == REPORTED).any():
            raise DataError(f"labels.{name}: the label is missing for every {split} row (no advertiser reports it); "
                            "report it for some rows (data.multi_label.report) or drop the task")
