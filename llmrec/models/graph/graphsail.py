"""GraphSAIL (Xu et al., CIKM 2020): incremental training of a graph recommender by distilling the previous
model's graph structure into the one fine-tuned on a new block of interactions.

``GraphSAIL`` wraps the student (a ``GraphScorer``, e.g. LightGCN built on the graph up to the new block,
initialised from the teacher's weights) and adds to the BPR loss of every batch, over the batch's users and
items (reconstructed from the paper, papers.md §28):

- **local structure**: a node's affinity to the centroid of its neighbours, c_u = mean of the items u
  had in the teacher's graph (and c_i of the users of i), preserved: (<e_u^T, c_u^T> - <e_u^S, c_u^S>)^2.
  ``student_centres`` says whose neighbours c_u^S averages: the teacher's graph (``old``, the default) or the
  student's, the new block included (``new``); ``affinity: cosine`` compares the angles instead of the dot
  products (two readings of the paper's text, measured in ``graphsail_local``);
- **global structure**: each node's softmax similarity to K anchors (k-means centroids of the teacher's
  user / item vectors, temperature ``tau``) kept as the teacher's, KL(p^T || p^S);
- **self-embedding**: ||e^S - e^T||^2 weighted by the node's old degree over the mean degree (well-learned
  nodes move least).

Every term is averaged over the batch's nodes and weighted by ``local`` / ``global_`` / ``self_``; 0 turns a
term off (the ablations). Teacher vectors are fixed buffers; the student is what is saved and served."""
from __future__ import annotations

import numpy as np
import torch
from typing import Literal

from pydantic import Field
from torch import nn

from llmrec.config import StrictConfig
from llmrec.data.graph import InteractionGraph
from llmrec.data.views import PairBatch
from llmrec.models.graph.base import spmm, transpose_csr


class GraphSAILConfig(StrictConfig):
    """Weights of the three distillation terms, anchors and temperature of the global term. The default weights
    were chosen on validation (the block holdouts of ML-100K's time blocks, ``graphsail_ml100k`` and
    ``graphsail_local``): a local weight of 0.1 or more holds the student to its old affinities and costs
    next-block Recall."""
    local: float = Field(0.001, ge=0)
    global_: float = Field(0.1, ge=0, alias="global")
    self_: float = Field(0.1, ge=0, alias="self")
    anchors: int = Field(10, ge=1)
    tau: float = Field(1.0, gt=0)
    kmeans_iterations: int = Field(20, ge=1)
    student_centres: Literal["old", "new"] = "old"  # the student's c_u over the teacher's graph, or its own
    affinity: Literal["dot", "cosine"] = "dot"  # the local term's <e_u, c_u>: dot product or cosine

    model_config = {**StrictConfig.model_config, "populate_by_name": True}


def kmeans(x: torch.Tensor, k: int, iterations: int, seed: int = 0) -> torch.Tensor:
    """[k, d] centroids of the rows of ``x`` (Lloyd's algorithm from k distinct seeded rows)."""
    g = torch.Generator().manual_seed(seed)
    centres = x[torch.randperm(len(x), generator=g)[: min(k, len(x))]].clone()
    for _ in range(iterations):
        assign = torch.cdist(x, centres).argmin(1)
        for c in range(len(centres)):
            members = x[assign == c]
            if len(members):
                centres[c] = members.mean(0)
    return centres


