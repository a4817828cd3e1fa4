"""Low-precision embedding training: LPT and ALPT (papers.md §13; Li et al., AAAI 2023), a table kind any
CTR model selects (``model.embedding_table: {kind: quantized, quant: {...}}``).

The table is *stored* as b-bit integers (``bits`` 8 / 4 / 2; held one per int8 here, counted packed in
``memory_bytes``) with a step size Delta per field (``step_granularity: field``) or per row (``row``); the
forward pass uses w = Delta * code. Per training step, for the distinct rows r of the batch:

1. the full-precision update is taken from this batch's gradient g (row-wise Adam / Adagrad / SGD, the state
   kept per row in fp32): w' = Delta_r code_r - lr * u(g);
2. w' is quantized again with Delta fixed: code_r = clip(R(w' / Delta_r), -2^(b-1), 2^(b-1) - 1), R
   stochastic rounding (floor(x) + Bernoulli(x - floor(x))) or deterministic rounding (``rounding``);
3. ALPT only (``learn_step``): Delta learns on the quantization objective with LSQ's gradient,
   dq/dDelta = round(x) - x inside the range and the clip bound outside (x = w' / Delta), times this batch's
   g (the gradient at the weights being quantized: one backward per step, where the paper alternates two
   passes), scaled by 1 / sqrt(n * Qp) (LSQ) and summed over the rows sharing a Delta; log Delta takes an
   Adam step with ``step_lr`` (so a step changes Delta by a bounded factor whatever its size) and Delta
   stays above ``min_step``.

LPT is the same with Delta fixed at its initial value ``init_range / Qp`` (``learn_step: false``).
The embedding L2 applies to the batch's distinct rows (``regularization()``, the trainer's batch scope).
Evaluation reads w = Delta * code without touching state."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from llmrec.config import StrictConfig
from llmrec.ctr.rowopt import STATE_SLOTS, row_step


class QuantConfig(StrictConfig):
    """Bits, rounding and step-size settings of a low-precision table (module docstring)."""
    bits: Literal[2, 4, 8] = 8
    rounding: Literal["stochastic", "deterministic"] = "stochastic"
    learn_step: bool = True  # ALPT; false: LPT with a fixed step
    step_granularity: Literal["field", "row"] = "field"
    init_range: float = Field(0.05, gt=0)  # initial Delta = init_range / Qp: codes cover [-init_range, init_range]
    step_lr: float | None = Field(None, gt=0)  # Adam learning rate of log Delta (None: the trainer's)
    min_step: float = Field(1e-6, gt=0)
    optimizer: Literal["adam", "adagrad", "sgd"] = "adam"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)


class QuantEmbedding(nn.Module):
    """A ``rows`` x ``dim`` table of b-bit codes with learnable (or fixed) step sizes; ``groups[row]`` is the
    step size a row uses (its field, or itself). Updates itself (``apply_gradients``)."""

    def __init__(self, rows: int, dim: int, config: QuantConfig, groups: torch.Tensor | None = None,
                 init_std: float = 1e-4) -> None:
        super().__init__()
        c = self.config = config
        self.rows, self.dim = rows, dim
        self.qn, self.qp = 2 ** (c.bits - 1), 2 ** (c.bits - 1) - 1
        if c.step_granularity == "row" or groups is None:
            groups = torch.arange(rows)
        if len(groups) != rows:
            raise ValueError(f"groups: {len(groups)} entries for {rows} rows")
        self.register_buffer("groups", groups.long())
        n_steps = int(groups.max()) + 1 if rows else 1
        self.register_buffer("step", torch.full((n_steps,), c.init_range / self.qp))
        init = torch.randn(rows, dim) * init_std
        self.register_buffer("codes", self._round(init / self.step[self.groups][:, None]).to(torch.int8))
        n_state = STATE_SLOTS[c.optimizer]
        self.register_buffer("state", torch.zeros(n_state, rows, dim))
        self.register_buffer("step_state", torch.zeros(2, n_steps))
        self.register_buffer("t", torch.zeros((), dtype=torch.long))
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def _round(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.rounding == "stochastic":
            x = torch.floor(x + torch.rand_like(x))
        else:
            x = torch.round(x)
        return x.clamp_(-self.qn, self.qp)

    def weights(self, rows: torch.Tensor) -> torch.Tensor:
        """De-quantized rows: Delta * code."""
        return self.codes[rows].float() * self.step[self.groups[rows]][:, None]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1)
        if not (self.training and torch.is_grad_enabled()):
            return self.weights(flat).view(*ids.shape, self.dim)
        uniq, inv = torch.unique(flat, return_inverse=True)
        w = self.weights(uniq).requires_grad_(True)
        self._batch = (uniq, w)
        return w[inv].view(*ids.shape, self.dim)

    def regularization(self) -> torch.Tensor | float:
        """Squared norm of the batch's distinct rows (the trainer adds lambda/2 times it)."""
        return self._batch[1].pow(2).sum() if self._batch is not None else 0.0

    def memory_bytes(self) -> dict[str, int]:
        """Packed code bytes (bits per value), step sizes, and the fp32 optimizer state."""
        return {"codes_packed": (self.rows * self.dim * self.config.bits + 7) // 8, "steps": 4 * self.step.numel(),
                "optimizer_state": 4 * self.state.numel()}

    @torch.no_grad()
    def apply_gradients(self, lr: float) -> None:
        """Full-precision update of the batch's rows, re-quantization, and (ALPT) the step-size update."""
        if self._batch is None:
            return
        rows, w = self._batch
        self._batch = None
        g = w.grad
        if g is None:
            return
        c = self.config
        self.t += 1
        t = int(self.t)
        u = row_step(self.state, rows, g, c.optimizer, t, c.betas, c.eps)
        grp = self.groups[rows]
        delta = self.step[grp][:, None]
        x = (w.detach() - lr * u) / delta
        self.codes[rows] = self._round(x.clone()).to(torch.int8)
        if c.learn_step:
            inside = (x > -self.qn) & (x < self.qp)
            dq = torch.where(inside, torch.round(x) - x, torch.where(x <= -self.qn, -float(self.qn), float(self.qp)))
            scale = 1.0 / (self.dim * self.qp) ** 0.5
            gs = torch.zeros_like(self.step).index_add_(0, grp, (g * dq).sum(1) * scale)
            touched = torch.unique(grp)
            gl = gs[touched] * self.step[touched]  # Adam on log Delta: scale-free steps
            b1, b2 = c.betas
            m = self.step_state[0, touched].mul_(b1).add_(gl, alpha=1 - b1)
            v = self.step_state[1, touched].mul_(b2).addcmul_(gl, gl, value=1 - b2)
            self.step_state[0, touched] = m
            self.step_state[1, touched] = v
            upd = (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + c.eps)
            self.step[touched] = (self.step[touched] * torch.exp(-(c.step_lr or lr) * upd)).clamp_(min=c.min_step)
