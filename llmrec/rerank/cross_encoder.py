"""Cross-encoder reranker: sentence-transformers ``CrossEncoder`` (one relevance logit per pair).

Default weights: the bundled all-MiniLM-L6-v2 encoder with a new (untrained) score head — a base to
fine-tune (``llmrec.rerank.radio``), not a ready reranker; any HF cross-encoder path plugs in the same way.
``pair_logits`` is the differentiable scoring the trainer uses; ``score`` is inference."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from llmrec.config import StrictConfig
from llmrec.llm.bundled import minilm_path
from llmrec.rerank.base import RerankerMixin


class CrossEncoderConfig(StrictConfig):
    """A cross-encoder reranker: model (default: bundled MiniLM), max length, batch size, device."""
    model: str | None = None  # HF / sentence-transformers path; None = bundled MiniLM weights
    max_length: int = 256
    batch_size: int = 32
    device: str = "cpu"


class CrossEncoderReranker(RerankerMixin):
    """Scores (query, passage) pairs jointly with a sentence-transformers cross-encoder; trainable (RADIO)."""
    def __init__(self, config: CrossEncoderConfig | None = None) -> None:
        from sentence_transformers import CrossEncoder

        self.config = c = config or CrossEncoderConfig()
        if c.model is None:
            path, self.model_id = str(minilm_path()), "all-MiniLM-L6-v2-cross"
        else:
            path, self.model_id = c.model, Path(c.model).name
        logging.getLogger("transformers.modeling_utils").setLevel(logging.ERROR)
        self.ce = CrossEncoder(path, num_labels=1, max_length=c.max_length, device=c.device)
        self.model, self.tokenizer = self.ce.model, self.ce.tokenizer

    def trainable(self) -> torch.nn.Module:
        return self.model

    def pair_logits(self, queries: Sequence[str], texts: Sequence[str]) -> torch.Tensor:
        enc = self.tokenizer(list(queries), list(texts), padding=True, truncation="longest_first",
                             max_length=self.config.max_length, return_tensors="pt").to(self.model.device)
        return self.model(**enc).logits.squeeze(-1).float()

    @torch.inference_mode()
    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        self.model.eval()
        out = []
        for i in range(0, len(texts), self.config.batch_size):
            chunk = list(texts[i : i + self.config.batch_size])
            out.append(self.pair_logits([query] * len(chunk), chunk).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def save(self, path: str | Path) -> None:
        """Save the (fine-tuned) cross-encoder to ``path``."""
        self.ce.save(str(path))
