"""The one small LLM protocol every backend implements.

A backend takes a batch of prompts (a plain string is one user message; a list of
``{"role", "content"}`` dicts is a chat) plus one ``GenerationParams`` and returns one
``Generation`` per prompt, in order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence, Union, runtime_checkable

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
