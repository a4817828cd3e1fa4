"""LLM-based pointwise reranker, fine-tunable with LoRA (peft).

score(query, passage) = logit(" yes") - logit(" no") for the next token after a relevance question, from
any causal LM (default: the bundled SmolLM2-135M-Instruct). ``trainable()`` wraps the model with LoRA
adapters so ``llmrec.rerank.radio.train_reranker`` fine-tunes only the adapters (RADIO's loss, unchanged)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from llmrec.config import StrictConfig
from llmrec.llm.bundled import ensure_smollm2_converted
from llmrec.rerank.base import RerankerMixin

TEMPLATE = "Query: {query}\nPassage: {passage}\nIs the passage relevant to the query? Answer yes or no.\nAnswer:"


class LLMRerankerConfig(StrictConfig):
    """An LLM reranker: base model, LoRA settings, prompt length."""
    model: str | None = None  # causal LM path; None = bundled SmolLM2-135M-Instruct
    max_length: int = 256
    batch_size: int = 8
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: list[str] = ["q_proj", "v_proj"]
    device: str = "cpu"


class LLMReranker(RerankerMixin):
    """Scores passages by the LLM's "yes" likelihood for relevance; fine-tuned with LoRA (peft)."""
    def __init__(self, config: LLMRerankerConfig | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = c = config or LLMRerankerConfig()
        if c.model is None:
            path = str(ensure_smollm2_converted())
        else:
            path = c.model
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(c.device).eval()
        ids = [self.tokenizer(w, add_special_tokens=False)["input_ids"] for w in (" yes", " no")]
        if any(len(i) != 1 for i in ids):
            raise ValueError("model: ' yes' and ' no' must each be one token for this reranker")
        self.yes, self.no = ids[0][0], ids[1][0]
        self._peft = None

    def trainable(self) -> torch.nn.Module:
        """The model with LoRA adapters (created once); only adapter weights require gradients."""
        if self._peft is None:
            from peft import LoraConfig, get_peft_model

            c = self.config
            self._peft = get_peft_model(self.model, LoraConfig(r=c.lora_r, lora_alpha=c.lora_alpha,
                                                               lora_dropout=c.lora_dropout,
                                                               target_modules=list(c.target_modules)))
        return self._peft

    def _net(self) -> torch.nn.Module:
        return self._peft if self._peft is not None else self.model

    def pair_logits(self, queries: Sequence[str], texts: Sequence[str]) -> torch.Tensor:
        prompts = [TEMPLATE.format(query=q, passage=t) for q, t in zip(queries, texts)]
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, truncation=True,
                             max_length=self.config.max_length).to(self.model.device)
        logits = self._net()(**enc).logits[:, -1, :].float()
        return logits[:, self.yes] - logits[:, self.no]

    @torch.inference_mode()
    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        self._net().eval()
        out = [self.pair_logits([query] * len(texts[i : i + self.config.batch_size]),
                                texts[i : i + self.config.batch_size]).cpu().numpy()
               for i in range(0, len(texts), self.config.batch_size)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def save(self, path: str | Path) -> None:
        """Saves the LoRA adapter (or the whole model when no adapter was trained)."""
        self._net().save_pretrained(str(path))
