"""The one small LLM protocol every backend implements.

A backend takes a batch of prompts (a plain string is one user message; a list of
``{"role", "content"}`` dicts is a chat) plus one ``GenerationParams`` and returns one
``Generation`` per prompt, in order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence, Union, runtime_checkable

import numpy as np
from pydantic import Field, field_validator

from llmrec.config import StrictConfig

Message = Mapping[str, str]
Prompt = Union[str, Sequence[Message]]

_ROLES = {"system", "user", "assistant"}


class GenerationParams(StrictConfig):
    """Decoding settings shared by all backends. Greedy unless ``temperature > 0``."""

    max_new_tokens: int = Field(default=128, ge=1, le=32768)
    temperature: float = Field(default=0.0, ge=0.0, le=5.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=20)  # with logprobs: the k likeliest tokens at every step

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, v: list[str]) -> list[str]:
        if any(s == "" for s in v):
            raise ValueError("stop strings must be non-empty")
        return v


@dataclass
class Generation:
    """One completion: the text, token counts, and per-token log-probabilities when asked for."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (eos or stop string) or "length"
    tokens: list[str] | None = None
    token_logprobs: list[float] | None = None
    top_logprobs: list[list[tuple[str, float]]] | None = None  # per step: the k likeliest (token text, logprob)
    raw: dict = field(default_factory=dict)


@runtime_checkable
class LLM(Protocol):
    """Batched text generation. ``model_id`` names the exact weights, for caches and shards."""

    @property
    def model_id(self) -> str:
        """The exact weights (name and version), for caches and shards."""

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams | None = None) -> list[Generation]:
        """One ``Generation`` per prompt, in order (batched where the backend can)."""


def to_messages(prompt: Prompt, index: int = 0) -> list[dict[str, str]]:
    """Normalise one prompt to chat messages, validating roles and contents (errors name the field)."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError(f"prompts[{index}]: empty prompt text")
        return [{"role": "user", "content": prompt}]
    msgs: list[dict[str, str]] = []
    for j, m in enumerate(prompt):
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise ValueError(f"prompts[{index}][{j}]: a message needs 'role' and 'content'")
        if m["role"] not in _ROLES:
            raise ValueError(f"prompts[{index}][{j}].role: {m['role']!r} is not one of {sorted(_ROLES)}")
        if not isinstance(m["content"], str):
            raise ValueError(f"prompts[{index}][{j}].content: must be a string")
        msgs.append({"role": str(m["role"]), "content": m["content"]})
    if not msgs:
        raise ValueError(f"prompts[{index}]: empty message list")
    return msgs


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string; returns (text, whether a stop string was found)."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut], cut < len(text)


def generate_with_progress(llm: LLM, prompts: Sequence[Prompt], params: GenerationParams | None, desc: str,
                           progress: bool = True, chunk: int = 16) -> list[Generation]:
    """``llm.generate`` over ``prompts`` in chunks of ``chunk`` (each chunk still one batched call) with a
    progress bar on stderr, so a long LLM step is never silent."""
    from tqdm.auto import tqdm

    if not progress or len(prompts) <= chunk:
        return llm.generate(prompts, params)
    out: list[Generation] = []
    with tqdm(total=len(prompts), desc=desc, unit="prompt") as bar:
        for i in range(0, len(prompts), chunk):
            out.extend(llm.generate(prompts[i:i + chunk], params))
            bar.update(min(chunk, len(prompts) - i))
    return out


_WARNED: set[str] = set()


def warn_if_weak(llm: LLM, task: str) -> bool:
    """One warning line (once per task and process) when ``task`` (judging, filtering) runs on the bundled
    135M model, which measurably cannot do it (judge Spearman ~0.0-0.1 vs MT-RAG humans; MemGAS filtering
    keeps 11% of gold-answer tokens): point it at a stronger backend. Returns whether it warned."""
    import warnings

    model = str(getattr(llm, "model_id", ""))
    if "smollm2-135m" not in model.lower() or task in _WARNED:
        return False
    _WARNED.add(task)
    warnings.warn(f"{task} with the bundled {model.split('@')[0]} is close to chance on this project's "
                  f"measurements; use a stronger model (--backend openai --base-url ... / --model ...)",
                  UserWarning, stacklevel=3)
    return True


def option_instruction(prompt: Prompt, options: Sequence[str], index: int = 0) -> list[dict[str, str]]:
    """``prompt`` as chat messages whose last user message ends by naming the options to reply with."""
    msgs = to_messages(prompt, index)
    names = ", ".join(o.strip() for o in options)
    last = max(i for i, m in enumerate(msgs) if m["role"] == "user") if any(m["role"] == "user" for m in msgs) else -1
    if last < 0:
        return [*msgs, {"role": "user", "content": f"Reply with only one of: {names}."}]
    msgs[last] = {**msgs[last], "content": f"{msgs[last]['content']}\n\nReply with only one of: {names}."}
    return msgs


def score_by_top_logprobs(llm: LLM, prompts: Sequence[Prompt], options: Sequence[str], prefix: str = "",
                          top_k: int = 20) -> np.ndarray:
    """Option log-probabilities for backends that report only the k likeliest next tokens (chat endpoints:
    OpenAI, vLLM, llama.cpp, ``llmrec serve``). The options are named at the end of the prompt
    (``option_instruction``), one token is generated with ``top_logprobs=top_k``, and each option gets the
    log-probability of the reported token that matches it: the same text (whitespace stripped), else the same
    text case-folded, else the longest reported text that begins it (its first token). An option with no match gets the lowest
    reported log-probability minus ln 2 (below every reported token; its true value is unknown).
    ``prefix`` is not used: a chat endpoint cannot continue a half-written reply. Options that share a
    first token cannot be told apart this way: use single-token options, or a backend with
    ``score_options`` over full sequences (transformers)."""
    import math

    if not options:
        raise ValueError("options: at least one option is needed")
    names = [o.strip() for o in options]
    for j, o in enumerate(names):
        if not o:
            raise ValueError(f"options[{j}]: empty")
    msgs = [option_instruction(p, options, i) for i, p in enumerate(prompts)]
    gens = llm.generate(msgs, GenerationParams(max_new_tokens=1, logprobs=True, top_logprobs=top_k))
    out = np.zeros((len(prompts), len(options)))
    for i, g in enumerate(gens):
        if not g.top_logprobs:
            raise ValueError(f"{llm.model_id}: the backend returned no top_logprobs for prompts[{i}]")
        top = [(t.strip(), lp) for t, lp in g.top_logprobs[0] if t.strip()]
        floor = min(lp for _, lp in g.top_logprobs[0]) - math.log(2)
        for j, o in enumerate(names):
            for match in (lambda t: t == o, lambda t: t.casefold() == o.casefold()):
                found = [lp for t, lp in top if match(t)]
                if found:
                    out[i, j] = max(found)
                    break
            else:
                starts = [(len(t), lp) for t, lp in top if o.casefold().startswith(t.casefold())]
                out[i, j] = max(starts)[1] if starts else floor
    return out
