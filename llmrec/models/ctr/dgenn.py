"""DG-ENN (Guo et al., KDD 2021; papers.md §18): Dual Graph enhanced Embedding Neural Network. Two graphs refine
the user and item id embeddings before a CTR head (DeepFM here: linear + FM + MLP over every field).

- **Attribute graph** (feature sparsity): users linked to the values of their attribute fields (categorical
  fields constant per user over the training rows, e.g. gender, occupation), items to theirs (e.g. release
  year). With ``divide_and_conquer`` each field is its own bipartite graph with its own propagation, and a
  learned softmax over the fields aggregates them; without, one graph holds every attribute field.
- **Collaborative graph** (behaviour sparsity): training user-item interactions (``edges: positive``: the
  clicked rows) plus each user's and each item's ``neighbors`` most cosine-similar users / items (over those
  interactions). With ``curriculum`` the first ``curriculum_epochs`` epochs propagate over the similarity
  edges only, then over all of them (the paper's organized learning: the easy, dense relations first).

Propagation is LightGCN's (mean of the layers 0..``layers`` over the symmetric-normalized adjacency) and runs
on the rows of the model's own categorical table, so attribute values, users and items share the embeddings
the head reads. On each row, the user's (item's) attribute-graph vector is read at the row's attribute
values (so a user unseen in training, on most MovieLens test rows, still gets one), its collaborative-graph
vector at its id row; their mean is combined with the id embedding (``combine``: added, added times a learned
scalar starting at 0, or instead of it). The graphs are built from the training rows by the registry's
``prepare`` hook and saved with the model (edge lists as buffers). Layer details are our reading of the paper (no public
code)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field, PrivateAttr
from torch import nn

from llmrec.ctr.features import Batch, FeatureEncoder
from llmrec.data.graph import normalized
from llmrec.errors import ConfigError, DataError
from llmrec.models.ctr.base import DeepCTRConfig, FieldNet
from llmrec.models.graph.base import layer_mean
from llmrec.models.registry import register_model


@dataclass
class DGGraph:
    """Edges between rows of the shared categorical table: attribute edges (field index, entity row, value
    row) for users and items, interactions (user row, item row), similarity edges (row, row)."""
    user_attr: np.ndarray = field(default_factory=lambda: np.zeros((3, 0), np.int64))
    item_attr: np.ndarray = field(default_factory=lambda: np.zeros((3, 0), np.int64))
    interactions: np.ndarray = field(default_factory=lambda: np.zeros((2, 0), np.int64))
    similar: np.ndarray = field(default_factory=lambda: np.zeros((2, 0), np.int64))
    user_fields: list[str] = field(default_factory=list)
    item_fields: list[str] = field(default_factory=list)


class DGENNConfig(DeepCTRConfig):
    """DG-ENN: which fields are the user and the item, propagation depth, similarity neighbours, the switches."""
    user_field: str = "user_id"
    item_field: str = "item_id"
    layers: int = Field(2, ge=1)
    neighbors: int = Field(10, ge=0)  # similarity edges per user and per item
    edges: Literal["positive", "all"] = "positive"  # which training rows are interaction edges
    divide_and_conquer: bool = True
    curriculum: bool = True
    curriculum_epochs: int = Field(2, ge=0)
    # replace: the id embedding becomes the graphs' mean vector; residual: the id embedding plus it; gated:
    # the id embedding plus it times a learned scalar per entity (starting at 0: the head starts as DeepFM)
    combine: Literal["replace", "residual", "gated"] = "gated"
    steps_per_epoch: int | None = None  # set by the prepare hook (training rows / batch size)
    _graph: DGGraph | None = PrivateAttr(None)


def _top_cosine(x: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of each row's k most cosine-similar other rows of ``x`` (positive similarity only)."""
    if k == 0 or x.shape[0] < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    norm = np.sqrt(np.asarray(x.multiply(x).sum(1)).ravel())
    norm[norm == 0] = 1.0
    xn = sp.diags(1.0 / norm) @ x
    sim = (xn @ xn.T).tocsr()
    sim.setdiag(0)
    sim.eliminate_zeros()
    rows, cols = [], []
    for r in range(sim.shape[0]):
        lo, hi = sim.indptr[r], sim.indptr[r + 1]
        if hi == lo:
            continue
        data, idx = sim.data[lo:hi], sim.indices[lo:hi]
        top = idx[np.argsort(-data, kind="stable")[:k]]
        rows.append(np.full(len(top), r))
        cols.append(top)
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(cols)


