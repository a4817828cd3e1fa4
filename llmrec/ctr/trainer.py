"""The one CTR trainer, with BARS/FuxiCTR semantics.

Adam; whole-table L2 on embeddings every step ((lambda/2)*||E||^2 added to the mean BCE); gradient-norm
clip 10; validation AUC once per epoch; learning rate x0.1 after every non-improving epoch (min 1e-6);
early stop after ``patience`` non-improving epochs; the best-on-validation weights are restored before
the test set is evaluated once.

Resumable: with ``checkpoint_dir`` the full state (weights, optimizer, best weights, history, RNG) is
written atomically after every epoch, and ``fit`` continues from it after a kill, giving the same result
as an uninterrupted run. Distributed: inside an initialized ``torch.distributed`` process group (e.g.
under ``torchrun``) the model is wrapped in DDP and each rank trains on its slice of every global batch,
so results match single-process training at the same global batch size."""
from __future__ import annotations

import contextlib
import copy
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from llmrec.config import StrictConfig
from llmrec.ctr.features import Batch
from llmrec.ctr.metrics import auc, group_auc, logloss
from llmrec.io import torch_save_atomic


class TrainerConfig(StrictConfig):
    batch_size: int = 1024  # global batch (split across ranks when distributed)
    learning_rate: float = 1e-3
    embedding_l2: float = 0.01
    epochs: int = 20
    patience: int = 2
    min_delta: float = 1e-6
    min_lr: float = 1e-6
    grad_clip: float = 10.0
    seed: int = 2021
    eval_batch_size: int = 8192
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast matmuls (CPU AVX-512 BF16 / GPU)
    device: str = "cpu"
    progress: bool = True


@dataclass
class FitResult:
    best_epoch: int
    best_valid: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    samples_per_second: float = 0.0
    resumed_from_epoch: int = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Trainer:
    def __init__(self, config: TrainerConfig | None = None) -> None:
        self.config = config or TrainerConfig()

    def _autocast(self):
        if self.config.precision == "bf16":
            dev = "cuda" if str(self.config.device).startswith("cuda") else "cpu"
            return torch.autocast(dev, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.no_grad()
    def predict(self, model: nn.Module, data: Batch) -> np.ndarray:
        model.eval()
        n, bs = len(data), self.config.eval_batch_size
        out = []
        for i in range(0, n, bs):
            with self._autocast():
                out.append(torch.sigmoid(model(data.slice(torch.arange(i, min(n, i + bs))).to(self.config.device)).float()))
        return torch.cat(out).cpu().numpy() if out else np.zeros(0, np.float32)

    def evaluate(self, model: nn.Module, data: Batch, groups: np.ndarray | None = None) -> dict[str, float]:
        if data.label is None:
            raise ValueError("data.label: evaluation needs labels")
        p = self.predict(model, data)
        y = data.label.numpy()
        res = {"auc": auc(y, p), "logloss": logloss(y, p)}
        if groups is not None:
            res["gauc"] = group_auc(y, p, groups)
        return res

    def fit(self, model: nn.Module, train: Batch, valid: Batch, checkpoint_dir: str | Path | None = None) -> FitResult:
        c = self.config
        if train.label is None or valid.label is None:
            raise ValueError("train.label / valid.label: training needs labels")
        rank, world = _world()
        if c.batch_size % world:
            raise ValueError(f"batch_size: {c.batch_size} is not divisible by the world size {world}")
        seed_everything(c.seed)
        model.to(c.device)
        # fused Adam: one kernel over all parameters instead of a Python loop of small ops
        opt = torch.optim.Adam(model.parameters(), lr=c.learning_rate, fused=True)
        tables = model.embedding_tables() if hasattr(model, "embedding_tables") else []
        net = model
        if world > 1:
            net = nn.parallel.DistributedDataParallel(model)
        loss_fn = nn.BCEWithLogitsLoss()
        gen = torch.Generator().manual_seed(c.seed)
        state = {"epoch": 0, "best_auc": -1.0, "best_state": None, "best_epoch": -1, "bad": 0, "history": [],
                 "train_seconds": 0.0, "seen": 0}
        ckpt = Path(checkpoint_dir) / "trainer_state.pt" if checkpoint_dir else None
        resumed = 0
        if ckpt is not None and ckpt.exists():
            saved = torch.load(ckpt, weights_only=False)
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            gen.set_state(saved["generator"])
            torch.set_rng_state(saved["torch_rng"])
            state = saved["state"]
            resumed = state["epoch"]
        n = len(train)
        local = c.batch_size // world
        stop = state["bad"] >= c.patience
        for epoch in range(state["epoch"], c.epochs):
            if stop:
                break
            net.train()
            perm = torch.randperm(n, generator=gen)
            t0 = time.perf_counter()
            total = 0.0
            for i in tqdm(range(0, n, c.batch_size), desc=f"epoch {epoch + 1}", disable=not c.progress or rank,
                          leave=False):
                idx = perm[i : i + c.batch_size]
                full = len(idx)
                idx = idx[rank * local : (rank + 1) * local] if world > 1 else idx
                mb = train.slice(idx).to(c.device)
                with self._autocast():
                    logits = net(mb).float()
                # sum over this rank's rows / global batch rows: DDP's gradient averaging x world restores the
                # global mean, so every rank (and a single process) optimizes the same objective
                loss = nn.functional.binary_cross_entropy_with_logits(logits, mb.label, reduction="sum") * world / full \
                    if world > 1 else loss_fn(logits, mb.label)
                if c.embedding_l2 > 0 and tables:
                    loss = loss + (c.embedding_l2 / 2) * sum(t.pow(2).sum() for t in tables)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if c.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip, foreach=True)
                opt.step()
                total += float(loss.detach()) * len(mb)
            state["train_seconds"] += time.perf_counter() - t0
            state["seen"] += n
            metrics = self.evaluate(model, valid)
            lr = opt.param_groups[0]["lr"]
            state["history"].append({"epoch": epoch + 1, "train_loss": total / max(1, n // world), "lr": lr,
                                     "valid_auc": metrics["auc"], "valid_logloss": metrics["logloss"]})
            if metrics["auc"] > state["best_auc"] + c.min_delta:
                state.update(best_auc=metrics["auc"], best_epoch=epoch + 1, bad=0,
                             best_state=copy.deepcopy(model.state_dict()))
            else:
                state["bad"] += 1
                for g in opt.param_groups:
                    g["lr"] = max(c.min_lr, g["lr"] * 0.1)
                stop = state["bad"] >= c.patience
            state["epoch"] = epoch + 1
            if ckpt is not None and rank == 0:
                torch_save_atomic(ckpt, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                          "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                                          "state": state})
        if state["best_state"] is not None:
            model.load_state_dict(state["best_state"])
        best = next(h for h in state["history"] if h["epoch"] == state["best_epoch"])
        t = state["train_seconds"]
        return FitResult(
            best_epoch=state["best_epoch"], best_valid={"auc": best["valid_auc"], "logloss": best["valid_logloss"]},
            history=state["history"], train_seconds=t, samples_per_second=state["seen"] / t if t else 0.0,
            resumed_from_epoch=resumed,
        )


