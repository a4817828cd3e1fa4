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
from typing import Protocol, Sequence

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


class Digester(Protocol):
    """What ``Memory.consolidate`` needs: digests of session texts in batches, and a name for provenance."""
    config: "DigestConfig | ExtractiveConfig"  # batch_size: sessions per store write

    @property
    def model_id(self) -> str:
        """What made the digests (an LLM id, or the extractive settings); a change redoes them."""
        ...

    def digest(self, sessions: Sequence[str], dates: Sequence[str] | None = None) -> list["SessionDigest"]:
        """One summary and keyword list per session text."""
        ...


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


class ExtractiveConfig(StrictConfig):
    """Settings of extractive digests: how many key turns make the summary, how much they may repeat each
    other, how many keywords."""
    turns: int = Field(default=3, ge=1)
    diversity: float = Field(default=0.3, ge=0.0, le=1.0)  # MMR: 0 = most central turns, 1 = most varied
    min_words: int = Field(default=4, ge=0)  # shorter turns ("Ok.", "Wow!") are chosen only when nothing else is
    max_keywords: int = Field(default=24, ge=1)
    batch_size: int = Field(default=32, ge=1)  # sessions per store write in Memory.consolidate


_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")


class ExtractiveDigester:
    """The no-LLM digest: the session's key turns, chosen by the embedder (maximal marginal relevance to the
    session's mean turn embedding, kept in conversation order), as its summary, and its most frequent content
    words (scikit-learn's English stop words and the speakers' names left out) as its keywords. A drop-in for
    ``SessionDigester`` in ``Memory(..., digester=...)``: nothing is generated, so nothing is invented."""

    def __init__(self, embedder, config: ExtractiveConfig | None = None) -> None:
        self.embedder, self.config = embedder, config or ExtractiveConfig()

    @property
    def model_id(self) -> str:
        return f"extractive:{self.embedder.model_id}:{self.config.turns}:{self.config.diversity}"

    def key_turns(self, turns: list[str]) -> list[int]:
        """Indices (ascending) of the turns chosen by maximal marginal relevance to the session centroid."""
        import numpy as np

        if len(turns) <= self.config.turns:
            return list(range(len(turns)))
        words = [len((t.split(":", 1)[1] if ":" in t else t).split()) for t in turns]
        eligible = np.array([w >= self.config.min_words for w in words])
        if eligible.sum() < self.config.turns:
            eligible[:] = True
        vecs = np.asarray(self.embedder.encode(turns), dtype=np.float64)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        centre = vecs.mean(0)
        relevance = vecs @ centre
        lam = 1.0 - self.config.diversity
        chosen: list[int] = []
        while len(chosen) < self.config.turns:
            redundancy = (vecs @ vecs[chosen].T).max(1) if chosen else np.zeros(len(turns))
            value = lam * relevance - (1 - lam) * redundancy
            value[chosen] = -np.inf
            value[~eligible] = -np.inf
            chosen.append(int(np.argmax(value)))
        return sorted(chosen)

    def keywords(self, turns: list[str]) -> list[str]:
        """The session's most frequent content words (ties: first seen first), speakers' names excluded."""
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        speakers = {t.split(":", 1)[0].strip().lower() for t in turns if ":" in t}
        counts: dict[str, int] = {}
        shown: dict[str, str] = {}
        for t in turns:
            body = t.split(":", 1)[1] if ":" in t else t
            for w in _WORD.findall(body):
                key = w.lower().strip("'-")
                if len(key) < 3 or key in ENGLISH_STOP_WORDS or key in speakers:
                    continue
                counts[key] = counts.get(key, 0) + 1
                shown.setdefault(key, w.strip("'-"))
        order = sorted(counts, key=lambda w: -counts[w])  # stable: first seen first among equals
        return [shown[w] for w in order[: self.config.max_keywords]]

    def digest(self, sessions: Sequence[str], dates: Sequence[str] | None = None) -> list[SessionDigest]:
        """Key turns and keywords of each session text (turns one per line, as ``Memory.consolidate`` gives)."""
        if dates is not None and len(dates) != len(sessions):
            raise ValueError(f"dates: {len(dates)} dates for {len(sessions)} sessions")
        out = []
        for s in sessions:
            turns = [t for t in s.splitlines() if t.strip()]
            out.append(SessionDigest("\n".join(turns[i] for i in self.key_turns(turns)), self.keywords(turns)))
        return out
