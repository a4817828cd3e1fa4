"""What sequential models share: the item table (optionally fused with item text / LLM knowledge vectors),
the output over every item, and reading the hidden states where a ``SeqBatch`` has targets (the last position
for one target per row; every position with a target for a target per position).

Knowledge fusion (UniSRec / LLM-ESR style): a fixed vector t_i per item (MiniLM item text, the LLM's hidden
states, or ``llmrec extract`` knowledge) is projected to the model width, p_i = W t_i, and gated into the id
embedding, e_i + sigmoid(G [e_i; p_i]) * p_i; the fused table serves both the inputs and the output scores, so
an item seen rarely in training still carries its text. The vectors are a buffer of the model (saved with
it), not trained."""
from __future__ import annotations

import torch
from torch import nn

from llmrec.data.views import ItemSpace, SeqBatch


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Normal(0, std) weights, zero biases, unit LayerNorms (BERT-style initialisation, as RecBole's)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout with a mask drawn by ``uniform_`` instead of ``bernoulli_``: the same distribution,
    about 3x faster on CPU (``eval/sequential_dropout.py``; bernoulli_ was a third of a SASRec training step)."""
    if not training or p == 0.0:
        return x
    keep = torch.empty_like(x).uniform_() >= p
    return x * keep / (1.0 - p)


class Dropout(nn.Module):
    """``nn.Dropout`` with the faster mask of ``dropout``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


class SequentialModel(nn.Module):
    """Base of the family: ``encode(items) -> [B, L, d]`` hidden states (right-aligned, like the items) is
    what a model writes; scoring against the item table and target selection live here."""

    def __init__(self, space: ItemSpace, dim: int, text_dim: int = 0) -> None:
        super().__init__()
        self.item = nn.Embedding(space.n_items, dim, padding_idx=0)
        self.text_proj = self.text_gate = None
        if text_dim:
            vectors = torch.zeros(space.n_items, text_dim)
            if space.item_vectors is not None:
                if space.item_vectors.shape != (space.n_items, text_dim):
                    raise ValueError(f"item_vectors: shape {space.item_vectors.shape}, expected "
                                     f"({space.n_items}, {text_dim})")
                vectors = torch.as_tensor(space.item_vectors, dtype=torch.float32)
            self.register_buffer("item_text", vectors)
            self.text_proj = nn.Linear(text_dim, dim)
            self.text_gate = nn.Linear(2 * dim, dim)

    def item_table(self) -> torch.Tensor:
        """[n_items, d] item vectors: the id embeddings, fused with the projected text vectors if any."""
        e = self.item.weight
        if self.text_proj is None:
            return e
        p = self.text_proj(self.item_text)
        fused = e + torch.sigmoid(self.text_gate(torch.cat([e, p], dim=1))) * p
        return fused * (torch.arange(len(e), device=e.device) > 0).unsqueeze(1)  # padding stays zero

    def encode(self, x: torch.Tensor, items: torch.Tensor, last: bool = False) -> torch.Tensor:
        """[B, L, d] states from the embedded history ``x`` [B, L, d] (``items``: the ids, 0 = padding);
        ``last``: only the last position's state is needed, and a model may return just that ([B, 1, d])."""
        raise NotImplementedError

    def embedding_tables(self) -> list[torch.Tensor]:
        """The embedding tables the trainer's embedding L2 applies to."""
        return [self.item.weight]

    def forward(self, batch: SeqBatch) -> torch.Tensor:
        """Logits over every item: [B, n_items] after each history (one target per row), or [N, n_items] at the
        N positions with a target (a target per position), row-major."""
        table = self.item_table()
        # histories are right-aligned: drop the columns that are padding in every row (positions count from a
        # row's first real item, so the states are the same)
        width = max(int((batch.items > 0).sum(1).max()), 1) if batch.items.numel() else batch.items.shape[1]
        items = batch.items[:, -width:]
        one = batch.target.ndim == 1
        h = self.encode(table[items], items, last=one)
        h = h[:, -1] if one else h[batch.target[:, -width:] > 0]
        return h @ table.T


def build_sequential(cls, space: ItemSpace, config):
    """A sequential model built with the item text width of the context's vectors (else the config's, as on a
    reload), keeping that config on the model so a saved model rebuilds with the same width."""
    width = int(space.item_vectors.shape[1]) if space.item_vectors is not None else config.text_dim
    config = config.model_copy(update={"text_dim": width})
    model = cls(space, config)
    model.config = config
    return model
