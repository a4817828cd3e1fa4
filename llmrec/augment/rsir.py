"""RSIR (Zhang et al., arXiv 2602.15659): a sequential recommender teaches its successor.

Round r: the current model M_r continues every user's real training sequence by ``generate`` items (the
likeliest unseen item with probability ``exploit``, else one sampled from the softmax over the top
``sample_top``); **fidelity control** keeps a generated item only if it ranks within the top ``tau`` under
M_r given the user's *real* history alone (a continuation that drifts off the user's preferences is dropped);
the accepted items extend the real sequence into a synthetic training sequence. D_{r+1} = D_r plus the round's
synthetic sequences; M_{r+1} (same architecture, fresh weights) trains on D_{r+1}. Valid / test histories and
targets are never touched, and generation only sees the training part of each sequence. ``fidelity: false``
is the no-filter ablation (every generated item kept)."""
from __future__ import annotations

import torch
from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.data.views import SeqBatch


class RSIRConfig(StrictConfig):
    """RSIR settings: rounds, items generated per user, exploitation probability, sampling width, rank
    threshold and whether the fidelity filter is on."""
    rounds: int = Field(2, ge=1)
    generate: int = Field(5, ge=1)
    exploit: float = Field(0.8, ge=0, le=1)
    sample_top: int = Field(20, ge=1)
    tau: int = Field(20, ge=1)
    fidelity: bool = True
    seed: int = 0
    batch_size: int = Field(256, ge=1)


def _window(seqs: list[list[int]], max_len: int) -> torch.Tensor:
    out = torch.zeros(len(seqs), max_len, dtype=torch.long)
    for r, s in enumerate(seqs):
        s = s[-max_len:]
        if s:
            out[r, -len(s):] = torch.tensor(s)
    return out


@torch.no_grad()
def generate_continuations(model, sequences: list[list[int]], max_len: int, c: RSIRConfig,
                           ) -> tuple[list[list[int]], dict]:
    """The accepted generated items for each real sequence, and counts (generated, accepted)."""
    g = torch.Generator().manual_seed(c.seed)
    model.eval()
    accepted: list[list[int]] = []
    generated = kept = 0
    for s in range(0, len(sequences), c.batch_size):
        real = sequences[s:s + c.batch_size]
        B = len(real)
        ones = torch.zeros(B, dtype=torch.long)
        base = model(SeqBatch(_window(real, max_len), ones, ones)).float()  # M_r given the real history only
        used = torch.zeros_like(base, dtype=torch.bool)
        used[:, 0] = True
        for r, seq in enumerate(real):
            used[r, torch.tensor(seq, dtype=torch.long)] = True
        base_masked = base.masked_fill(used, -torch.inf)
        context = [list(x) for x in real]
        extra: list[list[int]] = [[] for _ in range(B)]
        for _ in range(c.generate):
            logits = model(SeqBatch(_window(context, max_len), ones, ones)).float().masked_fill(used, -torch.inf)
            greedy = logits.argmax(1)
            top = logits.topk(min(c.sample_top, logits.shape[1]), dim=1)
            pick = torch.multinomial(torch.softmax(top.values, 1), 1, generator=g).squeeze(1)
            sampled = top.indices.gather(1, pick[:, None]).squeeze(1)
            explore = torch.rand(B, generator=g) >= c.exploit
            choice = torch.where(explore, sampled, greedy)
            score = base_masked.gather(1, choice[:, None])
            rank = 1 + (base_masked > score).sum(1)  # among the items the user has not interacted with
            for r in range(B):
                i = int(choice[r])
                if not torch.isfinite(logits[r, i]):  # nothing left to recommend
                    continue
                generated += 1
                used[r, i] = True
                if not c.fidelity or int(rank[r]) <= c.tau:
                    kept += 1
                    extra[r].append(i)
                    context[r].append(i)
        accepted += extra
    return accepted, {"generated": generated, "accepted": kept,
                      "acceptance": kept / generated if generated else None}