class GraphSAIL(nn.Module):
    """The student with GraphSAIL's distillation added to its per-batch regularization."""
    def __init__(self, student: nn.Module, teacher: nn.Module, old_graph: InteractionGraph,
                 config: GraphSAILConfig, seed: int = 0, new_graph: InteractionGraph | None = None) -> None:
        super().__init__()
        self.student, self.c = student, config
        teacher.eval()
        with torch.no_grad():
            tu, ti = teacher.representations()
        self.register_buffer("t_user", tu.detach().clone())
        self.register_buffer("t_item", ti.detach().clone())
        if config.student_centres == "new" and new_graph is None:
            raise ValueError("graphsail.student_centres: new needs the student's graph (new_graph)")
        student_graph = new_graph if config.student_centres == "new" else old_graph
        self.u_mean, self.i_mean = student_graph.neighbours("user"), student_graph.neighbours("item")
        self.u_mean_t, self.i_mean_t = transpose_csr(self.u_mean), transpose_csr(self.i_mean)  # for spmm's backward
        with torch.no_grad():
            self.register_buffer("t_user_centre", torch.sparse.mm(old_graph.neighbours("user"), ti))  # c_u^T
            self.register_buffer("t_item_centre", torch.sparse.mm(old_graph.neighbours("item"), tu))  # c_i^T
        du, di = old_graph.degrees()
        self.register_buffer("w_user", torch.from_numpy(old_degree_weights(du)).float())
        self.register_buffer("w_item", torch.from_numpy(old_degree_weights(di)).float())
        self.register_buffer("a_user", kmeans(tu, config.anchors, config.kmeans_iterations, seed))
        self.register_buffer("a_item", kmeans(ti, config.anchors, config.kmeans_iterations, seed + 1))
        self.config = getattr(student, "config", None)

    def embedding_tables(self) -> list[torch.Tensor]:
        """The student's tables (the trainer's whole-table L2, when set)."""
        return self.student.embedding_tables()

    def forward(self, batch: PairBatch) -> torch.Tensor:
        """The student's scores; its vectors are kept for this step's distillation (one propagation a step)."""
        self._reps = self.student._final()
        return self.student.score(self._reps, batch)

    def full_scores(self, users: torch.Tensor) -> torch.Tensor:
        """The student's scores over every item."""
        return self.student.full_scores(users)

    def _global(self, s: torch.Tensor, t: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        p_t = torch.softmax(t @ anchors.T / self.c.tau, -1)
        log_p_s = torch.log_softmax(s @ anchors.T / self.c.tau, -1)
        return (p_t * (torch.log(p_t.clamp(min=1e-12)) - log_p_s)).sum(-1).mean()

    def _affinity(self, e: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.c.affinity == "cosine":
            return torch.nn.functional.cosine_similarity(e, c, dim=-1, eps=1e-8)
        return (e * c).sum(-1)

    def distillation(self, batch: PairBatch) -> dict[str, torch.Tensor]:
        """The three terms over the batch's unique users and items (unweighted)."""
        reps, self._reps = getattr(self, "_reps", None), None  # this step's vectors, used once
        su, si = reps if reps is not None else self.student._final()
        users = torch.unique(batch.users)
        items = torch.unique(batch.items.reshape(-1))
        out = {}
        if self.c.local > 0:
            cu = spmm(self.u_mean, si, self.u_mean_t)[users] if len(users) else su[:0]
            ci = spmm(self.i_mean, su, self.i_mean_t)[items]
            lu = (self._affinity(self.t_user[users], self.t_user_centre[users]) - self._affinity(su[users], cu)).pow(2)
            li = (self._affinity(self.t_item[items], self.t_item_centre[items]) - self._affinity(si[items], ci)).pow(2)
            out["local"] = torch.cat([lu, li]).mean()
        if self.c.global_ > 0:
            out["global"] = (self._global(su[users], self.t_user[users], self.a_user)
                             + self._global(si[items], self.t_item[items], self.a_item)) / 2
        if self.c.self_ > 0:
            du = (su[users] - self.t_user[users]).pow(2).sum(-1) * self.w_user[users]
            di = (si[items] - self.t_item[items]).pow(2).sum(-1) * self.w_item[items]
            out["self"] = torch.cat([du, di]).mean()
        return out

    def batch_regularization(self, batch: PairBatch) -> torch.Tensor | float:
        """The student's own L2 plus the weighted distillation terms."""
        own = self.student.batch_regularization(batch)
        terms = self.distillation(batch)
        weights = {"local": self.c.local, "global": self.c.global_, "self": self.c.self_}
        return own + sum(weights[k] * v for k, v in terms.items())


def old_degree_weights(degrees: np.ndarray) -> np.ndarray:
    """Degrees over their mean among nodes that have any (the self-embedding term's weights)."""
    return degrees / max(1e-12, degrees[degrees > 0].mean())
