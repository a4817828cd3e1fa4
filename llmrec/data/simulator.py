"""The reinforcement-learning view (DRR, papers.md §32): explicit ratings split per user by time, and a user
simulator over them.

``rating_log`` turns a ``RecData`` with a ``rating`` column (MovieLens) into index arrays; ``split_by_user``
gives each user's first ``fractions[0]`` ratings to training, the next ``fractions[1]`` to validation and
the rest to test (every user has a past to build a state from and a future to be evaluated on).

``RatingSimulator`` answers "what would user u rate item i": the logged rating when the log has one (the
offline setting, where recommendations are drawn among logged items), else the rating a fitted PMF predicts
(clipped to the scale), as DRR's simulator. The reward of a rating r is (r - 3) / 2, in [-1, 1]. A user
the simulator was not built for is a ``SimulatorError`` naming the user."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmrec.data.schema import DataError, RecData
from llmrec.errors import LLMRecError


class SimulatorError(LLMRecError):
    """A question the simulator cannot answer (unknown user or item)."""


@dataclass
class RatingLog:
    """Ratings as index arrays (user, item, rating, time) with the id of each index."""
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    time: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray

    @property
    def n_users(self) -> int:
        """Users of the log."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Items of the log."""
        return len(self.item_ids)

    def take(self, rows: np.ndarray) -> "RatingLog":
        """The log restricted to ``rows`` (same id tables)."""
        return RatingLog(self.user[rows], self.item[rows], self.rating[rows], self.time[rows], self.user_ids,
                         self.item_ids)

    def by_user(self) -> list[np.ndarray]:
        """Row indices of each user's ratings in time order."""
        order = np.lexsort((np.arange(len(self.user)), self.time, self.user))
        bounds = np.searchsorted(self.user[order], np.arange(self.n_users + 1))
        return [order[bounds[u]: bounds[u + 1]] for u in range(self.n_users)]


def rating_log(data: RecData) -> RatingLog:
    """A ``RecData`` with a ``rating`` column as a ``RatingLog``."""
    if "rating" not in data.columns:
        raise DataError(f"{data.name}: the RL view needs explicit ratings (a 'rating' column)")
    user_ids, user = np.unique(np.asarray(data.columns[data.user_col]).astype(str), return_inverse=True)
    item_ids, item = np.unique(np.asarray(data.columns[data.item_col]).astype(str), return_inverse=True)
    return RatingLog(user.astype(np.int64), item.astype(np.int64), np.asarray(data.columns["rating"], np.float64),
                     np.asarray(data.columns[data.time], np.float64), user_ids, item_ids)


def split_by_user(log: RatingLog, fractions: tuple[float, float, float]) -> tuple[RatingLog, RatingLog, RatingLog]:
    """Each user's ratings in time order, cut at the fractions into train / validation / test."""
    if abs(sum(fractions) - 1) > 1e-6 or min(fractions) <= 0:
        raise DataError(f"split: three positive fractions summing to 1, got {fractions}")
    parts: list[list[np.ndarray]] = [[], [], []]
    for rows in log.by_user():
        a = int(round(len(rows) * fractions[0]))
        b = int(round(len(rows) * (fractions[0] + fractions[1])))
        for k, chunk in enumerate((rows[:a], rows[a:b], rows[b:])):
            parts[k].append(chunk)
    return tuple(log.take(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


def reward_of(rating: np.ndarray | float) -> np.ndarray | float:
    """DRR's reward of a rating on the 1-5 scale: (r - 3) / 2."""
    return (np.asarray(rating, np.float64) - 3.0) / 2.0


class RatingSimulator:
    """Logged ratings where they exist, PMF's prediction elsewhere (see the module doc)."""

    def __init__(self, log: RatingLog, user_factors: np.ndarray, item_factors: np.ndarray, user_bias: np.ndarray,
                 item_bias: np.ndarray, mean: float, scale: tuple[float, float] = (1.0, 5.0)) -> None:
        if user_factors.shape[0] != log.n_users or item_factors.shape[0] != log.n_items:
            raise SimulatorError(f"factors: {user_factors.shape[0]} users x {item_factors.shape[0]} items for a log "
                                 f"of {log.n_users} x {log.n_items}")
        self.log, self.scale = log, scale
        self.U, self.V, self.bu, self.bi, self.mean = user_factors, item_factors, user_bias, item_bias, mean
        self.logged = {(int(u), int(i)): float(r) for u, i, r in zip(log.user, log.item, log.rating)}
        self.user_index = {str(u): n for n, u in enumerate(log.user_ids)}

    def index_of(self, user_id: str) -> int:
        """The index of a user id; an unknown user is a named error."""
        if user_id not in self.user_index:
            raise SimulatorError(f"user: the simulator has no user {user_id!r} (it knows {len(self.user_index)} users "
                                 f"of {self.log.n_users})")
        return self.user_index[user_id]

    def predicted(self, user: int, items: np.ndarray) -> np.ndarray:
        """PMF's ratings of ``items`` for user index ``user``, clipped to the scale."""
        if not 0 <= user < self.log.n_users:
            raise SimulatorError(f"user: index {user} is outside 0..{self.log.n_users - 1}")
        items = np.asarray(items, np.int64)
        if len(items) and (items.min() < 0 or items.max() >= self.log.n_items):
            raise SimulatorError(f"items: an index is outside 0..{self.log.n_items - 1}")
        r = self.mean + self.bu[user] + self.bi[items] + self.V[items] @ self.U[user]
        return np.clip(r, *self.scale)

    def rating(self, user: int, item: int) -> float:
        """The logged rating, else PMF's."""
        got = self.logged.get((int(user), int(item)))
        return got if got is not None else float(self.predicted(user, np.array([item]))[0])

    def reward(self, user: int, item: int) -> float:
        """(rating - 3) / 2."""
        return float(reward_of(self.rating(user, item)))
