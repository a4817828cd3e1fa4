"""The training procedures of the augmentations, for any sequential model and any way of training it: the
caller passes ``train(rows)`` (train a fresh model on these training rows, ``None`` for the data's own rows;
return the model and its result with ``valid`` / ``test`` metrics). The training job's ``augment`` option
(``llmrec.train_job``) and the ``augment`` experiment kind both call these.

- ``rsir_rounds``: RSIR's recursive self-improvement: train, let the model write synthetic sequences from
  the real training sequences (``generate_sequences``, or ``generate_continuations`` for ``style:
  continue``; fidelity-controlled), retrain on the real plus the accumulated synthetic sequences, ``rounds``
  times (or, as a control, add the real sequences again and generate nothing).
- ``short_user_prefixes``: DiffuASR's generated prefixes for the short-history users: a guided diffusion
  model over item embeddings learns the first ``prefix`` items of the long training sequences from the mean
  of their remaining items, then writes a prefix for each short user from theirs (a random prefix beside it
  as the control); ``with_prefixes`` puts them in front of the users' sequences."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from llmrec.augment.diffuasr import DiffuASRConfig, ddim_sample, round_to_items, train_diffusion
from llmrec.augment.rsir import RSIRConfig, generate_continuations, generate_sequences
from llmrec.data.views import SeqBatch, sequence_rows

Train = Callable[["SeqBatch | None"], "tuple[Any, dict]"]  # training rows (None: the data's own) -> model, result


def rsir_rounds(train: Train, real: list[tuple[int, list[int]]], c: RSIRConfig, max_len: int,
                stride: int | None = None, duplicates: bool = False) -> tuple[Any, list[dict]]:
    """Round 0 (the base model) and ``c.rounds`` self-improvement rounds over the users' real training
    sequences ``real`` ((user index, item ids)); the last model and each round's valid / test metrics, training
    rows and generation counts."""
    model, result = train(None)
    rounds = [{"round": 0, "valid": result["valid"], "test": result["test"], "train_rows": None}]
    synthetic: list[tuple[int, list[int]]] = []
    for r in range(1, c.rounds + 1):
        if duplicates:
            counts: dict = {"generated": 0, "accepted": 0, "acceptance": None}
            synthetic += real
        elif c.style == "regenerate":
            written, counts = generate_sequences(model, [ids for _, ids in real], max_len,
                                                 c.model_copy(update={"seed": c.seed + r}))
            synthetic += [(real[k][0], ids) for k, ids in written]
        else:
            extra, counts = generate_continuations(model, [ids for _, ids in real], max_len,
                                                   c.model_copy(update={"seed": c.seed + r}))
            synthetic += [(u, ids + more) for (u, ids), more in zip(real, extra) if more]
        rows = sequence_rows(real + synthetic, max_len, stride)
        model, result = train(rows)
        rounds.append({"round": r, "valid": result["valid"], "test": result["test"], "train_rows": len(rows),
                       **counts})
    return model, rounds


def short_users(real: list[list[int]], c: DiffuASRConfig) -> np.ndarray:
    """Which users are short (fewer than ``c.short_below`` interactions; the two held out count)."""
    return np.array([len(ids) + 2 < c.short_below for ids in real], dtype=bool)


def prefix_users(real: list[list[int]], c: DiffuASRConfig) -> np.ndarray:
    """Which users get a generated prefix: the short ones, or everyone (``users: all``)."""
    return short_users(real, c) if c.users == "short" else np.ones(len(real), dtype=bool)


def short_user_prefixes(table: torch.Tensor, real: list[list[int]], short: np.ndarray, n_items: int,
                        c: DiffuASRConfig, nearest: bool = False) -> tuple[dict[str, list[list[int]]], dict]:
    """Prefixes for the users marked in ``short`` (``prefix_users``; their real training items ``real``), from a diffusion model
    trained over ``table`` (item embeddings of a trained model, row = item id): ``{"diffusion": ...,
    "random_prefix": ...}`` (one list per short user, in order) and the diffusion loss, first and last.
    ``nearest`` adds ``guide_nearest``: the ``prefix`` unused items of highest cosine to the user's guide, the
    generator without diffusion (a control)."""
    long_ids = [s for s in real if len(s) >= c.prefix + 1]
    if not long_ids:
        raise ValueError(f"prefix: no training sequence is longer than {c.prefix} items to learn prefixes from")
    pool = (lambda rows: rows.sum(0)) if c.guide == "sum" else (lambda rows: rows.mean(0))
    x0 = torch.stack([table[torch.tensor(s[:c.prefix])] for s in long_ids])
    guides = torch.stack([pool(table[torch.tensor(s[c.prefix:])]) for s in long_ids])
    model, sched, losses = train_diffusion(x0, guides, c)
    targets = [i for i in range(len(real)) if short[i]]
    rng = np.random.default_rng(c.seed)
    prefixes: dict[str, list[list[int]]] = {}
    if targets:
        user_guides = torch.stack([pool(table[torch.tensor(real[i])]) for i in targets])
        gen = ddim_sample(model, sched, user_guides, c.sample_steps, c.seed)
        prefixes["diffusion"] = round_to_items(gen, table, [set(real[i]) for i in targets])
        prefixes["random_prefix"] = [list(rng.choice(sorted(set(range(1, n_items)) - set(real[i])), c.prefix,
                                                     replace=False)) for i in targets]
        if nearest:  # every position rounded from the guide itself: its nearest unused items in turn
            prefixes["guide_nearest"] = round_to_items(user_guides[:, None, :].expand(-1, c.prefix, -1), table,
                                                       [set(real[i]) for i in targets])
    return prefixes, {"diffusion_loss_first_last": [losses[0], losses[-1]]}


def with_prefixes(users: list[int], real: list[list[int]], short: np.ndarray, prefix: list[list[int]]
                  ) -> list[tuple[int, list[int]]]:
    """(user index, item ids) of every user, the short users' sequences after their prefix (in order)."""
    seqs = [(u, list(s)) for u, s in zip(users, real)]
    for i, add in zip([i for i in range(len(real)) if short[i]], prefix):
        seqs[i] = (users[i], [int(x) for x in add] + real[i])
    return seqs
