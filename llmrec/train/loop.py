"""The one training loop, for every model family; what is trained on comes from the task
(``llmrec.train.tasks``), so CTR, BPR and next-item models share resume, DDP, bf16, early stopping,
checkpoints and progress.

BARS/FuxiCTR semantics: Adam; whole-table L2 on the model's ``embedding_tables()`` every step
((lambda/2)*||E||^2 added to the mean loss); gradient-norm clip 10; evaluation on validation once per epoch;
learning rate x0.1 after every epoch that does not improve the task's primary metric (min 1e-6); early stop
after ``patience`` such epochs, never before ``min_epochs``; the best-on-validation weights are restored
before the test set is evaluated once. With ``stop_window`` > 1 "improve" is judged on the mean of the last
``stop_window`` epochs' metric (for curves that rise slowly through noise), selection still on single
epochs. A module of the model with an ``auxiliary_loss()`` method (a field gate's penalty, an auxiliary
self-supervised loss) has it added to every step's loss, after its forward.

Resumable: with ``checkpoint_dir`` the full state (weights, optimizer, best weights, history, RNGs) is
written atomically after every epoch, and ``fit`` continues from it after a kill, giving the same result as
an uninterrupted run. Distributed: inside an initialized ``torch.distributed`` process group (e.g. under
``torchrun``) the model is wrapped in DDP and each rank trains on its slice of every global batch, so
results match single-process training at the same global batch size."""
from __future__ import annotations

import contextlib
import copy
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from pydantic import Field, model_validator

from llmrec.config import StrictConfig
from llmrec.ctr.torchrec_table import is_sharded
from llmrec.errors import ConfigError, DataError
from llmrec.io import load_checkpoint, save_checkpoint
from llmrec.train.optim import BatchL2, clip_grad_norm, make_optimizer, self_updating, sparse_tables
from llmrec.train.sam import SAMConfig, SharpnessStep
from llmrec.train.tasks import PointwiseTask, Task


class TrainerConfig(StrictConfig):
    """Training settings (BARS semantics): batch size, learning rate, embedding L2, epochs, patience, lr decay,
    precision, device, checkpointing."""
    batch_size: int = Field(1024, ge=1)  # global batch (split across ranks when distributed)
    learning_rate: float = Field(1e-3, gt=0, allow_inf_nan=False)
    embedding_l2: float = Field(0.01, ge=0, allow_inf_nan=False)
    epochs: int = Field(20, ge=1)
    patience: int = Field(2, ge=0)
    min_epochs: int = Field(0, ge=0)  # early stopping cannot end training before this many epochs
    # early stopping and lr decay judge the mean of the primary validation metric over the last N epochs (no
    # verdict before N epochs); 1: each epoch's own value (BARS, RecBole). Model selection always keeps the
    # best single epoch. A window lets a slowly rising, noisy curve (LightGCN at lr 1e-3) pass its plateaus
    stop_window: int = Field(1, ge=1)
    min_delta: float = Field(1e-6, ge=0, allow_inf_nan=False)
    min_lr: float = Field(1e-6, ge=0, allow_inf_nan=False)
    lr_decay: float = Field(0.1, gt=0, le=1, allow_inf_nan=False)  # lr factor after an epoch without gain (1: none)
    grad_clip: float = Field(10.0, gt=0, allow_inf_nan=False)
    seed: int = 2021
    eval_batch_size: int = Field(8192, ge=1)
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast matmuls (CPU AVX-512 BF16 / GPU)
    device: str = "cpu"
    progress: bool = True
    # sparse: id-looked-up tables (nn.Embedding / EmbeddingBag among the model's embedding_tables()) get
    # row-sparse gradients and a row-wise optimizer (only the batch's rows and their moments are touched);
    # dense: one Adam over everything (BARS)
    embedding_update: Literal["dense", "sparse"] = "dense"
    sparse_optimizer: Literal["adam", "adagrad"] = "adam"  # sparse: RowAdam (lazy, exact Adam rows) or Adagrad
    # table: (lambda/2)||E||^2 over whole tables every step (BARS); batch: over the distinct rows the batch
    # looked up (tables not looked up by id, e.g. numerical vectors, keep the whole-table term)
    embedding_l2_scope: Literal["table", "batch"] = "table"
    checkpoint_every_shards: int = Field(1, ge=1)  # streamed data: checkpoint after every N finished shards
    # SAM / Helen (llmrec.train.sam): two passes per step, the second gradient at w + e drives Adam
    sharpness: SAMConfig | None = None

    @model_validator(mode="after")
    def _sparse_needs_batch_l2(self) -> "TrainerConfig":
        if self.sharpness is not None and self.embedding_update == "sparse":
            raise ValueError("sharpness: SAM / Helen perturb by whole-table gradient norms; use "
                             "embedding_update: dense")
        if self.embedding_update == "sparse" and self.embedding_l2 > 0 and self.embedding_l2_scope == "table":
            raise ValueError("embedding_l2_scope: 'table' L2 makes every row's gradient dense; sparse "
                             "embedding updates need 'batch' (or embedding_l2: 0)")
        return self


