"""Methods of the no-trainer benchmarks (``push``, ``session``): a registered model, its label, and a grid
of config values chosen on validation. Shared so each kind only says how a setting is scored."""
from __future__ import annotations

import itertools
from typing import Any

from pydantic import model_validator

from llmrec.config import StrictConfig
from llmrec.models import resolve_model_config


class GridMethod(StrictConfig):
    """A model, its label, and the values of its config fields to choose among on validation."""
    label: str
    model: dict[str, Any]
    grid: dict[str, list[Any]] = {}

    @model_validator(mode="after")
    def _check(self) -> "GridMethod":
        resolve_model_config(self.model, f"methods.{self.label}.model")
        for key, values in self.grid.items():
            if not values:
                raise ValueError(f"methods.{self.label}.grid.{key}: needs at least one value")
            for v in values:
                resolve_model_config({**self.model, key: v}, f"methods.{self.label}.grid.{key}")
        return self

    def points(self) -> list[dict[str, Any]]:
        """Every combination of the grid's values (one empty point when the grid is empty)."""
        keys = sorted(self.grid)
        return [dict(zip(keys, vals)) for vals in itertools.product(*(self.grid[k] for k in keys))]


def setting_key(point: dict[str, Any]) -> str:
    """``a=1,b=x`` for a grid point (``default`` for the empty one)."""
    return ",".join(f"{k}={v}" for k, v in sorted(point.items())) or "default"


def distinct_labels(methods: list[GridMethod]) -> list[GridMethod]:
    """``methods`` when their labels are distinct and there is one at least (a ``ValueError`` otherwise)."""
    labels = [m.label for m in methods]
    if len(set(labels)) != len(labels) or not labels:
        raise ValueError(f"methods: need distinct labels, got {labels}")
    return methods
