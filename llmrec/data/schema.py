"""The table every recommendation data set becomes: one row per impression, typed fields, item/user text."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from llmrec.errors import DataError

FieldType = Literal["categorical", "numerical", "multi_hot", "behavior"]


class DataFormatError(DataError):
    """A malformed data file; the message names the file, line and field."""

    def __init__(self, path: str, line: int | None, field_name: str | None, problem: str) -> None:
        where = str(path) + (f":{line}" if line is not None else "") + (f" field {field_name!r}" if field_name else "")
        super().__init__(f"{where}: {problem}")


@dataclass
class RecData:
    """Impressions with labels. ``columns`` hold numpy arrays of equal length (multi-hot fields hold
    object arrays of tuples of tokens). ``fields`` types every feature column the models may use."""

    name: str
    columns: dict[str, np.ndarray]
    fields: dict[str, FieldType]
    label: str = "label"
    time: str = "timestamp"
    user_col: str = "user_id"
    item_col: str = "item_id"
    scenario_col: str | None = None
    domain: str = "items"  # what the items are, in words (prompts use it)
    item_info: dict[str, dict[str, str]] = field(default_factory=dict)  # item id -> title/category/description
    user_info: dict[str, dict[str, str]] = field(default_factory=dict)  # user id -> profile text fields
    # multi-label view: the label columns of several tasks, shallow to deep (``llmrec.data.multilabel``)
    tasks: tuple[str, ...] = ()
    # a search log of the same users (QueryRec): columns user_id, timestamp, query (text); empty: none
    searches: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = {len(v) for v in self.columns.values()}
        if len(n) > 1:
            raise ValueError(f"columns: unequal lengths {sorted(n)}")
        for f in [*self.fields, self.label, self.time, *self.tasks]:
            if f not in self.columns:
                raise ValueError(f"fields: column {f!r} is missing")
        y = np.asarray(self.columns[self.label], dtype=np.float64)
        bad = ~np.isfinite(y) | (y < 0) | (y > 1)
        if bad.any():  # a NaN label would silently train as 0
            raise ValueError(f"{self.label}[{int(np.argmax(bad))}]: labels must be finite and in [0, 1], "
                             f"got {y[bad][0]!r} ({int(bad.sum())} rows)")

    def __len__(self) -> int:
        return len(self.columns[self.label])

    def chronological_split(self, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> tuple[np.ndarray, ...]:
        """Row indices of train/valid/test, ordered by time (ties broken by row order)."""
        if abs(sum(fractions) - 1) > 1e-6 or min(fractions) <= 0:
            raise ValueError(f"fractions: must be positive and sum to 1, got {fractions}")
        order = np.argsort(self.columns[self.time], kind="stable")
        a = int(len(order) * fractions[0])
        b = int(len(order) * (fractions[0] + fractions[1]))
        return order[:a], order[a:b], order[b:]

    def take(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The columns restricted to ``rows``."""
        return {k: v[rows] for k, v in self.columns.items()}