@dataclass
class FitResult:
    """What training returns: best epoch, validation history, test metrics and throughput."""
    best_epoch: int
    best_valid: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    samples_per_second: float = 0.0
    resumed_from_epoch: int = 0


def _lookahead(batches, on: bool):
    """(batch, next batch or None) pairs; without ``on``, next is always None and nothing is read ahead."""
    if not on:
        for b in batches:
            yield b, None
        return
    it = iter(batches)
    cur = next(it, None)
    while cur is not None:
        nxt = next(it, None)
        yield cur, nxt
        cur = nxt


def _early_stop(c: TrainerConfig, state: dict) -> bool:
    """``patience`` epochs without gain, and at least ``min_epochs`` done."""
    return state["bad"] >= c.patience and state["epoch"] >= c.min_epochs


def stopping_score(curve: list[float] | np.ndarray, window: int) -> float | None:
    """What early stopping judges after the last epoch of ``curve`` (the primary validation metric per epoch):
    the mean of its last ``window`` values, or None while fewer than ``window`` epochs are done."""
    if len(curve) < window:
        return None
    return float(np.mean(curve[-window:]))


def stopping_step(curve: list[float] | np.ndarray, stop_best: float, c: TrainerConfig) -> tuple[float, bool | None]:
    """Early stopping's verdict on the last epoch of ``curve``: (the best judged score so far, whether this
    epoch gained on it; None while the window is not full)."""
    judged = stopping_score(curve, c.stop_window)
    if judged is None:
        return stop_best, None
    if judged > stop_best + c.min_delta:
        return judged, True
    return stop_best, False


