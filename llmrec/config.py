"""Shared configuration helpers: the cache home and strict typed configs."""
from __future__ import annotations

import os
from pathlib import Path

from typing import Any, Mapping, TypeVar

import yaml
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
    """Default home of persisted memory stores: ``$LLMREC_MEMORY``, else ``$LLMREC_HOME/memory``; never the
    working directory or a checkout (whose ``memory/`` only documents the store format)."""
    env = os.environ.get("LLMREC_MEMORY")
    if env:
        return Path(env).expanduser()
    return llmrec_home() / "memory"


SETTINGS_FILE = "config.yaml"


def settings_path() -> Path:
    """Per-machine settings written by ``llmrec data use`` (``$LLMREC_HOME/config.yaml``)."""
    return llmrec_home() / SETTINGS_FILE


def read_settings() -> dict:
    """The per-machine settings mapping (``$LLMREC_HOME/config.yaml``), empty when there is none."""
    p = settings_path()
    if not p.exists():
        return {}
    raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: settings must be a mapping")
    return raw


def data_root(data_path: str | Path | None = None) -> Path:
    """Where real data sets are read from, first match wins: ``data_path`` (``--data-path``), ``$LLMREC_DATA``,
    the folder saved by ``llmrec data use DIR``, else ``$LLMREC_HOME/data`` (where ``llmrec data fetch``
    downloads to)."""
    if data_path:
        return Path(data_path).expanduser()
    env = os.environ.get("LLMREC_DATA")
    if env:
        return Path(env).expanduser()
    configured = read_settings().get("data_path")
    if configured:
        return Path(str(configured)).expanduser()
    return llmrec_home() / "data"


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict:
    """``base`` with ``over`` merged in, recursively for nested mappings (``over`` wins)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def parse_overrides(pairs: list[str]) -> dict:
    """``["model.dropout=0.1", "trainer.epochs=3"]`` -> nested dict (values parsed as YAML)."""
    out: dict = {}
    for p in pairs:
        if "=" not in p:
            raise ConfigError(f"--set {p!r}: expected dotted.key=value")
        key, value = p.split("=", 1)
        node = out
        *parents, leaf = key.strip().split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = yaml.safe_load(value)
    return out


def expand_paths(raw: Any, base: Path | None = None) -> Any:
    """Resolve the paths of a raw config: ``${LLMREC_DATA}`` -> the data root, other ``${VAR}`` from the
    environment; with ``base`` (the config file's folder), strings starting with ``./`` or ``../`` are
    relative to the config file. Other relative paths (outputs such as ``runs/x``) stay relative to the
    working directory. (``${data:NAME}`` is resolved earlier, by ``llmrec.configfiles``.)"""
    if isinstance(raw, dict):
        return {k: expand_paths(v, base) for k, v in raw.items()}
    if isinstance(raw, list):
        return [expand_paths(v, base) for v in raw]
    if not isinstance(raw, str):
        return raw
    if "$" in raw:
        raw = os.path.expandvars(raw.replace("${LLMREC_DATA}", str(data_root())))
    if base is not None and (raw.startswith("./") or raw.startswith("../")):
        return str((base / raw).resolve())
    return raw
