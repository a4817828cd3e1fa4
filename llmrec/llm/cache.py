"""A generation cache that wraps any ``LLM``: repeated (model, prompt, decoding settings) are answered
from SQLite instead of the model.

    llm = CachedLLM(make_llm(), llmrec_home() / "generations.sqlite")

Only deterministic requests are cached (greedy decoding, or sampling with a fixed seed); the key is
sha256 of the model id, the normalized chat messages and every decoding setting, so a changed prompt
template or setting never returns a stale answer. Writes are one transaction per batch (WAL), so a
killed job keeps every batch it finished and the file always opens."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

from llmrec.llm.base import LLM, Generation, GenerationParams, Prompt, to_messages
from llmrec.sqlite import SQLiteKV


class CachedLLM:
    """``LLM`` that consults a SQLite cache before the wrapped backend. ``hits`` / ``misses`` count prompts."""

    def __init__(self, llm: LLM, path: str | Path) -> None:
        self.llm = llm
        self.kv = SQLiteKV(path, "generations")
        self.hits = 0
        self.misses = 0

    @property
    def model_id(self) -> str:
        return self.llm.model_id

    def key(self, prompt: Prompt, params: GenerationParams, index: int = 0) -> str:
        """The cache key of a prompt under a model and generation settings."""
        payload = {"model": self.model_id, "messages": to_messages(prompt, index),
                   "params": params.model_dump(mode="json")}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams | None = None) -> list[Generation]:
        params = params or GenerationParams()
        if params.temperature > 0 and params.seed is None:  # not reproducible: never cached
            self.misses += len(prompts)
            return self.llm.generate(prompts, params)
        keys = [self.key(p, params, i) for i, p in enumerate(prompts)]
        found = {k: Generation(**json.loads(v)) for k, v in self.kv.get_many(self.model_id, keys).items()}
        todo = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(prompts) - len(todo)
        self.misses += len(todo)
        if todo:
            gens = self.llm.generate([prompts[i] for i in todo], params)
            rows = []
            for i, g in zip(todo, gens):
                found[keys[i]] = g
                value = {"text": g.text, "prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
                         "finish_reason": g.finish_reason, "tokens": g.tokens, "token_logprobs": g.token_logprobs}
                rows.append((keys[i], json.dumps(value).encode("utf-8")))
            self.kv.put_many(self.model_id, rows)
        return [found[k] for k in keys]