def stop_epoch(curve: list[float] | np.ndarray, c: TrainerConfig) -> int:
    """The epoch after which ``Trainer.fit`` with config ``c`` stops on this validation curve (its length if
    it never does): replays a recorded curve under another rule."""
    best, bad, curve = -float("inf"), 0, np.asarray(curve, dtype=np.float64)
    for t in range(1, len(curve) + 1):
        best, gained = stopping_step(curve[:t], best, c)  # a view, not a copy
        if gained is not None:
            bad = 0 if gained else bad + 1
        if bad >= c.patience and t >= c.min_epochs:
            return t
    return len(curve)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Trainer:
    """The one training loop for every family: early stopping on the task's primary metric, best weights
    restored, resume after a kill, DDP."""
    def __init__(self, config: TrainerConfig | None = None, task: Task | None = None) -> None:
        self.config = config or TrainerConfig()
        self.task = task or PointwiseTask()

    # the EvalContext the tasks read
    @property
    def eval_batch_size(self) -> int:
        """Batch size for evaluation."""
        return self.config.eval_batch_size

    @property
    def device(self) -> str:
        """The device training runs on."""
        return self.config.device

    def autocast(self):
        if self.config.precision == "bf16":
            dev = "cuda" if str(self.config.device).startswith("cuda") else "cpu"
            return torch.autocast(dev, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def predict(self, model: nn.Module, data: Any) -> np.ndarray:
        """The model's predictions on ``data`` (the task's predict)."""
        if not hasattr(self.task, "predict"):
            raise ConfigError(f"task {self.task.name!r} has no pointwise predictions")
        return self.task.predict(model, data, self)

    def evaluate(self, model: nn.Module, data: Any, groups: np.ndarray | None = None) -> dict[str, float]:
        return self.task.evaluate(model, data, self, groups=groups)

    def fit(self, model: nn.Module, train: Any, valid: Any, checkpoint_dir: str | Path | None = None) -> FitResult:
        """Train ``model`` with early stopping (resuming from ``checkpoint_dir`` if a checkpoint is there);
        returns the fit result."""
        c, task = self.config, self.task
        if getattr(train, "label", True) is None or getattr(valid, "label", True) is None:
            raise DataError("train.label / valid.label: training needs labels")
        rank, size = world()
        if c.batch_size % size:
            raise ConfigError(f"trainer.batch_size: {c.batch_size} is not divisible by the world size {size}")
        seed_everything(c.seed)
        model.to(c.device)
        sharded = is_sharded(model)  # TorchRec DMP: fused embedding updates, its own data parallelism
        if sharded and checkpoint_dir:
            raise ConfigError("checkpoint_dir: a TorchRec-sharded model is not checkpointed by this trainer "
                              "(its tables are sharded across ranks)")
        inner = model.module if sharded else model
        tables = inner.embedding_tables() if hasattr(inner, "embedding_tables") else []
        lookup = sparse_tables(model, tables) if (c.embedding_update == "sparse" or
                                                  c.embedding_l2_scope == "batch") else []
        owners = self_updating(model)
        owned = {id(p) for m in owners for p in m.parameters()}
        if c.embedding_update == "sparse" and not lookup and not owners:
            raise ConfigError("trainer.embedding_update: 'sparse' needs a model whose embedding_tables() are "
                              "nn.Embedding / nn.EmbeddingBag weights")
        if owners and c.embedding_l2 > 0 and c.embedding_l2_scope == "table":
            raise ConfigError("trainer.embedding_l2_scope: a self-updating table (the cached table) holds only "
                              "its hot rows; use 'batch' (or embedding_l2: 0)")
        if c.sharpness is not None and (owners or sharded):
            raise ConfigError("trainer.sharpness: SAM / Helen need the model's tables as plain parameters "
                              "(not a cached, quantized or TorchRec-sharded table)")
        sharp = SharpnessStep(inner, c.sharpness) if c.sharpness is not None else None
        prefetchers = [m for m in model.modules() if hasattr(m, "prefetch_batch") and getattr(m, "prefetches", True)]
        auxiliary = [m for m in model.modules() if hasattr(m, "auxiliary_loss")]
        # fused Adam: one kernel over all parameters instead of a Python loop of small ops
        opt = make_optimizer(model, c, lookup, owned)
        batch_l2 = BatchL2(lookup) if c.embedding_l2 > 0 and c.embedding_l2_scope == "batch" else None
        whole = [t for t in tables if batch_l2 is None or all(t is not m.weight for m in lookup)]
        net = nn.parallel.DistributedDataParallel(model) if size > 1 and not sharded else model
        gen = torch.Generator().manual_seed(c.seed)
        state = {"epoch": 0, "best": -float("inf"), "best_state": None, "best_epoch": -1, "bad": 0, "history": [],
                 "train_seconds": 0.0, "seen": 0, "shard": 0, "total": 0.0, "stop_best": -float("inf")}
        ckpt = Path(checkpoint_dir) / "trainer_state.pt" if checkpoint_dir else None
        resumed = 0
        if ckpt is not None:
            saved = load_checkpoint(ckpt, model, opt, gen)
            if saved is not None:
                # a checkpoint from before stop_window judged single epochs: its best is the stopping best
                state, resumed = {"shard": 0, "total": 0.0, "stop_best": saved["best"], **saved}, saved["epoch"]
        n = len(train)
        local = c.batch_size // size
        streamed = hasattr(train, "shard_batches")
        stop = _early_stop(c, state)

        def local_slice(mb):
            return mb.slice(torch.arange(rank * local, min(len(mb), (rank + 1) * local))) if size > 1 else mb

        def step(mb, nxt=None) -> None:
            full = len(mb)
            mb = local_slice(mb).to(c.device)
            for m in prefetchers:
                m.prefetch_batch(None if nxt is None else local_slice(nxt))
            def objective() -> torch.Tensor:
                with self.autocast():
                    rows = task.row_loss(net, mb)
                # sum over this rank's rows / global batch rows: DDP's gradient averaging x world restores the
                # global mean, so every rank (and a single process) optimizes the same objective
                loss = rows.sum() * size / full if size > 1 else rows.mean()
                if c.embedding_l2 > 0:
                    if whole:
                        loss = loss + (c.embedding_l2 / 2) * sum(t.pow(2).sum() for t in whole)
                    if batch_l2 is not None:
                        loss = loss + (c.embedding_l2 / 2) * batch_l2.penalty()
                    if c.embedding_l2_scope == "batch":  # self-updating tables that regularize their batch rows
                        for m in owners:
                            if hasattr(m, "regularization"):
                                loss = loss + (c.embedding_l2 / 2) * m.regularization()
                for m in auxiliary:  # modules with a loss of their own from this forward (gates, MISS)
                    loss = loss + m.auxiliary_loss()
                return loss

            loss = objective()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if sharp is not None:  # second pass at w + e; Adam then steps with that gradient from w
                moved = sharp.ascend(mb)
                opt.zero_grad(set_to_none=True)
                objective().backward()
                sharp.restore(moved)
            if c.grad_clip:
                if c.embedding_update == "sparse" or owners:
                    clip_grad_norm(list(model.parameters()), c.grad_clip)
                else:
                    nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip, foreach=True)
            try:
                opt.step()
            except RuntimeError as e:
                if "sparse" in str(e).lower():
                    raise ConfigError(f"trainer.embedding_update: 'sparse' failed: the model reads an embedding "
                                      f"table densely ({e})") from None
                raise
            for m in owners:
                m.apply_gradients(opt.param_groups[0]["lr"] if opt.param_groups else c.learning_rate)
            state["total"] += float(loss.detach()) * len(mb)

        for epoch in range(state["epoch"], c.epochs):
            if stop:
                break
            net.train()
            t0 = time.perf_counter()
            if streamed:
                bar = tqdm(total=n, desc=f"epoch {epoch + 1}", disable=not c.progress or rank, leave=False,
                           unit="rows", unit_scale=True)
                for s in range(state["shard"], train.n_shards):
                    for mb, nxt in _lookahead(train.shard_batches(s, c.batch_size, gen), bool(prefetchers)):
                        step(mb, nxt)
                        bar.update(len(mb))
                    state["shard"] = s + 1
                    if ckpt is not None and rank == 0 and state["shard"] < train.n_shards and \
                            state["shard"] % c.checkpoint_every_shards == 0:
                        state["train_seconds"] += time.perf_counter() - t0
                        t0 = time.perf_counter()
                        save_checkpoint(ckpt, model, opt, state, gen)
                bar.close()
            else:
                perm = torch.randperm(n, generator=gen)
                starts = tqdm(range(0, n, c.batch_size), desc=f"epoch {epoch + 1}", disable=not c.progress or rank,
                              leave=False)
                # sampled on the global batch: same on every rank
                batches = (task.make_batch(train, perm[i: i + c.batch_size], gen) for i in starts)
                for mb, nxt in _lookahead(batches, bool(prefetchers)):
                    step(mb, nxt)
            state["train_seconds"] += time.perf_counter() - t0
            state["seen"] += n
            metrics = self.evaluate(model, valid)
            lr = opt.param_groups[0]["lr"]
            state["history"].append({"epoch": epoch + 1, "train_loss": state["total"] / max(1, n // size), "lr": lr,
                                     **{f"valid_{k}": v for k, v in metrics.items()}})
            state["total"], state["shard"] = 0.0, 0
            if metrics[task.primary] > state["best"] + c.min_delta:  # model selection: the best single epoch
                state.update(best=metrics[task.primary], best_epoch=epoch + 1,
                             best_state=copy.deepcopy(model.state_dict()))
            state["stop_best"], gained = stopping_step([h[f"valid_{task.primary}"] for h in state["history"]],
                                                       state["stop_best"], c)
            if gained:
                state["bad"] = 0
            elif gained is not None:  # an epoch without gain: towards early stopping, lr decayed
                state["bad"] += 1
                for g in opt.param_groups:
                    g["lr"] = max(min(c.min_lr, g["lr"]), g["lr"] * c.lr_decay)
            state["epoch"] = epoch + 1
            stop = _early_stop(c, state)
            if ckpt is not None and rank == 0:
                save_checkpoint(ckpt, model, opt, state, gen)
        if batch_l2 is not None:
            batch_l2.remove()
        if state["best_state"] is not None:
            model.load_state_dict(state["best_state"])
        best = next(h for h in state["history"] if h["epoch"] == state["best_epoch"])
        t = state["train_seconds"]
        return FitResult(
            best_epoch=state["best_epoch"],
            best_valid={k[len("valid_"):]: v for k, v in best.items() if k.startswith("valid_")},
            history=state["history"], train_seconds=t, samples_per_second=state["seen"] / t if t else 0.0,
            resumed_from_epoch=resumed,
        )
