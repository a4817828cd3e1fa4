"""Atomic writes shared by every capability: write a uniquely named temporary sibling, fsync, rename into
place; and resumable training checkpoints (model, optimizer, RNGs, the loop's own state) written that way,
used by the model trainer and RADIO's reranker trainer alike."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

from llmrec.errors import StoreError


def _jsonable(x: Any) -> Any:
    """numpy scalars become numbers, anything else its string."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return str(x)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a uniquely named temporary sibling of ``path``; on a clean exit it is fsynced and renamed over
    ``path``, on an error it is removed. Concurrent writers never share a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a temporary file, fsync, rename)."""
    with atomic_open(path, "w") as f:
        f.write(text)
    return Path(path)


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    """Write ``payload`` as JSON to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        json.dump(payload, f, indent=2, default=_jsonable)
    return Path(path)


def torch_save_atomic(path: str | Path, obj: dict) -> None:
    """``torch.save`` to ``path`` atomically."""
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def save_checkpoint(path: str | Path, model, optimizer, state: dict[str, Any], generator=None) -> None:
    """Everything a training loop needs to resume: ``model`` / ``optimizer`` state dicts, the data-order
    ``generator`` (a ``torch.Generator``) and torch's global RNG, plus the loop's ``state``."""
    import torch

    torch_save_atomic(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "generator": generator.get_state() if generator is not None else None,
                             "torch_rng": torch.get_rng_state(), "state": state})


def load_checkpoint(path: str | Path, model, optimizer, generator=None) -> dict[str, Any] | None:
    """Restore what ``save_checkpoint`` wrote; returns the loop's state, or None when there is no checkpoint."""
    import torch

    path = Path(path)
    if not path.exists():
        return None
    try:
        saved = torch.load(path, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
    except (RuntimeError, KeyError, EOFError, ValueError) as e:
        raise StoreError(f"{path}: not a checkpoint of this model and optimizer ({e})") from None
    if generator is not None and saved.get("generator") is not None:
        generator.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    return saved["state"]


def settings_key(config, fields: tuple[str, ...] | None = None, exclude: tuple[str, ...] = ()) -> str:
    """A resume cache's key: the settings of a pydantic ``config`` that finished runs depend on (``fields``,
    else every field but ``exclude``), dumped without default-valued settings, so a field added later at a
    default that keeps the old behaviour leaves the cache valid."""
    d = config.model_dump(mode="json", exclude_defaults=True)
    picked = {k: d.get(k) for k in fields} if fields is not None else {k: v for k, v in d.items() if k not in exclude}
    return json.dumps(picked, sort_keys=True)


def load_resume(path: str | Path, key_field: str, key: str, items_field: str) -> dict[str, Any]:
    """The finished items of a resume cache at ``path`` (``{key_field: key, items_field: {...}}``, as
    ``save_resume`` writes it), or {} when it is absent or was written for other settings."""
    path = Path(path)
    if not path.exists():
        return {}
    saved = json.loads(path.read_text())
    return saved[items_field] if saved.get(key_field) == key else {}


def save_resume(path: str | Path, key_field: str, key: str, items_field: str, items: dict[str, Any]) -> None:
    """Write a resume cache atomically (after each finished item)."""
    write_text_atomic(path, json.dumps({key_field: key, items_field: items}, default=float))
