"""The row-wise optimizer step shared by every table that updates only the rows a batch touched
(``RowAdam`` in the trainer, the cached table, the quantized table): Adam, Adagrad or SGD on a block of rows,
its state kept per row so the caller decides where that state lives (a full table, a cache, evicted rows)."""
from __future__ import annotations

import torch

STATE_SLOTS = {"sgd": 0, "adagrad": 1, "adam": 2}  # state tensors per row each optimizer keeps


@torch.no_grad()
def row_step(state: torch.Tensor, rows: torch.Tensor, g: torch.Tensor, optimizer: str, t: int,
             betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> torch.Tensor:
    """Update ``state[:, rows]`` with the rows' gradient ``g`` and return the step direction (the caller
    subtracts lr times it): Adam's bias-corrected m / (sqrt(v) + eps) at global step ``t`` (as dense Adam, so
    a row touched every step moves exactly as under dense Adam), Adagrad's g / (sqrt(sum g^2) + 1e-10), or g."""
    if optimizer == "sgd":
        return g
    if optimizer == "adagrad":
        acc = state[0].index_select(0, rows).addcmul_(g, g)
        state[0].index_copy_(0, rows, acc)
        return g / (acc.sqrt() + 1e-10)
    b1, b2 = betas
    m = state[0].index_select(0, rows).mul_(b1).add_(g, alpha=1 - b1)
    v = state[1].index_select(0, rows).mul_(b2).addcmul_(g, g, value=1 - b2)
    state[0].index_copy_(0, rows, m)
    state[1].index_copy_(0, rows, v)
    return (m / (1 - b1 ** t)).div_(v.div(1 - b2 ** t).sqrt_().add_(eps))
