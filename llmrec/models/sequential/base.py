"""What sequential models share: the item table, the output over every item, and reading the hidden states
where a ``SeqBatch`` has targets (the last position for one target per row; every position with a target for
a target per position)."""
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


class SequentialModel(nn.Module):
    """Base of the family: ``encode(items) -> [B, L, d]`` hidden states (right-aligned, like the items) is
    what a model writes; scoring against the item table and target selection live here."""

    def __init__(self, space: ItemSpace, dim: int) -> None:
        super().__init__()
        self.item = nn.Embedding(space.n_items, dim, padding_idx=0)

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def embedding_tables(self) -> list[torch.Tensor]:
        """The embedding tables the trainer's embedding L2 applies to."""
        return [self.item.weight]

    def forward(self, batch: SeqBatch) -> torch.Tensor:
        """Logits over every item: [B, n_items] after each history (one target per row), or [N, n_items] at the
        N positions with a target (a target per position), row-major."""
        h = self.encode(batch.items)
        h = h[:, -1] if batch.target.ndim == 1 else h[batch.target > 0]
        return h @ self.item.weight.T
