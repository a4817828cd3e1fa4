"""llama.cpp backend (``llama-cpp-python``, extra ``[llamacpp]``): runs the bundled GGUF as it is shipped (no
dequantization step, quantized weights) or any other GGUF file.

Prompts are decoded one after another: llama-cpp-python's high-level API holds one sequence per ``Llama``
object (its ``n_seq_max`` / batched decoding is not exposed through ``create_chat_completion``), so "batched"
here means a loop over a single resident model; ``eval/bench_llamacpp.py`` measures it against the
transformers backend (single stream and a batch of 16)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from llmrec.config import StrictConfig
from llmrec.errors import ConfigError
from llmrec.llm.base import Generation, GenerationParams, Prompt, to_messages
from llmrec.llm.bundled import smollm2_gguf_path, smollm2_model_id
from llmrec.llm.options import backend_config
from llmrec.threads import resolve_threads


class LlamaCppConfig(StrictConfig):
    """Settings of the llama.cpp backend: the GGUF file, context, threads, batch and seed."""
    model: str | None = None  # a .gguf path; None: the bundled SmolLM2-135M-Instruct GGUF
    n_ctx: int = 2048
    n_threads: int | None = None  # None: llmrec.threads (LLMREC_THREADS or the cores available)
    n_batch: int = 512
    seed: int = 0


class LlamaCppLLM:
    """The ``LLM`` protocol over llama-cpp-python (quantized GGUF, no dequantization)."""
    def __init__(self, config: LlamaCppConfig | None = None) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as e:  # pragma: no cover - depends on the extra
            raise ImportError("the 'llamacpp' backend needs the optional extra: pip install 'llmrec[llamacpp]'") from e
        self.config = config or LlamaCppConfig()
        path = Path(self.config.model) if self.config.model else smollm2_gguf_path()
        if not path.is_file():
            raise ConfigError(f"llm.model: {path} is not a GGUF file")
        self._model_id = f"llamacpp:{smollm2_model_id()}" if self.config.model is None else f"llamacpp:{path.name}"
        self.llama = Llama(model_path=str(path), n_ctx=self.config.n_ctx, n_batch=self.config.n_batch,
                           n_threads=self.config.n_threads or resolve_threads(), seed=self.config.seed,
                           logits_all=False, verbose=False)

    @property
    def model_id(self) -> str:
        return self._model_id

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams | None = None) -> list[Generation]:
        params = params or GenerationParams()
        out = []
        for i, p in enumerate(prompts):
            r = self.llama.create_chat_completion(
                messages=to_messages(p, i), max_tokens=params.max_new_tokens, temperature=params.temperature,
                top_p=params.top_p, stop=list(params.stop) or None,
                seed=params.seed if params.seed is not None else self.config.seed)
            choice, usage = r["choices"][0], r.get("usage") or {}
            out.append(Generation(text=choice["message"]["content"] or "",
                                  prompt_tokens=int(usage.get("prompt_tokens", 0)),
                                  completion_tokens=int(usage.get("completion_tokens", 0)),
                                  finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
                                  raw=r))
        return out


def from_config(config) -> LlamaCppLLM:
    """The ``llamacpp`` entry of ``llmrec.llm.registry.LLMS``: ``model`` (a GGUF path) + ``options``."""
    return LlamaCppLLM(backend_config(LlamaCppConfig, config, model=config.model))
