"""What graph models share: a sparse matmul whose backward reuses a stored transpose, ego (id) embeddings,
scoring by inner products of final user / item vectors, an evaluation cache, and RecBole's per-batch L2.

``spmm(a, x, at)``: ``torch.sparse.mm`` over a CSR matrix is fast forward, but its autograd backward builds
the transpose on every call; the graph's adjacencies are fixed, so the backward multiplies by a transpose
built once (the same matrix for the symmetric adjacencies). On MovieLens-100K's graph (2.6k nodes, 162k
stored entries, width 64) a two-layer propagation forward + backward takes ~6 ms instead of ~45-50 ms with
torch's own CSR or COO backward (measured on one core; ``eval/graph_benchmark.py`` times whole epochs)."""
from __future__ import annotations

import warnings

import torch
from torch import nn

from llmrec.data.views import ItemSpace, PairBatch
from llmrec.errors import ConfigError


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, at: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.at = at
        return torch.sparse.mm(a, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, None, torch.sparse.mm(ctx.at, grad)


def spmm(a: torch.Tensor, x: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ x`` for a fixed sparse ``a`` (gradient to ``x`` only); ``at`` = its transpose (None: ``a`` is
    symmetric)."""
    return _SpMM.apply(a, a if at is None else at, x)


def layer_mean(adj: torch.Tensor, x: torch.Tensor, n_layers: int) -> torch.Tensor:
    """LightGCN's propagation: the mean of x, Ax, ..., A^L x for a fixed symmetric ``adj``."""
    out = [x]
    for _ in range(n_layers):
        x = spmm(adj, x)
        out.append(x)
    return torch.stack(out).mean(0)


def transpose_csr(a: torch.Tensor) -> torch.Tensor:
    """The transpose of a CSR matrix, as CSR (built once per fixed matrix, for ``spmm``'s backward)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # CSR "beta" notice
        return a.to_sparse_coo().t().coalesce().to_sparse_csr()


def xavier_init(module: nn.Module) -> None:
    """Xavier-uniform weights for every Linear and Embedding, zero biases (RecBole's graph models' init)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.xavier_uniform_(m.weight)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


def graph_of(space: ItemSpace):
    """The training graph a graph model is built on (a named error when the space carries none)."""
    if space.graph is None:
        raise ConfigError("model: graph models need the interaction graph (build the space with interaction_view)")
    return space.graph


class GraphScorer(nn.Module):
    """Base of graph models: ``representations()`` -> final user [U, d] and item [I, d] vectors; a pair scores
    their inner product. While the model is in eval mode the vectors are computed once per weight version
    (``full_scores`` for a thousand users does not propagate a thousand times). ``reg_weight`` > 0 adds
    RecBole's EmbLoss on the batch's ego embeddings (with ``require_pow`` False: the sum of the three batch
    matrices' L2 norms over the batch size; True: squared norms / 2 over the batch size)."""
    reg_weight: float = 0.0
    require_pow: bool = False

    def __init__(self, space: ItemSpace, dim: int) -> None:
        super().__init__()
        self.n_users, self.n_items = max(1, space.n_users), space.n_items
        self.user = nn.Embedding(self.n_users, dim)
        self.item = nn.Embedding(self.n_items, dim)
        self._cached: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None
        self._moved: dict[tuple[int, str], torch.Tensor] = {}

    def on_device(self, matrix: torch.Tensor) -> torch.Tensor:
        """A fixed (graph) matrix on the device of the model's weights, moved once."""
        device = self.user.weight.device
        if matrix.device == device:
            return matrix
        key = (id(matrix), str(device))
        if key not in self._moved:
            self._moved[key] = matrix.to(device)
        return self._moved[key]

    def embedding_tables(self) -> list[torch.Tensor]:
        """The embedding tables the trainer's whole-table L2 applies to (when it is set)."""
        return [self.user.weight, self.item.weight]

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user and item vectors (subclasses propagate)."""
        return self.user.weight, self.item.weight

    def _final(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            self._cached = None
            return self.representations()
        key = tuple(p._version for p in self.parameters())
        if self._cached is None or self._cached[0] != key:
            with torch.no_grad():
                self._cached = (key, self.representations())
        return self._cached[1]

    def forward(self, batch: PairBatch) -> torch.Tensor:
        """Scores of ``batch.items`` ([B] or [B, C]) for ``batch.users``."""
        return self.score(self._final(), batch)

    def score(self, reps: tuple[torch.Tensor, torch.Tensor], batch: PairBatch) -> torch.Tensor:
        """Scores of ``batch`` from given final (user, item) vectors (a wrapper that needs the vectors too
        computes them once per step)."""
        users, items = reps
        # F.embedding: its backward is ~2x cheaper than advanced indexing's on CPU
        u, v = nn.functional.embedding(batch.users, users), nn.functional.embedding(batch.items, items)
        return (u * v).sum(-1) if v.ndim == 2 else (u.unsqueeze(1) * v).sum(-1)

    def full_scores(self, users: torch.Tensor) -> torch.Tensor:
        """[U, n_items] scores over every item (column 0 is padding)."""
        u, i = self._final()
        return u[users] @ i.T

    def batch_regularization(self, batch: PairBatch) -> torch.Tensor | float:
        """RecBole's ``reg_weight`` x EmbLoss over the batch's ego embeddings (users, positives, negatives)."""
        if self.reg_weight <= 0:
            return 0.0
        embs = [self.user(batch.users), self.item(batch.items[:, 0]), self.item(batch.items[:, 1:])]
        if self.require_pow:
            total = sum(e.pow(2).sum() for e in embs) / 2
        else:
            total = sum(torch.linalg.vector_norm(e) for e in embs)
        return self.reg_weight * total / len(batch)
