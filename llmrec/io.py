"""Atomic writes shared by every capability: write a temporary sibling, fsync, rename into place."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _jsonable(x: Any) -> Any:
    """numpy scalars become numbers, anything else its string."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return str(x)


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, default=_jsonable)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def torch_save_atomic(path: str | Path, obj: dict) -> None:
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
