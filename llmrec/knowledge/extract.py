"""Offline knowledge extraction: prompts x LLM -> JSONL shards, resumable and cached.

Each output row is ``{"id", "kind", "prompt_hash", "model_id", "text", "completion_tokens"}``.
Rows are appended (and fsynced) one chunk at a time, so a killed job loses at most the chunk in
flight; a re-run skips every (id, prompt_hash, model_id) already in the shard, so re-running with
nothing changed generates nothing. A shard written by another model is refused, not mixed."""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from tqdm.auto import tqdm

from llmrec.llm.base import LLM, GenerationParams
from llmrec.prompts import load_prompt


@dataclass(frozen=True)
class KnowledgeRequest:
    id: str
    variables: Mapping[str, object]


@dataclass
class ExtractionReport:
    kind: str
    shard: str
    total: int
    cached: int
    generated: int
    empty: int
    seconds: float
    completion_tokens: int

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds else 0.0


def prompt_hash(messages: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]


def read_shard(path: Path) -> dict[str, dict]:
    """Rows by id; a torn last line (from a kill mid-write) is ignored."""
    rows: dict[str, dict] = {}
    if not path.exists():
        return rows
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows[row["id"]] = row
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
) -> ExtractionReport:
    params = params or GenerationParams(max_new_tokens=64)
    template = load_prompt(prompt_name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shard = out_dir / f"{kind}.jsonl"
    seen: set[str] = set()
    todo: list[tuple[str, list[dict[str, str]], str]] = []
    for n, r in enumerate(requests):
        if not r.id:
            raise ValueError(f"requests[{n}].id: missing id")
        if r.id in seen:
            raise ValueError(f"requests[{n}].id: duplicate id {r.id!r}")
        seen.add(r.id)
        try:
            msgs = template.messages(r.variables)
        except KeyError as e:
            raise KeyError(f"requests[{n}] (id {r.id!r}): {e.args[0]}") from None
        todo.append((r.id, msgs, prompt_hash(msgs)))
    existing = read_shard(shard)
    other = {row["model_id"] for row in existing.values()} - {llm.model_id}
    if other:
        raise ValueError(f"{shard}: written by model {sorted(other)}, not {llm.model_id!r}; use another out_dir")
    pending = [t for t in todo if not (t[0] in existing and existing[t[0]]["prompt_hash"] == t[2]
                                      and existing[t[0]]["text"].strip())]
    cached = len(todo) - len(pending)
    t0, tokens, empty = time.perf_counter(), 0, 0
    bar = tqdm(total=len(pending), desc=f"extract {kind}", unit="row", disable=not progress)
    with open(shard, "a", encoding="utf-8") as f:
        for i in range(0, len(pending), chunk_size):
            chunk = pending[i : i + chunk_size]
            gens = llm.generate([m for _, m, _ in chunk], params)
            lines = []
            for (rid, _, h), g in zip(chunk, gens):
                tokens += g.completion_tokens
                if not g.text.strip():
                    empty += 1
                lines.append(json.dumps({"id": rid, "kind": kind, "prompt_hash": h, "model_id": llm.model_id,
                                         "text": g.text.strip(), "completion_tokens": g.completion_tokens}))
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())
            bar.update(len(chunk))
            el = time.perf_counter() - t0
            bar.set_postfix(tok_s=f"{tokens / el:.0f}" if el else "-")
    bar.close()
    return ExtractionReport(kind, str(shard), len(todo), cached, len(pending), empty,
                            time.perf_counter() - t0, tokens)


def load_knowledge(out_dir: str | Path, kind: str) -> dict[str, str]:
    return {rid: row["text"] for rid, row in read_shard(Path(out_dir) / f"{kind}.jsonl").items()}
