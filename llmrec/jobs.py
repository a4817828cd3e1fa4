"""The resumable shard runner shared by knowledge extraction and RADIO's rationales: prompts x LLM -> JSONL
shards, resumable and cached.

Each output row is ``{"id", "kind", "prompt_hash", "model_id", "text", "status", "attempts",
"completion_tokens"}``; ``status`` is ``ok`` or ``failed`` (every attempt empty or malformed).
Rows are appended (and fsynced) one chunk at a time, so a killed job loses at most the chunk in
flight; a re-run skips every (id, prompt_hash, model_id) already in the shard, so re-running with
nothing changed generates nothing. A shard written by another model is refused, not mixed."""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from tqdm.auto import tqdm

from llmrec.llm.base import LLM, GenerationParams
from llmrec.prompts import load_prompt
from llmrec.errors import DataError, NotFoundError


@dataclass(frozen=True)
class KnowledgeRequest:
    """One extraction prompt: the row id and the variables its template is filled with."""
    id: str
    variables: Mapping[str, object]


@dataclass
class ExtractionReport:
    """Counts and speed of one extraction run (cached, generated, retried, failed rows; tokens/s)."""
    kind: str
    shard: str
    total: int
    cached: int
    generated: int
    empty: int  # rows whose every attempt was empty or malformed (recorded with status "failed")
    seconds: float
    completion_tokens: int
    retried: int = 0  # rows that needed more than one attempt
    failed_ids: list[str] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of the generation time."""
        return self.completion_tokens / self.seconds if self.seconds else 0.0

    @property
    def rows_per_second(self) -> float:
        """Generated rows per second of the generation time."""
        return self.generated / self.seconds if self.seconds else 0.0


def prompt_hash(messages: list[dict[str, str]]) -> str:
    """A short stable hash of a rendered prompt (a shard row is reused only when its prompt is unchanged)."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]


def read_shard(path: Path) -> dict[str, dict]:
    """Rows by id (the last row of an id wins). A torn last line (a kill mid-write: no newline after it) is
    ignored, and cut off by the next append; any other unreadable line is a ``DataError`` naming file:line."""
    rows: dict[str, dict] = {}
    if not path.exists():
        return rows
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.endswith("\n"):  # the torn tail
                break
            try:
                row = json.loads(line)
                rows[row["id"]] = row
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataError(f"{path}:{n}: unreadable shard row ({e}); delete the line to regenerate it") from None
    return rows


def repair_tail(path: Path) -> int:
    """Cut a torn last line (no newline after it) so appends start on a line of their own; bytes removed."""
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        keep, pos = 0, size
        while pos > 0:  # the last newline, read backwards in blocks
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            block = f.read(step)
            i = block.rfind(b"\n")
            if i >= 0:
                keep = pos + i + 1
                break
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
        return size - keep


