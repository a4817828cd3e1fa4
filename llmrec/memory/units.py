"""LLM-made memory units: a summary and a keyword list per session (the MemGAS "summary" and "keywords"
granularities), generated with whatever ``LLM`` is configured.

Wrap the LLM in ``llmrec.llm.cache.CachedLLM`` to reuse generations across stores and runs; inside one
store, ``Memory.consolidate`` also skips every session whose text has not changed since its units were made
(the units carry the hash of the session text they summarize)."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.llm.base import LLM, GenerationParams
from llmrec.prompts import load_prompt


class DigestConfig(StrictConfig):
    """Settings of LLM session digests: tokens, batch size, text clipping."""
    summary_prompt: str = "memory_summary"
    keywords_prompt: str = "memory_keywords"
    summary_tokens: int = Field(default=120, ge=8)
    keywords_tokens: int = Field(default=60, ge=4)
    max_session_chars: int = Field(default=6000, ge=200)  # longer sessions keep their head and tail
    max_keywords: int = Field(default=24, ge=1)
    batch_size: int = Field(default=8, ge=1)


@dataclass
class SessionDigest:
    """An LLM-made summary and keywords of one session."""
    summary: str  # "" when the LLM gave nothing usable
    keywords: list[str]


def text_hash(text: str) -> str:
    """A short stable hash of a text (digest units remember the text they were made from)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def clip_middle(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters by dropping its middle."""
    if len(text) <= limit:
        return text
    half = (limit - 5) // 2
    return text[:half] + "\n...\n" + text[-half:]


_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*")


def parse_keywords(text: str, limit: int) -> list[str]:
    """Keywords from a free-form answer: split on lines, semicolons and commas; strip bullets, numbering,
    bold marks, a leading "Keywords:" and header lines; "Topic: explanation" keeps the topic; drop duplicates
    (case-insensitive) and fragments over six words."""
    out, seen = [], set()
    for line in text.splitlines():
        line = _BULLET.sub("", line).replace("**", "").strip()
        line = re.sub(r"^(?:keywords|topics)\s*:\s*", "", line, flags=re.IGNORECASE)
        if line.endswith(":"):  # a header such as "The topics discussed were:"
            continue
        if re.match(r"^[\w\s&'/-]{1,60}:\s", line):  # "Topic: explanation" keeps the topic
            line = line.split(":", 1)[0]
        for part in re.split(r"[;,]", line):
            kw = re.sub(r"^(?:and|or)\s+", "", part.strip().strip(".\"'*` "), flags=re.IGNORECASE)
            if not kw or len(kw.split()) > 6 or kw.lower() in seen:
                continue
            seen.add(kw.lower())
            out.append(kw)
            if len(out) >= limit:
                return out
    return out


def format_date(timestamp: float | None) -> str:
    """A timestamp as a human date for prompts ("8 May 2023"); empty for None."""
    if timestamp is None:
        return "unknown"
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%d %B %Y")


class SessionDigester:
    """Summaries and keywords of sessions, generated in batches (two prompts per session)."""

    def __init__(self, llm: LLM, config: DigestConfig | None = None) -> None:
        self.llm, self.config = llm, config or DigestConfig()
        self._summary = load_prompt(self.config.summary_prompt)
        self._keywords = load_prompt(self.config.keywords_prompt)

    @property
    def model_id(self) -> str:
        return self.llm.model_id

    def digest(self, sessions: Sequence[str], dates: Sequence[str] | None = None) -> list[SessionDigest]:
        """Summary and keywords of each session text, in LLM batches."""
        c = self.config
        dates = list(dates) if dates is not None else ["unknown"] * len(sessions)
        if len(dates) != len(sessions):
            raise ValueError(f"dates: {len(dates)} dates for {len(sessions)} sessions")
        out: list[SessionDigest] = []
        for i in range(0, len(sessions), c.batch_size):
            part = [(clip_middle(s, c.max_session_chars), d) for s, d in zip(sessions[i : i + c.batch_size],
                                                                          dates[i : i + c.batch_size])]
            values = [{"session": s, "date": d} for s, d in part]
            summaries = self.llm.generate([self._summary.messages(v) for v in values],
                                          GenerationParams(max_new_tokens=c.summary_tokens))
            keywords = self.llm.generate([self._keywords.messages(v) for v in values],
                                         GenerationParams(max_new_tokens=c.keywords_tokens))
            for s, k in zip(summaries, keywords):
                out.append(SessionDigest(s.text.strip(), parse_keywords(k.text, c.max_keywords)))
        return out
