"""GRU4Rec (Hidasi et al., ICLR 2016; the full-softmax variant RecBole trains): item embeddings with dropout
through a GRU; each state, projected to the embedding width, scores every item against the item table.
Histories are packed by length, so padding never enters the recurrence."""
from __future__ import annotations

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from llmrec.data.views import ItemSpace
from llmrec.models.registry import ModelConfigBase, register_model
from llmrec.models.sequential.base import Dropout, SequentialModel, build_sequential, init_weights


class GRU4RecConfig(ModelConfigBase):
    """GRU4Rec hyperparameters (RecBole's defaults): embedding and hidden width, layers, dropout."""
    embedding_size: int = Field(64, ge=1)
    hidden_size: int = Field(128, ge=1)
    n_layers: int = Field(1, ge=1)
    dropout: float = Field(0.3, ge=0, lt=1)
    text_dim: int = Field(0, ge=0)  # item knowledge / text vectors fused in (set from the data; 0 = ids only)


class GRU4Rec(SequentialModel):
    """Embedding -> dropout -> GRU over the real items only -> linear to the embedding width."""

    def __init__(self, space: ItemSpace, c: GRU4RecConfig) -> None:
        super().__init__(space, c.embedding_size, c.text_dim)
        self.drop = Dropout(c.dropout)
        self.gru = nn.GRU(c.embedding_size, c.hidden_size, c.n_layers, batch_first=True, bias=False)
        self.proj = nn.Linear(c.hidden_size, c.embedding_size)
        # RecBole's GRU4Rec initialisation: Xavier-normal item table, Xavier-uniform GRU weights, the output
        # projection left at PyTorch's default. (BERT-style N(0, 0.02) everywhere, as SASRec, makes both
        # factors of h @ table.T tiny and the model barely leaves the uniform loss.) The text fusion layers
        # keep the family's initialisation.
        init_weights(self)
        nn.init.xavier_normal_(self.item.weight)
        with torch.no_grad():
            self.item.weight[0].zero_()
        for w in self.gru.parameters():
            nn.init.xavier_uniform_(w)
        self.proj.reset_parameters()

    def encode(self, x: torch.Tensor, items: torch.Tensor, last: bool = False) -> torch.Tensor:
        B, L = items.shape
        lengths = (items > 0).sum(1)
        # right-aligned -> left-aligned (a row's real items first) so the GRU packs them
        shift = (torch.arange(L, device=items.device)[None, :] + (L - lengths)[:, None]) % L
        left = x.gather(1, shift[:, :, None].expand(-1, -1, x.shape[2]))
        packed = pack_padded_sequence(self.drop(left), lengths.clamp(min=1).cpu(), batch_first=True,
                                      enforce_sorted=False)
        out, h_n = self.gru(packed)
        if last:  # one target per row: the final state of the top layer is all that is needed
            return self.proj(h_n[-1])[:, None, :]
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=L)
        h = self.proj(out)
        back = (torch.arange(L, device=items.device)[None, :] - (L - lengths)[:, None]) % L  # and back
        return h.gather(1, back[:, :, None].expand(-1, -1, h.shape[2]))


@register_model("gru4rec", family="sequential", config=GRU4RecConfig, onnx=False)
def build_gru4rec(space: ItemSpace, config: GRU4RecConfig) -> GRU4Rec:
    """GRU4Rec: a GRU over the history, full softmax over every item (Hidasi et al., 2016)."""
    return build_sequential(GRU4Rec, space, config)
