"""Config files: find one by path or bundled name, read it, apply ``--set`` overrides, resolve its paths.

Bundled configs live in ``configs/`` of a checkout and ship in the wheel as ``llmrec/_configs``, so
``llmrec train --config deepfm_ml100k`` and ``llmrec experiment ctr_benchmark`` work from any directory.
Path rules: ``${data:NAME}`` is the folder of catalog data set NAME (``llmrec data path NAME``),
``${LLMREC_DATA}`` the data root, ``./`` and ``../`` paths are relative to the config file, and other
relative paths (outputs such as ``runs/x``) relative to the working directory."""
from __future__ import annotations

import difflib

import re
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel

from llmrec.config import deep_merge, expand_paths, parse_overrides
from llmrec.data.catalog import dataset_dir
from llmrec.errors import ConfigError

_DATA_REF = re.compile(r"\$\{data:([A-Za-z0-9_]+)\}")


def resolve_data_refs(raw: Any) -> Any:
    """``${data:NAME}`` -> the folder of data set NAME, everywhere in a raw config."""
    if isinstance(raw, dict):
        return {k: resolve_data_refs(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [resolve_data_refs(v) for v in raw]
    if isinstance(raw, str) and "${data:" in raw:
        return _DATA_REF.sub(lambda m: str(dataset_dir(m.group(1))), raw)
    return raw


def config_dirs() -> list[Path]:
    """Folders of bundled configs: ``llmrec/_configs`` in an installed wheel, ``configs/`` in a checkout."""
    here = Path(__file__).resolve().parent
    return [p for p in (here / "_configs", here.parent / "configs") if p.is_dir()]


def find_config(path_or_name: str | Path, subdir: str = "") -> Path:
    """A config file: an existing path, else the bundled config of that name (``deepfm_ml100k``, or
    ``configs/deepfm_ml100k.yaml`` from any working directory -> ``configs/<subdir>/deepfm_ml100k.yaml``)."""
    path = Path(path_or_name).expanduser()
    if path.is_file():
        return path
    name = path.name[:-5] if path.name.endswith(".yaml") else path.name
    for d in config_dirs():
        cand = d / subdir / f"{name}.yaml"
        if cand.is_file():
            return cand
    have = sorted(p.stem for d in config_dirs() for p in (d / subdir).glob("*.yaml"))
    raise ConfigError(f"config {str(path_or_name)!r}: no such file, and no bundled config of that name "
                      f"(bundled: {', '.join(have) or 'none'})")


def read_config_file(path: Path, overrides: list[str] | None = None) -> dict:
    """A YAML config as a mapping with ``--set`` overrides applied and paths resolved (``expand_paths``)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a mapping")
    merged = deep_merge(raw, parse_overrides(overrides or []))
    return expand_paths(resolve_data_refs(merged), path.resolve().parent)


def field_suggestion(cls: type[BaseModel], dotted: str) -> str:
    """`` (did you mean 'epochs'?)`` for a misspelt ``dotted`` field of ``cls`` (walking nested configs), or ""."""
    *parents, leaf = dotted.split(".")
    node: Any = cls
    for name in parents:
        info = node.model_fields.get(name) if isinstance(node, type) and issubclass(node, BaseModel) else None
        if info is None:
            return ""
        candidates = [a for a in (info.annotation, *get_args(info.annotation))
                      if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return ""
        node = candidates[0]
    if not (isinstance(node, type) and issubclass(node, BaseModel)):
        return ""
    close = difflib.get_close_matches(leaf, list(node.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {'.'.join([*parents, close[0]])!r}?)" if close else ""


def blame_overrides(message: str, path: Path, overrides: list[str] | None, cls: type[BaseModel] | None = None) -> str:
    """A config error message ``"<path>: field: problem; field: problem"`` with every problem in a field that a
    ``--set`` override wrote blamed on that override instead of the file, and misspelt fields given a
    suggestion from ``cls``."""
    sets = {}
    for o in overrides or []:
        key = o.split("=", 1)[0].strip()
        sets[key] = o
    body = message[len(f"{path}: "):] if message.startswith(f"{path}: ") else message
    parts = []
    for part in body.split("; "):
        field = part.split(":", 1)[0].strip()
        hint = field_suggestion(cls, field) if cls is not None and "Extra inputs" in part else ""
        owner = next((o for k, o in sets.items() if field == k or field.startswith(k + ".") or k.startswith(field + ".")),
                     None)
        parts.append((f"--set {owner}: " if owner else f"{path}: ") + part + hint)
    return "; ".join(parts)