def entity_columns(encoder: FeatureEncoder, c: DGENNConfig) -> tuple[list[str], int, int]:
    """(categorical field names, the user field's column, the item field's column); a field that is not a
    categorical feature is a named error."""
    names = [s.name for s in encoder.categorical]
    for f in ("user_field", "item_field"):
        if getattr(c, f) not in names:
            raise ConfigError(f"model.{f}: {getattr(c, f)!r} is not a categorical feature (have {names})")
    return names, names.index(c.user_field), names.index(c.item_field)


def build_graph(encoder: FeatureEncoder, train: Batch, c: DGENNConfig) -> DGGraph:
    """The attribute and collaborative graphs of the training rows (see the module docstring)."""
    names, ju, ji = entity_columns(encoder, c)
    if train.label is None:
        raise DataError("train.label: DG-ENN's interaction graph needs labels")
    cat = train.cat.numpy()
    users, items = cat[:, ju], cat[:, ji]
    g = DGGraph()
    for owner, col, attr, fields in (("user", users, [], g.user_fields), ("item", items, [], g.item_fields)):
        n_owner = len(np.unique(col))
        for j, name in enumerate(names):
            if j in (ju, ji) or name in g.user_fields:
                continue
            pairs = np.unique(np.stack([col, cat[:, j]]), axis=1)
            if pairs.shape[1] == n_owner:  # one value per user (item): an attribute of it
                fields.append(name)
                attr.append(np.vstack([np.full(pairs.shape[1], len(fields) - 1), pairs]))
        if attr:
            setattr(g, f"{owner}_attr", np.concatenate(attr, 1).astype(np.int64))
    keep = train.label.numpy() > 0.5 if c.edges == "positive" else np.ones(len(users), bool)
    inter = np.unique(np.stack([users[keep], items[keep]]), axis=1)
    g.interactions = inter.astype(np.int64)
    if inter.shape[1]:
        u_ids, u_loc = np.unique(inter[0], return_inverse=True)
        i_ids, i_loc = np.unique(inter[1], return_inverse=True)
        x = sp.csr_matrix((np.ones(inter.shape[1]), (u_loc, i_loc)), shape=(len(u_ids), len(i_ids)))
        ur, uc = _top_cosine(x, c.neighbors)
        ir, ic = _top_cosine(x.T.tocsr(), c.neighbors)
        g.similar = np.concatenate([np.stack([u_ids[ur], u_ids[uc]]), np.stack([i_ids[ir], i_ids[ic]])], 1
                                   ).astype(np.int64)
    return g


def _symmetric(edges: np.ndarray, n: int) -> torch.Tensor:
    """The symmetric-normalized [n, n] adjacency of undirected ``edges`` [2, E] (duplicates merged)."""
    both = np.unique(np.concatenate([edges, edges[::-1]], 1), axis=1) if edges.shape[1] else edges
    return normalized(both[0], both[1], n, "sym")