def malformed(text: str, min_words: int) -> str | None:
    """Why a generation is unusable, or None. Empty, too short, or one token repeated over and over."""
    words = text.split()
    if not words:
        return "empty"
    if len(words) < min_words:
        return f"fewer than {min_words} words"
    if len(words) >= 8 and len(set(words)) <= max(2, len(words) // 8):
        return "degenerate repetition"
    return None


@dataclass
class ExtractionPlan:
    """Validated requests rendered to messages, split into cached and pending rows."""
    kind: str
    shard: Path
    total: int
    pending: list[tuple[str, list[dict[str, str]], str]]  # (id, messages, prompt hash)

    @property
    def cached(self) -> int:
        """Rows already in the shards with the same prompt and model."""
        return self.total - len(self.pending)


def plan_extraction(model_id: str, kind: str, prompt_name: str, requests: Sequence[KnowledgeRequest],
                    out_dir: str | Path, retry_failed: bool = False) -> ExtractionPlan:
    """What an extraction run must do: which requests are cached in the shards and which must be generated."""
    template = load_prompt(prompt_name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shard = out_dir / f"{kind}.jsonl"
    seen: set[str] = set()
    todo: list[tuple[str, list[dict[str, str]], str]] = []
    for n, r in enumerate(requests):
        if not isinstance(r.id, str) or not r.id:
            raise ValueError(f"requests[{n}].id: missing id")
        if r.id in seen:
            raise ValueError(f"requests[{n}].id: duplicate id {r.id!r}")
        seen.add(r.id)
        try:
            msgs = template.messages(r.variables)
        except KeyError as e:
            raise NotFoundError(f"requests[{n}] (id {r.id!r}): {e.args[0]}") from None
        todo.append((r.id, msgs, prompt_hash(msgs)))
    existing = read_shard(shard)
    other = {row.get("model_id") for row in existing.values()} - {model_id}
    if other:
        raise ValueError(f"{shard}: written by model {sorted(map(str, other))}, not {model_id!r}; "
                         "use another out_dir (shards never mix models)")

    def done(rid: str, h: str) -> bool:
        row = existing.get(rid)
        if row is None or row["prompt_hash"] != h:
            return False
        return row.get("status", "ok") == "ok" or not retry_failed

    return ExtractionPlan(kind, shard, len(todo), [t for t in todo if not done(t[0], t[2])])


class ShardWriter:
    """Appends finished rows one chunk at a time (flush + fsync), with a progress bar in rows/s and tokens/s."""

    def __init__(self, plan: ExtractionPlan, model_id: str, progress: bool) -> None:
        self.plan, self.model_id = plan, model_id
        self.t0 = time.perf_counter()
        self.tokens = self.retried = 0
        self.failed: list[str] = []
        self.bar = tqdm(total=len(plan.pending), desc=f"extract {plan.kind}", unit="row", disable=not progress)
        repair_tail(plan.shard)  # a kill mid-line must not glue the next row onto the torn one
        self.f = open(plan.shard, "a", encoding="utf-8")

    def write(self, rows: list[dict]) -> None:
        """Append rows to the shard and fsync (a row is acknowledged once it is on disk)."""
        lines = []
        for r in rows:
            self.tokens += r["completion_tokens"]
            self.retried += r["attempts"] > 1
            if r["status"] != "ok":
                self.failed.append(r["id"])
            lines.append(json.dumps({"id": r["id"], "kind": self.plan.kind, "prompt_hash": r["prompt_hash"],
                                     "model_id": self.model_id, "text": r["text"], "status": r["status"],
                                     "attempts": r["attempts"], "completion_tokens": r["completion_tokens"]}))
        self.f.write("\n".join(lines) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())
        self.bar.update(len(rows))
        el = time.perf_counter() - self.t0
        self.bar.set_postfix(tok_s=f"{self.tokens / el:.0f}" if el else "-")

    def close(self) -> ExtractionReport:
        """Close the shard and return the run's report."""
        self.f.close()
        self.bar.close()
        p = self.plan
        return ExtractionReport(p.kind, str(p.shard), p.total, p.cached, len(p.pending), len(self.failed),
                                time.perf_counter() - self.t0, self.tokens, self.retried, self.failed)


def generate_rows(llm: LLM, chunk: Sequence[tuple[str, list[dict[str, str]], str]], params: GenerationParams,
                  max_retries: int = 2, min_words: int = 3) -> list[dict]:
    """Generate one chunk; empty or malformed outputs are retried (sampled, new seed) up to ``max_retries``
    times, then recorded with status ``failed``."""
    rows = [{"id": rid, "prompt_hash": h, "text": "", "status": "failed", "attempts": 0, "completion_tokens": 0,
             "problem": None} for rid, _, h in chunk]
    todo = list(range(len(chunk)))
    for attempt in range(max_retries + 1):
        if not todo:
            break
        p = params if attempt == 0 else params.model_copy(update={
            "temperature": max(params.temperature, 0.7), "seed": (params.seed or 0) + 1000 * attempt})
        gens = llm.generate([chunk[i][1] for i in todo], p)
        left = []
        for i, g in zip(todo, gens):
            r = rows[i]
            r["attempts"] += 1
            r["completion_tokens"] += g.completion_tokens
            text = g.text.strip()
            problem = malformed(text, min_words)
            if problem is None:
                r.update(text=text, status="ok", problem=None)
            else:
                r.update(text=text, problem=problem)
                left.append(i)
        todo = left
    return rows


def extract(
    llm: LLM,
    kind: str,
    prompt_name: str,
    requests: Sequence[KnowledgeRequest],
    out_dir: str | Path,
    params: GenerationParams | None = None,
    chunk_size: int = 64,
    progress: bool = True,
    max_retries: int = 2,
    min_words: int = 3,
    retry_failed: bool = False,
) -> ExtractionReport:
    """Generate knowledge for every request not already in ``out_dir/<kind>.jsonl`` (same prompt, same model)."""
    params = params or GenerationParams(max_new_tokens=64)
    plan = plan_extraction(llm.model_id, kind, prompt_name, requests, out_dir, retry_failed)
    writer = ShardWriter(plan, llm.model_id, progress)
    try:
        for i in range(0, len(plan.pending), chunk_size):
            writer.write(generate_rows(llm, plan.pending[i : i + chunk_size], params, max_retries, min_words))
    finally:
        report = writer.close()
    return report


def load_knowledge(out_dir: str | Path, kind: str) -> dict[str, str]:
    """Text by id; rows whose generation failed map to an empty string (encoders substitute a fallback)."""
    return {rid: row["text"] if row.get("status", "ok") == "ok" else ""
            for rid, row in read_shard(Path(out_dir) / f"{kind}.jsonl").items()}
