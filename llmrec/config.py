"""Shared configuration helpers: the cache home and strict typed configs."""
from __future__ import annotations

import os
from pathlib import Path

from typing import Any, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from llmrec.errors import ConfigError


class StrictConfig(BaseModel):
    """Base for every llmrec config: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


C = TypeVar("C", bound=BaseModel)


def validation_message(err: ValidationError, prefix: str) -> str:
    """Every error of a pydantic validation as ``prefix.dotted.field: message``, joined by "; "."""
    return "; ".join(f"{'.'.join(str(x) for x in (prefix, *e['loc']) if x != '')}: {e['msg']}" for e in err.errors())


def validate_config(config_cls: type[C], raw: Mapping[str, Any], prefix: str) -> C:
    """``config_cls`` from a mapping; a bad or unknown key is a ``ConfigError`` naming ``prefix.field``."""
    try:
        return config_cls.model_validate(dict(raw))
    except ValidationError as e:
        raise ConfigError(validation_message(e, prefix)) from None


def llmrec_home() -> Path:
    """Cache root: ``$LLMREC_HOME`` or ``~/.cache/llmrec``. Created on first use."""
    root = Path(os.environ.get("LLMREC_HOME", Path.home() / ".cache" / "llmrec")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def repo_root() -> Path | None:
    """The checkout root when llmrec runs from a source tree (it has pyproject.toml beside llmrec/)."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() else None


def default_memory_dir() -> Path:
    """Default home of persisted memory stores: ``memory/`` in a checkout, else under LLMREC_HOME."""
    root = repo_root()
    if root is not None:
        return root / "memory"
    return llmrec_home() / "memory"


def data_root() -> Path:
    """Where real data sets are read from: ``$LLMREC_DATA``, else ``shared/data`` beside the checkout (the
    layout of this project's workspace). Loaders name the missing folder when a data set is absent."""
    env = os.environ.get("LLMREC_DATA")
    if env:
        return Path(env).expanduser()
    root = repo_root()
    return (root.parent / "shared" / "data") if root is not None else llmrec_home() / "data"