class DGENN(nn.Module):
    """DeepFM whose user / item field embeddings are refined by the attribute and collaborative graphs."""

    def __init__(self, encoder: FeatureEncoder, c: DGENNConfig, graph: DGGraph | None) -> None:
        super().__init__()
        if c.embedding_table.kind != "dense":
            raise ConfigError(f"embedding_table.kind: dgenn propagates over a dense table, not {c.embedding_table.kind!r}")
        names, ju, ji = entity_columns(encoder, c)
        self.c = c
        self.net = FieldNet(encoder, c, linear=True, fm=True)
        self.cols = (ju, ji)
        self.n_rows = self.net.embedding.table.weight.shape[0]
        g = graph or DGGraph()
        for name in ("user_attr", "item_attr", "interactions", "similar"):
            self.register_buffer(name, torch.from_numpy(getattr(g, name)).long())
        for owner in ("user", "item"):  # batch columns of each entity's attribute fields
            self.register_buffer(f"{owner}_attr_cols", torch.tensor(
                [names.index(f) for f in getattr(g, f"{owner}_fields")], dtype=torch.long))
        # field-wise aggregation of the divided attribute graphs (one weight per attribute field)
        self.user_field_logits = nn.Parameter(torch.zeros(max(1, len(g.user_fields))))
        self.item_field_logits = nn.Parameter(torch.zeros(max(1, len(g.item_fields))))
        self.gates = nn.Parameter(torch.zeros(2))  # combine: gated (user, item)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self._adj: dict[str, list[torch.Tensor]] | None = None
        self._cache: dict[str, list[torch.Tensor]] | None = None
        self.net.embedding.register_forward_hook(self._enhance)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for name in ("user_attr", "item_attr", "interactions", "similar", "user_attr_cols", "item_attr_cols"):
            # the saved graph's sizes
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        for name in ("user_field_logits", "item_field_logits"):
            if prefix + name in state_dict:
                setattr(self, name, nn.Parameter(torch.empty_like(state_dict[prefix + name])))
        self._adj = self._cache = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def adjacencies(self) -> dict[str, list[torch.Tensor]]:
        """The normalized adjacencies (built once from the edge buffers): per-field or joint attribute graphs
        of users and items, the similarity-only and the full collaborative graph."""
        if self._adj is None:
            n, adj = self.n_rows, {}
            for owner in ("user", "item"):
                e = getattr(self, f"{owner}_attr").cpu().numpy()
                if self.c.divide_and_conquer:
                    adj[owner] = [_symmetric(e[1:, e[0] == f], n) for f in range(int(e[0].max()) + 1)] if e.size else []
                else:
                    adj[owner] = [_symmetric(e[1:], n)] if e.size else []
            sim, inter = self.similar.cpu().numpy(), self.interactions.cpu().numpy()
            adj["similar"] = [_symmetric(sim, n)]
            adj["full"] = [_symmetric(np.concatenate([sim, inter], 1), n)]
            device = self.net.embedding.table.weight.device
            self._adj = {k: [a.to(device) for a in v] for k, v in adj.items()}
        return self._adj

    def propagated(self) -> dict[str, list[torch.Tensor]]:
        """The table after each graph's propagation (LightGCN layer means): ``collab`` (the curriculum's phase
        picks the similarity-only or the full graph) and, per entity, one table per attribute graph.
        Cached in evaluation (recomputed every training step)."""
        if not self.training and self._cache is not None:
            return self._cache
        w = self.net.embedding.table.weight
        adj, c = self.adjacencies(), self.c
        phase = ("similar" if c.curriculum and c.steps_per_epoch and
                 int(self.steps) < c.curriculum_epochs * c.steps_per_epoch else "full")
        out = {"collab": [layer_mean(adj[phase][0], w, c.layers)],
               **{owner: [layer_mean(a, w, c.layers) for a in adj[owner]] for owner in ("user", "item")}}
        self._cache = None if self.training else {k: [t.detach() for t in v] for k, v in out.items()}
        return out

    def entity_vectors(self, batch: Batch, owner: str, x: torch.Tensor) -> torch.Tensor:
        """The user's (item's) field vector of each row: its id embedding ``x`` [B, d] combined with the mean of
        its attribute-graph vector and its collaborative-graph vector. The attribute-graph vector is read at
        the row's attribute values (a weighted sum over fields with divide-and-conquer, a mean over them in
        the joint graph), so a user unseen in training still gets one; without attribute fields it is ``x``."""
        tabs, c = self.propagated(), self.c
        j = self.cols[0 if owner == "user" else 1]
        collab = tabs["collab"][0][batch.cat[:, j]]
        cols = getattr(self, f"{owner}_attr_cols")
        attr = x
        if len(cols):
            logits = self.user_field_logits if owner == "user" else self.item_field_logits
            if c.divide_and_conquer:  # one graph per field, a learned softmax over the fields
                wts, graphs = torch.softmax(logits, 0), tabs[owner]
            else:  # one joint graph, read at each field's value
                wts, graphs = x.new_full((len(cols),), 1.0 / len(cols)), [tabs[owner][0]] * len(cols)
            attr = sum(wts[f] * graphs[f][batch.cat[:, col]] for f, col in enumerate(cols.tolist()))
        mixed = 0.5 * (attr + collab)
        if c.combine == "gated":
            return x + self.gates[0 if owner == "user" else 1] * mixed
        return x + mixed if c.combine == "residual" else mixed

    def _enhance(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.steps += 1
            self._cache = None
        batch: Batch = inputs[0]
        out = output.clone()
        for owner, j in zip(("user", "item"), self.cols):
            out[:, j] = self.entity_vectors(batch, owner, output[:, j])
        return out

    def embedding_tables(self) -> list[torch.Tensor]:
        """The head's embedding tables (the trainer's L2 applies to them)."""
        return self.net.embedding_tables()

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.net(batch)


def dgenn_graphs(encoder: FeatureEncoder, config: DGENNConfig, train: Batch, valid: Batch, trainer) -> DGENNConfig:
    """The registry's ``prepare`` hook: the graphs from the training rows and the steps per epoch (for the
    curriculum); returns the config to build with."""
    out = config.model_copy(update={"steps_per_epoch": math.ceil(len(train) / trainer.batch_size)})
    out._graph = build_graph(encoder, train, config)
    return out


@register_model("dgenn", family="ctr", config=DGENNConfig, prepare=dgenn_graphs, onnx=False)
def build_dgenn(encoder: FeatureEncoder, config: DGENNConfig) -> DGENN:
    """DG-ENN: attribute + collaborative graphs refine user / item embeddings, DeepFM head."""
    model = DGENN(encoder, config, config._graph)
    model.config = type(config).model_validate(config.model_dump())  # what a reload rebuilds (graph: buffers)
    return model
