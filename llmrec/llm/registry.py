"""One place that turns a typed ``LLMConfig`` into a backend, so every CLI command and
capability picks its LLM the same way (``--backend openai --model ...``)."""
from __future__ import annotations

from typing import Literal

from llmrec.config import StrictConfig
from llmrec.llm.base import LLM


class LLMConfig(StrictConfig):
    backend: Literal["transformers", "vllm", "openai"] = "transformers"
    model: str | None = None  # None: bundled SmolLM2-135M-Instruct (transformers backend)
    gguf_file: str | None = None
    batch_size: int = 16
    dtype: Literal["float32", "bfloat16"] = "float32"
    device: str = "cpu"
    base_url: str | None = None  # openai backend, e.g. http://127.0.0.1:8000/v1
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 3


def model_id_for(config: LLMConfig) -> str:
    """The ``model_id`` the backend built from ``config`` will report, without loading it (used to check
    shards before a distributed job starts its workers)."""
    if config.backend == "transformers":
        if config.model is None:
            from llmrec.llm.bundled import smollm2_model_id

            return smollm2_model_id()
        from pathlib import Path

        return Path(config.model).name + (f"/{config.gguf_file}" if config.gguf_file else "")
    if config.backend == "openai":
        return f"openai:{config.model}"
    return str(config.model)


def make_llm(config: LLMConfig | None = None) -> LLM:
    config = config or LLMConfig()
    if config.backend == "transformers":
        from llmrec.llm.transformers import TransformersConfig, TransformersLLM

        return TransformersLLM(
            TransformersConfig(
                model=config.model, gguf_file=config.gguf_file, batch_size=config.batch_size,
                dtype=config.dtype, device=config.device,
            )
        )
    if config.backend == "vllm":
        from llmrec.llm.vllm import VLLMConfig, VLLMEngine

        if not config.model:
            raise ValueError("model: the vllm backend needs a model path or HF id")
        return VLLMEngine(VLLMConfig(model=config.model, dtype="auto" if config.dtype == "float32" else config.dtype))
    if config.backend == "openai":
        from llmrec.llm.openai import OpenAIChatLLM, OpenAIConfig

        if not config.base_url or not config.model:
            raise ValueError("base_url and model: the openai backend needs both")
        return OpenAIChatLLM(
            OpenAIConfig(
                base_url=config.base_url, model=config.model, api_key_env=config.api_key_env,
                timeout_s=config.timeout_s, max_retries=config.max_retries,
            )
        )
    raise ValueError(f"backend: unknown backend {config.backend!r}")
