"""Updating a trained graph model on newer interactions instead of retraining it (the training job's ``update``
option; GraphSAIL, papers.md §28, or plain fine-tuning).

The saved model's id maps are kept and the new data's users and items appended (``extend_space``): an old
id keeps its row, a new one gets a fresh row of the model's initialisation. The new model is built on the
whole new training graph and starts from the old weights (``grown``); it trains on the edges the old graph
did not have (``new_edges``) and selects on the job's validation split. Validation and test leave out the
edges the saved model trained on (``drop_known``: a fresh split of the new data can put them there). With GraphSAIL the old model, on the
old graph, is the teacher: its local structure, global structure (k-means anchors) and degree-weighted self
embeddings are distilled into the student (``llmrec.models.graph.graphsail``)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import nn

from llmrec.data.graph import InteractionGraph
from llmrec.data.views import ItemSpace, PairBatch, RankingEval
from llmrec.errors import ConfigError, DataError


def extend_space(old: ItemSpace, new: ItemSpace) -> tuple[ItemSpace, np.ndarray, np.ndarray]:
    """The old id maps with ``new``'s unseen users and items appended, and index maps from ``new``'s user /
    item indices to the extended ones."""
    users = dict(old.users)
    for u in sorted(set(new.users) - set(users)):
        users[u] = len(users)
    items = dict(old.items)
    for i in sorted(set(new.items) - set(items)):
        items[i] = len(items) + 1
    umap = np.zeros(new.n_users, np.int64)
    for u, n in new.users.items():
        umap[n] = users[u]
    imap = np.zeros(new.n_items, np.int64)  # the padding 0 stays 0
    for i, n in new.items.items():
        imap[n] = items[i]
    return ItemSpace(users, items), umap, imap


def remap_pairs(b: PairBatch, umap: np.ndarray, imap: np.ndarray) -> PairBatch:
    """Training pairs in the extended ids."""
    return PairBatch(torch.from_numpy(umap)[b.users], torch.from_numpy(imap)[b.items], b.behaviour)


def remap_eval(e: RankingEval, umap: np.ndarray, imap: np.ndarray) -> RankingEval:
    """Evaluation rows in the extended ids."""
    return RankingEval(torch.from_numpy(umap)[e.users], [imap[g] for g in e.gold], [imap[s] for s in e.seen],
                       None if e.tail is None else imap[e.tail])


def remap_graph(g: InteractionGraph, space: ItemSpace, umap: np.ndarray | None = None,
                imap: np.ndarray | None = None) -> InteractionGraph:
    """A graph's edges in ``space``'s sizes (and, given index maps, its ids)."""
    u = g.users if umap is None else umap[g.users]
    i = g.items if imap is None else imap[g.items]
    return InteractionGraph(space.n_users, space.n_items, u, i)


def drop_known(e: RankingEval, old: InteractionGraph) -> tuple[RankingEval, int]:
    """Evaluation rows without the gold items the saved model trained on (a fresh split of the new data can
    put them in validation or test): they move to the excluded items; users left without gold are dropped.
    Also the number of gold items moved."""
    known: dict[int, set[int]] = {}
    for u, i in zip(old.users.tolist(), old.items.tolist()):
        known.setdefault(u, set()).add(i)
    users, gold, seen, moved = [], [], [], 0
    for n, u in enumerate(e.users.tolist()):
        k = known.get(u, set())
        g = np.array([i for i in e.gold[n] if i not in k], np.int64)
        moved += len(e.gold[n]) - len(g)
        if len(g):
            users.append(u)
            gold.append(g)
            was = e.seen[n] if e.seen else np.zeros(0, np.int64)
            seen.append(np.union1d(was, np.setdiff1d(e.gold[n], g)).astype(np.int64))
    return RankingEval(torch.tensor(users, dtype=torch.long), gold, seen, e.tail), moved


def new_edges(pairs: PairBatch, old: InteractionGraph) -> PairBatch:
    """The training pairs whose (user, item) edge the old graph does not have."""
    key = old.users.astype(np.int64) * (1 << 32) + old.items.astype(np.int64)
    mine = pairs.users.numpy().astype(np.int64) * (1 << 32) + pairs.items.numpy().astype(np.int64)
    keep = ~np.isin(mine, key)
    if not keep.any():
        raise DataError("update: the data has no training interaction the saved model's graph lacks: nothing to "
                        "update on")
    return pairs.slice(torch.from_numpy(np.flatnonzero(keep)))


def grown(old: nn.Module, new: nn.Module, n_users: int, n_items: int) -> nn.Module:
    """``new`` (built on the extended space) with ``old``'s weights: equal shapes copied, user / item tables
    (first dimension ``n_users`` / ``n_items`` in ``old``) copied into their first rows."""
    state, mine = old.state_dict(), new.state_dict()
    with torch.no_grad():
        _copy_rows(state, mine, n_users, n_items)
    return new


def _copy_rows(state: dict, mine: dict, n_users: int, n_items: int) -> None:
    for k, v in mine.items():
        w = state.get(k)
        if w is None:
            raise ConfigError(f"update.model_dir: the saved model has no {k!r}; was it trained as this model?")
        if w.shape == v.shape:
            v.copy_(w)
        elif w.shape[1:] == v.shape[1:] and w.shape[0] in (n_users, n_items) and w.shape[0] <= v.shape[0]:
            v[: w.shape[0]].copy_(w)
        else:
            raise ConfigError(f"update.model_dir: {k!r} has shape {tuple(w.shape)} in the saved model and "
                              f"{tuple(v.shape)} here; only user and item tables can grow")


def with_graph(space: ItemSpace, graph: InteractionGraph) -> ItemSpace:
    """``space`` carrying ``graph`` (what graph models are built from)."""
    return replace(space, graph=graph)
