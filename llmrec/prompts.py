"""Prompt templates as files in ``prompts/`` (shipped in the wheel as ``llmrec/_prompts``), loaded by name.

A template is plain text with ``{name}`` placeholders (``{{`` and ``}}`` for literal braces). An optional
first block ``system: ...`` followed by a line ``---`` becomes the system message."""
from __future__ import annotations
from llmrec.errors import NotFoundError

import re
import unicodedata
import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping

_SEP = "\n---\n"


_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")  # zero-width, bidi
_CLOSING_TAG = re.compile(r"<\s*/\s*([^\s<>/]*)[^<>]*>")


def defang(text: str) -> str:
    """Neutralise closing tags inside untrusted text, so it cannot end the fence it is placed in. Tags are
    normalised first: compatibility forms (full-width < / >) folded (NFKC), zero-width and bidi characters
    dropped; then any closing tag, whatever its case, spacing, suffix or attributes (``< /passage>``,
    ``</passage-x>``, ``</ Passage foo>``), becomes ``[/name]``."""
    t = _INVISIBLE.sub("", unicodedata.normalize("NFKC", str(text)))
    return _CLOSING_TAG.sub(lambda m: "[/" + re.sub(r"[^\w-]", "", m.group(1)) + "]", t)


def fence(text: str, tag: str) -> str:
    """Wrap untrusted text in <tag>..</tag> (prompt safety for retrieved or user-supplied text)."""
    return f"<{tag}>\n{defang(text)}\n</{tag}>"


def prompt_dirs() -> list[Path]:
    """Folders prompt templates are loaded from (wheel ``_prompts`` or the checkout's ``prompts/``)."""
    here = Path(__file__).resolve().parent
    return [p for p in (here / "_prompts", here.parent / "prompts") if p.is_dir()]


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt template: optional system text and a ``str.format`` user template."""
    name: str
    system: str | None
    template: str

    @property
    def variables(self) -> set[str]:
        """The ``{names}`` the template needs."""
        names = set()
        for part in (self.system or "", self.template):
            names.update(f for _, f, _, _ in string.Formatter().parse(part) if f)
        return names

    def _fill(self, text: str, values: Mapping[str, object]) -> str:
        missing = sorted(v for _, v, _, _ in string.Formatter().parse(text) if v and v not in values)
        if missing:
            raise NotFoundError(f"prompt {self.name!r}: missing variables {missing}")
        return text.format_map({k: str(v) for k, v in values.items()})

    def render(self, values: Mapping[str, object]) -> str:
        """The user text with every placeholder filled; missing variables raise KeyError naming them."""
        return self._fill(self.template, values)

    def messages(self, values: Mapping[str, object]) -> list[dict[str, str]]:
        """Chat messages with the template filled (a missing variable is an error naming it)."""
        msgs = []
        if self.system:
            msgs.append({"role": "system", "content": self._fill(self.system, values)})
        msgs.append({"role": "user", "content": self.render(values)})
        return msgs


def parse_prompt(name: str, text: str) -> PromptTemplate:
    """A template from its file text (an optional ``system:`` head before the separator)."""
    system = None
    if text.startswith("system:") and _SEP in text:
        head, text = text.split(_SEP, 1)
        system = head[len("system:"):].strip()
    return PromptTemplate(name=name, system=system, template=text.strip())


@lru_cache(maxsize=None)
def load_prompt(name: str) -> PromptTemplate:
    """The prompt template ``name`` (``prompts/<name>.txt``), or your own template file when ``name`` is a
    path ending in ``.txt`` (same format: an optional ``system:`` head, then the ``{variable}`` text); a named
    error if absent."""
    if name.endswith(".txt"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"prompt file {name!r}: no such file")
        return parse_prompt(path.stem, path.read_text(encoding="utf-8"))
    for d in prompt_dirs():
        path = d / f"{name}.txt"
        if path.exists():
            return parse_prompt(name, path.read_text(encoding="utf-8"))
    available = sorted({p.stem for d in prompt_dirs() for p in d.glob("*.txt")})
    raise FileNotFoundError(f"prompt {name!r} not found; available: {available}")
