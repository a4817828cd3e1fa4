"""Hugging Face transformers backend: any causal LM, default the bundled SmolLM2-135M-Instruct.

Batching is real: prompts are rendered with the chat template, sorted by length into micro-batches
(so little compute goes to padding), left-padded, and decoded greedily unless a temperature is set.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from llmrec.config import StrictConfig
from llmrec.llm.base import Generation, GenerationParams, Prompt, to_messages, truncate_at_stop
from llmrec.llm.decode import ContinuousDecoder, DecodeSession, DecodeSettings, RowState
from llmrec.llm.bundled import ensure_smollm2_converted, smollm2_model_id
from llmrec.llm.options import backend_config


class TransformersConfig(StrictConfig):
    """Settings of the transformers backend: model path or GGUF, dtype, device, batch size, input limit, threads."""
    model: str | None = None  # HF model path or local dir; None = the bundled SmolLM2-135M-Instruct
    gguf_file: str | None = None  # load a GGUF file inside `model` (dequantized by transformers)
    batch_size: int = 16
    dtype: Literal["float32", "bfloat16"] = "float32"
    device: str = "cpu"
    num_threads: int | None = None
    max_input_tokens: int = 4096


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class TransformersLLM:
    """``LLM`` over ``transformers.AutoModelForCausalLM``."""

    option_scoring = "sequence"  # score_options: the exact log-probability of every option's whole sequence

    def __init__(self, config: TransformersConfig | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.config = config = config or TransformersConfig()
        if config.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        if config.model is None:
            converted = ensure_smollm2_converted()
            path, self._model_id = str(converted), smollm2_model_id(converted)
            load_kw: dict = {}
        else:
            path = config.model
            self._model_id = Path(config.model).name + (f"/{config.gguf_file}" if config.gguf_file else "")
            load_kw = {"gguf_file": config.gguf_file} if config.gguf_file else {}
        self.tokenizer = AutoTokenizer.from_pretrained(path, **load_kw)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=_DTYPES[config.dtype], **load_kw)
        self.model.to(config.device).eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._eos_ids = self._eos_token_ids()
        self._decoder = ContinuousDecoder(self.model, self.tokenizer.pad_token_id, self._eos_ids)

    @property
    def model_id(self) -> str:
        return self._model_id

    def _eos_token_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        if isinstance(gen_eos, int):
            ids.add(gen_eos)
        elif gen_eos:
            ids.update(gen_eos)
        return {i for i in ids if i is not None}

    def render(self, prompt: Prompt, index: int = 0) -> str:
        """The exact text the model sees for one prompt (chat template applied when the model has one)."""
        msgs = to_messages(prompt, index)
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return "\n".join(m["content"] for m in msgs)

    def encode_prompts(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        """Token ids of each prompt (chat template applied); a prompt over the input limit is an error naming it."""
        ids = []
        for i, p in enumerate(prompts):
            toks = self.tokenizer(self.render(p, i), add_special_tokens=False)["input_ids"]
            if len(toks) > self.config.max_input_tokens:
                raise ValueError(
                    f"prompts[{i}]: {len(toks)} tokens exceed max_input_tokens={self.config.max_input_tokens}"
                )
            ids.append(toks)
        return ids

    @torch.inference_mode()
    def score_options(self, prompts: Sequence[Prompt], options: Sequence[str], prefix: str = "",
                      batch_size: int | None = None) -> np.ndarray:
        """Log-probability of each option as the assistant's reply to each prompt, after ``prefix``
        ([n_prompts, n_options], summed over the option's tokens): the likelihood-scoring primitive (G-Eval
        judges, option-scored knowledge). Single-token options cost one forward pass per prompt (batched);
        longer ones one pass per (prompt, option), only the last positions' logits are normalized."""
        tok, model = self.tokenizer, self.model
        if not options:
            raise ValueError("options: at least one option is needed")
        opt = [tok(o, add_special_tokens=False)["input_ids"] for o in options]
        for j, o in enumerate(opt):
            if not o:
                raise ValueError(f"options[{j}]: empty after tokenization")
        ctx = [tok(self.render(p, i) + prefix, add_special_tokens=False)["input_ids"] for i, p in enumerate(prompts)]
        single = all(len(o) == 1 for o in opt)
        pairs = [(i, j) for i in range(len(ctx)) for j in range(len(opt))]
        seqs = ctx if single else [ctx[i] + opt[j] for i, j in pairs]
        tail = 1 if single else max(len(o) for o in opt)
        bs = batch_size or self.config.batch_size
        out = np.zeros((len(ctx), len(opt)), np.float64)
        for s in range(0, len(seqs), bs):
            part = seqs[s : s + bs]
            width = max(len(x) for x in part)
            ids = torch.full((len(part), width), self.tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(part), width), dtype=torch.long)
            for r, x in enumerate(part):  # left padding: every sequence ends at the last position
                ids[r, width - len(x):] = torch.tensor(x)
                mask[r, width - len(x):] = 1
            pos = (mask.cumsum(1) - 1).clamp_min(0)
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                           position_ids=pos.to(model.device)).logits[:, -tail - 1:, :].float()
            logp = torch.log_softmax(logits, dim=-1).cpu()
            for r in range(len(part)):
                if single:
                    out[s + r] = logp[r, -1, [o[0] for o in opt]].numpy()
                else:
                    i, j = pairs[s + r]
                    n = len(opt[j])  # option token k sits at -(n - k); it is predicted one position earlier
                    out[i, j] = float(sum(logp[r, tail - n + k, opt[j][k]] for k in range(n)))
        return out

    def _stop_check(self, params: GenerationParams):
        if not params.stop:
            return None
        tail = max(len(self.tokenizer(s_, add_special_tokens=False)["input_ids"]) for s_ in params.stop) + 2

        def stop_check(tokens: list[int]) -> bool:
            text = self.tokenizer.decode(tokens[-tail:], skip_special_tokens=True)
            return any(s_ in text for s_ in params.stop)

        return stop_check

    # -- serving: continuous batching across requests (llmrec serve) -------------------------------------
    def decode_session(self) -> DecodeSession:
        """A new continuous-batching session across requests (the server's scheduler)."""
        return DecodeSession(self._decoder)

    def row_state(self, prompt: Prompt, params: GenerationParams) -> RowState:
        """A request as a row of a decode session, with its own settings."""
        gen = None
        if params.temperature > 0:
            gen = torch.Generator().manual_seed(params.seed if params.seed is not None else torch.seed())
        return RowState(prompt=self.encode_prompts([prompt])[0], max_new_tokens=params.max_new_tokens,
                        temperature=params.temperature, top_p=params.top_p, want_logprobs=params.logprobs,
                        top_logprobs=params.top_logprobs, stop_check=self._stop_check(params), generator=gen)

    def to_generation(self, state: RowState, params: GenerationParams) -> Generation:
        """A finished row as a ``Generation`` (text cut at stop strings, log-probabilities if asked)."""
        row = state.result
        text, _ = truncate_at_stop(self.tokenizer.decode(row.tokens, skip_special_tokens=True), params.stop)
        g = Generation(text=text, prompt_tokens=len(state.prompt), completion_tokens=len(row.tokens),
                       finish_reason=row.finish_reason)
        self._attach_logprobs(g, row, params)
        return g

    def _attach_logprobs(self, g: Generation, row, params: GenerationParams) -> None:
        if not params.logprobs:
            return
        g.tokens = self.tokenizer.convert_ids_to_tokens(row.tokens)
        g.token_logprobs = list(row.logprobs)
        if params.top_logprobs:  # token texts as an OpenAI-compatible server reports them (decoded)
            g.top_logprobs = [[(self.tokenizer.decode([i]), lp) for i, lp in step] for step in row.top]
            if len(row.top) > len(row.tokens):  # the row ended on eos: its step is reported as an empty token
                g.tokens.append("")
                g.token_logprobs.append(row.eos_logprob)

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams | None = None) -> list[Generation]:
        params = params or GenerationParams()
        token_ids = self.encode_prompts(prompts)
        stop_check = self._stop_check(params)

        settings = DecodeSettings(
            max_new_tokens=params.max_new_tokens, temperature=params.temperature, top_p=params.top_p,
            seed=params.seed, want_logprobs=params.logprobs, top_logprobs=params.top_logprobs,
            batch_size=self.config.batch_size, stop_check=stop_check,
        )
        rows = self._decoder.run(token_ids, settings)
        out = []
        for toks, row in zip(token_ids, rows):
            text = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
            text, _ = truncate_at_stop(text, params.stop)
            g = Generation(
                text=text, prompt_tokens=len(toks), completion_tokens=len(row.tokens),
                finish_reason=row.finish_reason,
            )
            self._attach_logprobs(g, row, params)
            out.append(g)
        return out


def from_config(config) -> TransformersLLM:
    """The ``transformers`` entry of ``llmrec.llm.registry.LLMS``: common fields + ``options`` (num_threads,
    max_input_tokens)."""
    return TransformersLLM(backend_config(TransformersConfig, config, model=config.model, gguf_file=config.gguf_file,
                                          batch_size=config.batch_size, dtype=config.dtype, device=config.device))
