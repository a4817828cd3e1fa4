"""RSIR (Zhang et al., arXiv 2602.15659): a sequential recommender teaches its successor.

Round r: the current model M_r writes synthetic training sequences; D_{r+1} = D_r plus the round's synthetic
sequences; M_{r+1} (same architecture, fresh weights) trains on D_{r+1}. Valid / test histories and targets
are never touched, and generation only sees the training part of each sequence. Two ways to write them
(``style``; docs/methods/rsir.md compares them with the authors' code):

- ``regenerate`` (default; the authors' released ``generate_and_save_sequences_parallel``): for every real
  training sequence S, ``sequences`` new sequences start from S's first item; each step M_r scores every item
  given the sequence so far, and **fidelity control** stops the sequence once none of S's items not yet in
  it ranks within the top ``tau`` (or none is left); otherwise the next item is the top-scored one not yet
  in the sequence, from S's own items with probability ``local``, else from all items. Sequences of at least
  ``min_len`` items are kept once each (duplicates dropped) as new training sequences.
- ``continue`` (what llmrec ran before issue 37; papers.md's reading of the abstract): M_r extends S by
  ``generate`` items (the likeliest unseen item with probability ``exploit``, else one sampled from the top
  ``sample_top``), keeping an item only if it ranks within the top ``tau`` under M_r given S alone.

``fidelity: false`` is the no-filter ablation (regenerate: sequences run to ``max_len`` or until no item of
S is left; continue: every generated item kept)."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.data.views import SeqBatch


class RSIRConfig(StrictConfig):
    """RSIR settings: rounds, how synthetic sequences are written (``style``) and its settings, the fidelity
    rank threshold and whether the filter is on."""
    rounds: int = Field(2, ge=1)
    style: Literal["regenerate", "continue"] = "regenerate"
    sequences: int = Field(5, ge=1)  # regenerate: new sequences per real one (the authors' m)
    local: float = Field(0.5, ge=0, le=1)  # regenerate: chance a step picks from S's own items (local_prob)
    min_len: int = Field(3, ge=2)  # regenerate: shorter sequences are dropped
    generate: int = Field(5, ge=1)  # continue: items appended per real sequence
    exploit: float = Field(0.8, ge=0, le=1)  # continue: chance of the likeliest item, else a top-k sample
    sample_top: int = Field(20, ge=1)  # continue: k of that sample
    tau: int = Field(20, ge=1)  # fidelity: rank threshold (the authors' k)
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


@torch.no_grad()
def generate_sequences(model, sequences: list[list[int]], max_len: int, c: RSIRConfig,
                       ) -> tuple[list[tuple[int, list[int]]], dict]:
    """``style: regenerate``: new synthetic sequences, each with the index of the real sequence it was written
    from, in order and without duplicates; counts (written, kept, mean length)."""
    g = torch.Generator().manual_seed(c.seed)
    model.eval()
    seen: set[tuple[int, ...]] = set()
    out: list[tuple[int, list[int]]] = []
    written = 0
    lengths: list[int] = []
    for s in range(0, len(sequences), max(1, c.batch_size // c.sequences)):
        real = sequences[s:s + max(1, c.batch_size // c.sequences)]
        owner = [k for k in range(len(real)) for _ in range(c.sequences)]
        B = len(owner)
        ones = torch.zeros(B, dtype=torch.long)
        gen = [[real[k][0]] for k in owner]
        n_items = None
        active = torch.ones(B, dtype=torch.bool)
        for _ in range(1, max_len):
            if not active.any():
                break
            rows = torch.nonzero(active).squeeze(1)
            scores = model(SeqBatch(_window([gen[r] for r in rows.tolist()], max_len), ones[rows], ones[rows])).float()
            if n_items is None:
                n_items = scores.shape[1]
                own = torch.zeros(len(real), n_items, dtype=torch.bool)
                for k, seq in enumerate(real):
                    own[k, torch.tensor(seq, dtype=torch.long)] = True
                own[:, 0] = False
            taken = torch.zeros(len(rows), n_items, dtype=torch.bool)
            for j, r in enumerate(rows.tolist()):
                taken[j, torch.tensor(gen[r], dtype=torch.long)] = True
            mine = own[torch.tensor([owner[r] for r in rows.tolist()])]
            remaining = mine & ~taken
            left = remaining.any(1)
            if c.fidelity:  # some item of S not yet written ranks within the top tau (ties counted in its favour)
                kth = scores.topk(min(c.tau, n_items), dim=1).values[:, -1:]
                left &= (remaining & (scores >= kth)).any(1)
            pool = torch.where((torch.rand(len(rows), generator=g) < c.local)[:, None], mine,
                               torch.ones_like(mine))
            pool[:, 0] = False
            pick = scores.masked_fill(~pool | taken, -torch.inf)
            best = pick.argmax(1)
            ok = left & torch.isfinite(pick.gather(1, best[:, None]).squeeze(1))
            for j, r in enumerate(rows.tolist()):
                if ok[j]:
                    gen[r].append(int(best[j]))
                else:
                    active[r] = False
        for r, k in enumerate(owner):
            written += 1
            if len(gen[r]) >= c.min_len and tuple(gen[r]) not in seen:
                seen.add(tuple(gen[r]))
                out.append((s + k, gen[r]))
                lengths.append(len(gen[r]))
    return out, {"generated": written, "accepted": len(out), "acceptance": len(out) / written if written else None,
                 "mean_length": float(sum(lengths) / len(lengths)) if lengths else None}
