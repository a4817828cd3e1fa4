"""vLLM offline engine backend (GPU). Install with ``pip install 'llmrec[vllm]'``."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from llmrec.config import StrictConfig
from llmrec.errors import ConfigError
from llmrec.llm.base import Generation, GenerationParams, Prompt, score_by_top_logprobs, to_messages
from llmrec.llm.options import backend_config


class VLLMConfig(StrictConfig):
    """Settings of the vLLM engine backend (GPU): model, dtype, memory share, context, tensor parallelism."""
    model: str
    dtype: str = "auto"
    gpu_memory_utilization: float = 0.85
    max_model_len: int | None = None
    tensor_parallel_size: int = 1


class VLLMEngine:
    """The ``LLM`` protocol over vLLM's offline engine."""
    def __init__(self, config: VLLMConfig) -> None:
        try:
            import vllm
        except ImportError as e:  # pragma: no cover - depends on the extra
            raise ImportError(
                "the 'vllm' backend needs the optional extra: pip install 'llmrec[vllm]' (GPU machine)"
            ) from e
        self.config = config
        self._vllm = vllm
        self.engine = vllm.LLM(
            model=config.model, dtype=config.dtype, gpu_memory_utilization=config.gpu_memory_utilization,
            max_model_len=config.max_model_len, tensor_parallel_size=config.tensor_parallel_size,
        )

    @property
    def model_id(self) -> str:
        return self.config.model

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams | None = None) -> list[Generation]:
        params = params or GenerationParams()
        sp = self._vllm.SamplingParams(
            max_tokens=params.max_new_tokens, temperature=params.temperature, top_p=params.top_p,
            stop=params.stop or None, seed=params.seed,
            logprobs=(params.top_logprobs if params.logprobs else None),  # vLLM: the sampled token + the k likeliest
        )
        convs = [to_messages(p, i) for i, p in enumerate(prompts)]
        outs = self.engine.chat(convs, sp, use_tqdm=False)
        gens = []
        for o in outs:
            c = o.outputs[0]
            g = Generation(
                text=c.text, prompt_tokens=len(o.prompt_token_ids or []), completion_tokens=len(c.token_ids),
                finish_reason="length" if c.finish_reason == "length" else "stop",
            )
            if params.logprobs and c.logprobs:
                g.tokens = [d[t].decoded_token for d, t in zip(c.logprobs, c.token_ids)]
                g.token_logprobs = [float(d[t].logprob) for d, t in zip(c.logprobs, c.token_ids)]
                if params.top_logprobs:
                    g.top_logprobs = [[(v.decoded_token, float(v.logprob)) for v in
                                       sorted(d.values(), key=lambda v: v.rank)][: params.top_logprobs]
                                      for d in c.logprobs]
            gens.append(g)
        return gens


    option_scoring = "first_token"  # score_options reads the first reply token's top-k log-probabilities

    def score_options(self, prompts: Sequence[Prompt], options: Sequence[str], prefix: str = "",
                      batch_size: int | None = None) -> np.ndarray:
        """Option log-probabilities from vLLM's top-k log-probabilities (``score_by_top_logprobs``)."""
        return score_by_top_logprobs(self, prompts, options, prefix)


def from_config(config) -> VLLMEngine:
    """The ``vllm`` entry of ``llmrec.llm.registry.LLMS``: common fields + ``options`` (gpu_memory_utilization,
    max_model_len, tensor_parallel_size)."""
    if not config.model:
        raise ConfigError("llm.model: the vllm backend needs a model path or HF id")
    return VLLMEngine(backend_config(VLLMConfig, config, model=config.model,
                                     dtype="auto" if config.dtype == "float32" else config.dtype))
