"""Optimizers for the training loop: BARS's fused Adam, and row-wise updates for embedding tables with
sparse gradients (``RowAdam``: Adam's exact update applied to the rows a batch touched, moments of the other
rows left as they are), a sparse-aware gradient clip and the batch-scope embedding L2.

Why our own ``RowAdam`` rather than ``torch.optim.SparseAdam``: SparseAdam adds epsilon to the
bias-uncorrected second moment (the paper's "efficient" form), so on small gradients (first-order tables)
its steps differ from dense Adam by up to 1/sqrt(1 - beta2) ~ 30x in the first steps; RowAdam's step
equals dense Adam's on every touched row (``tests/test_ctr_scale.py`` checks one step against it)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from llmrec.ctr.rowopt import row_step

if TYPE_CHECKING:
    from llmrec.train.loop import TrainerConfig


class RowAdam(torch.optim.Optimizer):
    """Lazy Adam over parameters with row-sparse gradients: per step, for the distinct rows r of the
    gradient, m_r, v_r and w_r get exactly dense Adam's update (bias corrections from the optimizer's global
    step, as TensorFlow's LazyAdam); untouched rows and their moments are not read or written."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
                 ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        """One update of the rows each parameter's sparse gradient names."""
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if not g.is_sparse:
                    raise RuntimeError("RowAdam: a dense gradient reached a sparse embedding table")
                st = self.state[p]
                if not st:
                    st["step"] = 0
                    st["moments"] = torch.zeros(2, *p.shape, dtype=p.dtype, device=p.device)
                st["step"] += 1
                g = g.coalesce()
                u = row_step(st["moments"], g._indices()[0], g._values(), "adam", st["step"], (b1, b2), group["eps"])
                p.index_add_(0, g._indices()[0], u, alpha=-group["lr"])
        return None


def param_groups(model: nn.Module) -> list[dict]:
    """Optimizer parameter groups: submodules that set a ``weight_decay`` attribute above 0 (the knowledge
    adaptor) get their own group with that decay; every other parameter is in the first group, without."""
    decayed: dict[float, list[nn.Parameter]] = {}
    seen: set[int] = set()
    for m in model.modules():
        wd = getattr(m, "weight_decay", 0.0)
        if isinstance(wd, float) and wd > 0:
            ps = [p for p in m.parameters() if id(p) not in seen]
            seen.update(id(p) for p in ps)
            decayed.setdefault(wd, []).extend(ps)
    rest = [p for p in model.parameters() if id(p) not in seen]
    groups = [{"params": rest, "weight_decay": 0.0}] + [{"params": ps, "weight_decay": wd}
                                                       for wd, ps in decayed.items()]
    return [g for g in groups if g["params"]]


class Optimizers:
    """Several optimizers stepped as one (dense Adam + a row-wise sparse one): ``param_groups`` lists every
    group, so lr decay reaches all; state dicts nest."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]) -> None:
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        """Every parameter group of every optimizer."""
        return [g for o in self.optimizers for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every gradient."""
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        """Step every optimizer."""
        for o in self.optimizers:
            o.step()

    def state_dict(self) -> dict:
        """The optimizers' states, in order."""
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict`` output."""
        if len(state.get("optimizers", [])) != len(self.optimizers):
            raise ValueError("optimizer state: a different number of optimizers")
        for o, sd in zip(self.optimizers, state["optimizers"]):
            o.load_state_dict(sd)


def sparse_tables(model: nn.Module, tables: list[torch.Tensor]) -> list[nn.Module]:
    """The id-looked-up modules (``nn.Embedding`` / ``nn.EmbeddingBag``) whose weight is one of ``tables``."""
    ids = {id(t) for t in tables}
    return [m for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and id(m.weight) in ids]


def self_updating(model: nn.Module) -> list[nn.Module]:
    """Modules that update their own parameters (``apply_gradients(lr)``, e.g. the cached table): the
    trainer calls them after backward instead of giving their parameters to an optimizer."""
    return [m for m in model.modules() if m is not model and hasattr(m, "apply_gradients")]


def make_optimizer(model: nn.Module, c: TrainerConfig, lookup: list[nn.Module], exclude: set[int] = frozenset()):
    """Fused Adam over the model (BARS); with sparse embedding updates the looked-up tables emit sparse
    gradients and get their own row-wise optimizer. Parameters in ``exclude`` (ids; self-updating tables)
    go to no optimizer."""
    lookup = [m for m in lookup if id(m.weight) not in exclude]
    sparse = {id(m.weight) for m in lookup} if c.embedding_update == "sparse" else set()
    for m in lookup:
        if c.embedding_update == "sparse":
            m.sparse = True
    groups = []
    for g in param_groups(model):
        # parameters a fused kernel updates in backward (TorchRec's sharded tables) go to no optimizer here
        ps = [p for p in g["params"] if id(p) not in sparse and id(p) not in exclude
              and not hasattr(p, "_in_backward_optimizers")]
        if ps:
            groups.append({**g, "params": ps})
    if c.embedding_update == "dense" or not lookup:
        return torch.optim.Adam(groups, lr=c.learning_rate, fused=True)
    rows = [m.weight for m in lookup]
    row_opt = (RowAdam(rows, lr=c.learning_rate) if c.sparse_optimizer == "adam"
               else torch.optim.Adagrad(rows, lr=c.learning_rate))
    return Optimizers([torch.optim.Adam(groups, lr=c.learning_rate, fused=True), row_opt] if groups else [row_opt])


def clip_grad_norm(params: list[nn.Parameter], max_norm: float) -> float:
    """``clip_grad_norm_`` that also takes row-sparse gradients (coalesced in place: duplicate rows summed
    before their norm is taken, as the dense gradient would have them)."""
    dense, norms = [], []
    for p in params:
        g = p.grad
        if g is None:
            continue
        if g.is_sparse:
            if not g.is_coalesced():
                p.grad = g = g.coalesce()
            norms.append(torch.linalg.vector_norm(g._values()))
        else:
            dense.append(g)
    if dense:
        norms.extend(torch._foreach_norm(dense))
    if not norms:
        return 0.0
    total = torch.linalg.vector_norm(torch.stack(norms))
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    if dense:
        torch._foreach_mul_(dense, scale)
    for p in params:
        if p.grad is not None and p.grad.is_sparse:
            p.grad._values().mul_(scale)
    return float(total)


class BatchL2:
    """Embedding L2 over the distinct rows each looked-up table read in the current batch (forward hooks
    record the ids): (lambda/2) sum ||E[rows]||^2, sparse gradients where the table is sparse."""

    def __init__(self, lookup: list[nn.Module]) -> None:
        self.seen: dict[int, list[torch.Tensor]] = {}
        self.modules = lookup
        self.handles = [m.register_forward_pre_hook(self._hook) for m in lookup]

    def _hook(self, module: nn.Module, args: tuple) -> None:
        if module.training and torch.is_grad_enabled():
            self.seen.setdefault(id(module), []).append(args[0].detach().reshape(-1))

    def penalty(self) -> torch.Tensor | float:
        """Sum of squared norms of the rows looked up since the last call (then forgets them)."""
        total: torch.Tensor | float = 0.0
        for m in self.modules:
            ids = self.seen.get(id(m))
            if ids:
                rows = torch.unique(torch.cat(ids))
                total = total + nn.functional.embedding(rows, m.weight, sparse=bool(m.sparse)).pow(2).sum()
        self.seen.clear()
        return total

    def remove(self) -> None:
        """Remove the hooks."""
        for h in self.handles:
            h.remove()

