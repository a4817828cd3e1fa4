"""Sharpness-aware steps for the training loop: plain SAM (Foret et al., ICLR 2021) and Helen (Zhu et al.,
WWW 2024; papers.md §14), both over the loop's Adam, and the top Hessian eigenvalue as a diagnostic.

Each step takes two forward / backward passes. After the first backward, every parameter moves by a
perturbation e (ascent), the gradient is taken again at w + e, w is restored, and Adam steps with that
second gradient.

- SAM: e = rho g / ||g|| with ||g|| the norm of the whole gradient.
- Helen: frequent features sit in sharper minima (their embedding's top Hessian eigenvalue grows with their
  frequency), so each categorical embedding row k is perturbed in proportion to how often it occurs in the
  batch: e_k = rho g_k / ||g_field|| * s_k, s_k = max(N_k / max_{j in field} N_j, xi), with N_k the row's
  occurrences in the batch and ||g_field|| the gradient norm of the row's field (the authors' per-field
  tables; ours share one table, so rows are grouped by field). The other (dense) parameters are not
  perturbed and Adam steps them with the FIRST pass's gradient (the authors' ``optim/Helen.py`` with
  ``net_pert: False``, the setting of their released configs ``conf/optim/Helen.yaml``); with ``net_pert``
  they get SAM's e = rho g / ||g_net|| and step with the second pass's gradient like the tables. (Their
  class's ``net_pert=True`` path divides by the norm of the last embedding table's gradient, a variable
  reused inside their loop; docs/methods/helen.md compares the three.)

``top_eigenvalue``: the largest eigenvalue of the loss's Hessian restricted to some rows of a parameter
(e.g. the embedding of the most frequent feature), by power iteration on Hessian-vector products."""
from __future__ import annotations

from typing import Callable, Literal

import torch
from pydantic import Field
from torch import nn

from llmrec.config import StrictConfig
from llmrec.ctr.features import Batch
from llmrec.ctr.layers import FieldEmbedding


class SAMConfig(StrictConfig):
    """Which sharpness-aware step and its radius: ``sam`` or ``helen`` (frequency-scaled embedding rows)."""
    kind: Literal["sam", "helen"] = "helen"
    rho: float = Field(0.05, gt=0)
    xi: float = Field(0.3, ge=0, le=1)  # helen: the smallest row scale
    # helen: perturb the dense parameters too (SAM's way); False = the authors' released setting: dense
    # parameters unperturbed, stepped with the first pass's gradient
    net_pert: bool = False


class SharpnessStep:
    """The ascent and restore of one SAM / Helen step over ``model``'s parameters."""

    def __init__(self, model: nn.Module, config: SAMConfig) -> None:
        self.config = config
        self.params = [p for p in model.parameters() if p.requires_grad]
        # helen: the categorical tables of the model's field embeddings, with their field boundaries
        self.tables: list[tuple[nn.Parameter, torch.Tensor]] = []
        if config.kind == "helen":
            for m in model.modules():
                if (isinstance(m, FieldEmbedding) and isinstance(m.table, nn.Embedding) and len(m.field_starts) > 1
                        and m.table.weight.requires_grad):
                    self.tables.append((m.table.weight, m.field_starts))

    @torch.no_grad()
    def ascend(self, batch: Batch) -> list[tuple[nn.Parameter, torch.Tensor, bool]]:
        """Move every parameter by its perturbation (from the gradients now in ``.grad``); returns the
        parameters with their values before (restored exactly: w + e - e is not always w in floating point),
        or, for Helen's unperturbed dense parameters, their first-pass gradients (flag True)."""
        c, moved = self.config, []
        table_ids = {id(w) for w, _ in self.tables}
        rest = [p for p in self.params if p.grad is not None and id(p) not in table_ids]
        if c.kind == "helen" and not c.net_pert:
            moved.extend((p, p.grad.detach().clone(), True) for p in rest)
        if c.kind == "sam" or c.net_pert:
            grads = [p.grad for p in (rest if c.kind == "helen" else self.params) if p.grad is not None]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) if grads else 0
            for p in (rest if c.kind == "helen" else [q for q in self.params if q.grad is not None]):
                moved.append((p, p.detach().clone(), False))
                p.add_(p.grad * (c.rho / (norm + 1e-12)))
        if self.tables:
            ids = batch.cat.reshape(-1)
            for w, starts in self.tables:
                if w.grad is None:
                    continue
                n_rows = w.shape[0]
                counts = torch.bincount(ids, minlength=n_rows).to(w.dtype)
                field = torch.bucketize(torch.arange(n_rows, device=w.device), starts[1:], right=True)
                n_fields = len(starts) - 1
                top = torch.zeros(n_fields, dtype=w.dtype, device=w.device).scatter_reduce_(
                    0, field, counts, "amax", include_self=True)
                scale = (counts / top[field].clamp(min=1)).clamp(min=c.xi)
                g2 = torch.zeros(n_fields, dtype=w.dtype, device=w.device).index_add_(0, field, w.grad.pow(2).sum(1))
                moved.append((w, w.detach().clone(), False))
                w.add_(w.grad * (c.rho * scale / (g2.sqrt()[field] + 1e-12)).unsqueeze(1))
        return moved

    @staticmethod
    @torch.no_grad()
    def restore(moved: list[tuple[nn.Parameter, torch.Tensor, bool]]) -> None:
        """Undo ``ascend`` after the second backward: perturbed parameters get their values back; kept
        first-pass gradients replace the second pass's."""
        for p, before, is_grad in moved:
            if is_grad:
                p.grad = before
            else:
                p.copy_(before)


def top_eigenvalue(loss_fn: Callable[[], torch.Tensor], param: nn.Parameter, rows: torch.Tensor,
                   iters: int = 30, seed: int = 0) -> float:
    """The largest-magnitude eigenvalue of d^2 loss / d param[rows]^2 by power iteration (Hessian-vector
    products through autograd; ``loss_fn`` recomputes the loss, e.g. on a fixed batch)."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn((len(rows), param.shape[1]), generator=g).to(param)
    v /= v.norm()
    lam = 0.0
    for _ in range(iters):
        grad = torch.autograd.grad(loss_fn(), param, create_graph=True)[0][rows]
        hv = torch.autograd.grad((grad * v).sum(), param)[0][rows]
        lam = float((hv * v).sum())
        norm = hv.norm()
        if norm == 0:
            return 0.0
        v = hv / norm
    return lam


def frequent_feature_eigenvalue(model: nn.Module, row_loss: Callable[[nn.Module, Batch], torch.Tensor],
                                batch: Batch, iters: int = 30) -> dict[str, float | int]:
    """Helen's diagnostic: the top Hessian eigenvalue of the mean loss on ``batch`` (dropout off) with
    respect to the embedding row of the batch's most frequent categorical value, in the model's main
    field embedding (``model.embedding``)."""
    emb = getattr(model, "embedding", None)
    if not isinstance(emb, FieldEmbedding) or not isinstance(emb.table, nn.Embedding) or not batch.cat.numel():
        raise ValueError("frequent_feature_eigenvalue: the model has no dense categorical field embedding")
    counts = torch.bincount(batch.cat.reshape(-1))
    row = int(counts.argmax())
    was = model.training
    model.eval()
    try:
        lam = top_eigenvalue(lambda: row_loss(model, batch).mean(), emb.table.weight, torch.tensor([row]), iters)
    finally:
        model.train(was)
    return {"top_eigenvalue": lam, "row": row, "row_share": float(counts[row]) / len(batch)}
