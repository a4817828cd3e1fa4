"""The config reference, generated from the typed configs themselves (``llmrec docs config``): every field
of a training job, an extraction job, the data block (your files included), the views, the trainer, the LLM
and memory, and every registered model's own fields per family with the defaults its defaults file sets.
A field's explanation is the comment written beside it in the source (or its class's docstring line), so
the reference cannot drift from the code: ``tests/test_configref.py`` regenerates it and compares."""
from __future__ import annotations

import inspect
import io
import re
import tokenize
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from llmrec.data.files import Columns, FilesConfig, SideTable, TableFile
from llmrec.data.registry import DataConfig
from llmrec.data.views import GraphViewConfig, SequenceViewConfig
from llmrec.train_job import KnowledgeFeatures, TrainJobConfig
from llmrec.knowledge.job import KnowledgeJobConfig
from llmrec.llm.registry import LLMConfig
from llmrec.memory.api import MemoryConfig
from llmrec.models import FAMILIES, MODELS, model_defaults
from llmrec.train import TrainerConfig

SECTIONS: list[tuple[str, str, type[BaseModel]]] = [
    ("Training job", "`llmrec train --config`, `llmrec.train(...)`", TrainJobConfig),
    ("data", "every job's `data` block", DataConfig),
    ("data.files", "your own files (`source: files`)", FilesConfig),
    ("data.files.interactions", "a file", TableFile),
    ("data.files.columns", "the interaction columns", Columns),
    ("data.files.items / users", "an items or users file", SideTable),
    ("trainer", "the one training loop (family defaults layer over these)", TrainerConfig),
    ("graph", "the graph family's view", GraphViewConfig),
    ("sequence", "the sequential family's view", SequenceViewConfig),
    ("knowledge", "knowledge as model input", KnowledgeFeatures),
    ("Extraction job", "`llmrec extract --config`, `llmrec.extract(...)`", KnowledgeJobConfig),
    ("llm", "any LLM backend", LLMConfig),
    ("Memory", "`llmrec.Memory(config=...)`", MemoryConfig),
]


def field_comments(cls: type) -> dict[str, str]:
    """``name -> explanation`` for a class body's fields, from the source's comments: the comment on the
    field's line, comment lines right below it (its continuation), and comment lines right above a field
    (a blank line or code ends a comment block)."""
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(src).readline) if tok.type == tokenize.COMMENT}
    out: dict[str, str] = {}
    above: list[str] = []
    last: str | None = None  # the field whose inline comment the next comment-only lines continue
    for row, line in enumerate(src.splitlines(), start=1):
        stripped = line.strip()
        m = re.match(r"    (\w+)\s*:[^=]*(=|$)", line)
        if stripped.startswith("#"):
            if last is not None:
                out[last] += " " + comments[row]
            else:
                above.append(comments[row])
            continue
        if m and not stripped.startswith(("def ", "@", "class ", "return")):
            name = m.group(1)
            text = " ".join(above + ([comments[row]] if row in comments else []))
            out[name] = text
            above, last = [], (name if row in comments else None)
            continue
        above, last = [], None
    return {k: v for k, v in out.items() if v}


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation)
    text = re.sub(r"\b(typing|pydantic|llmrec)\.[\w.]*?(\w+)\b", r"\2", text)
    return text.replace("NoneType", "None").replace("|", " \\| ")


def _default(info: FieldInfo, overrides: dict | None, name: str) -> str:
    if overrides and name in overrides:
        value = overrides[name]
    elif info.default is not PydanticUndefined:
        value = info.default
    elif info.default_factory is not None:
        value = info.default_factory()
    else:
        return "required"
    if isinstance(value, BaseModel):
        return "its own defaults"
    return f"`{value!r}`".replace("|", "\\|")


def field_table(cls: type[BaseModel], overrides: dict | None = None, skip: tuple[str, ...] = ()) -> str:
    """A Markdown table of ``cls``'s fields: name, type, default (``overrides`` first: a defaults file) and meaning."""
    notes = field_comments(cls)
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for name, info in cls.model_fields.items():
        if name in skip:
            continue
        key = info.alias or name
        meaning = (notes.get(name) or info.description or "").replace("|", "\\|")
        rows.append(f"| `{key}` | {_type_name(info.annotation)} | {_default(info, overrides, name)} | {meaning} |")
    return "\n".join(rows)


def reference() -> str:
    """The whole reference as Markdown."""
    parts = ["# Config reference", "",
             "Generated from the typed configs by `llmrec docs config` (do not edit by hand). Every YAML key is "
             "checked: an unknown key or a value out of range is an error naming the field. `--set a.b=c` "
             "overrides any field from the command line.", ""]
    for title, where, cls in SECTIONS:
        doc = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
        parts += [f"## {title}", "", f"{where}. {doc}", "", field_table(cls), ""]
    parts += ["## Models", "",
              "`model: {name: ..., <fields>}`; defaults: the model's class < `configs/defaults/models/<name>.yaml` < "
              "your YAML < `--set`. Trainer defaults per family: `configs/defaults/families/<family>.yaml`.", ""]
    for fam in FAMILIES.names():
        names = [n for n in MODELS.names() if MODELS.get(n).family == fam]
        if not names:
            continue
        f = FAMILIES.get(fam)
        parts += [f"### {fam} family", "", f"{f.doc}; view: {f.view}; task: {f.task}.", ""]
        for n in names:
            e = MODELS.get(n)
            doc = (e.doc or "").split("\n")[0]
            parts += [f"#### `{n}`", "", doc, "", field_table(e.config, model_defaults(n), skip=("name",)), ""]
    return "\n".join(parts).rstrip() + "\n"
