"""LLM backends by name (as mem0's ``LlmFactory``): a typed ``LLMConfig`` names a backend and ``make_llm`` builds
it from the registry, so every CLI command and capability picks its LLM the same way (``--backend openai
--model ...``). A backend is one module with a ``from_config(LLMConfig) -> LLM`` registered in ``LLMS``
(lazily: its heavy imports happen only when it is used). Options only one backend has go in ``options``
(validated by that backend's own config, e.g. ``{num_threads: 2}`` for transformers,
``{tensor_parallel_size: 2}`` for vllm, ``{concurrency: 16}`` for openai)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from pydantic import field_validator

from llmrec.config import StrictConfig
from llmrec.llm.base import LLM
from llmrec.llm.bundled import smollm2_model_id
from llmrec.registry import Registry

LLMS: Registry[Callable[[Any], LLM]] = Registry("llm backend")
LLMS.add_lazy("transformers", "llmrec.llm.transformers:from_config")
LLMS.add_lazy("vllm", "llmrec.llm.vllm:from_config")
LLMS.add_lazy("openai", "llmrec.llm.openai:from_config")
LLMS.add_lazy("llamacpp", "llmrec.llm.llamacpp:from_config")


class LLMConfig(StrictConfig):
    """Which LLM backend to build and its common settings; backend-only settings go in ``options``."""
    backend: str = "transformers"  # a name in LLMS: transformers | vllm | openai | llamacpp
    model: str | None = None  # None: bundled SmolLM2-135M-Instruct (transformers backend)
    gguf_file: str | None = None
    batch_size: int = 16
    dtype: str = "float32"  # float32 | bfloat16
    device: str = "cpu"
    base_url: str | None = None  # openai backend, e.g. http://127.0.0.1:8000/v1
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 3
    options: dict[str, Any] = {}  # backend-specific settings, validated by the backend's own config

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        if v not in LLMS:
            raise ValueError(f"unknown backend {v!r} (have {LLMS.names()})")
        return v

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, v: str) -> str:
        if v not in ("float32", "bfloat16"):
            raise ValueError(f"{v!r} is not float32 or bfloat16")
        return v


def model_id_for(config: LLMConfig) -> str:
    """The ``model_id`` the backend built from ``config`` will report, without loading it (used to check
    shards before a distributed job starts its workers)."""
    if config.backend == "transformers":
        if config.model is None:
            return smollm2_model_id()
        return Path(config.model).name + (f"/{config.gguf_file}" if config.gguf_file else "")
    if config.backend == "openai":
        return f"openai:{config.model}"
    if config.backend == "llamacpp":
        return f"llamacpp:{smollm2_model_id()}" if config.model is None else f"llamacpp:{Path(config.model).name}"
    return str(config.model)


def make_llm(config: LLMConfig | None = None) -> LLM:
    """The LLM a config names (default: the bundled SmolLM2-135M-Instruct on the transformers backend)."""
    config = config or LLMConfig()
    return LLMS.get(config.backend)(config)
