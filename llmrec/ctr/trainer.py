"""The one CTR trainer, with BARS/FuxiCTR semantics.

Adam; whole-table L2 on embeddings every step ((lambda/2)*||E||^2 added to the mean BCE); gradient-norm
clip 10; validation AUC once per epoch; learning rate x0.1 after every non-improving epoch (min 1e-6);
early stop after ``patience`` non-improving epochs; the best-on-validation weights are restored
before the test set is evaluated once."""
from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from llmrec.config import StrictConfig
from llmrec.ctr.features import Batch
from llmrec.ctr.metrics import auc, group_auc, logloss


class TrainerConfig(StrictConfig):
    batch_size: int = 1024
    learning_rate: float = 1e-3
    embedding_l2: float = 0.01
    epochs: int = 20
    patience: int = 2
    min_delta: float = 1e-6
    min_lr: float = 1e-6
    grad_clip: float = 10.0
    seed: int = 2021
    eval_batch_size: int = 8192
    progress: bool = True


@dataclass
class FitResult:
    best_epoch: int
    best_valid: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    samples_per_second: float = 0.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, config: TrainerConfig | None = None) -> None:
        self.config = config or TrainerConfig()

    @torch.no_grad()
    def predict(self, model: nn.Module, data: Batch) -> np.ndarray:
        model.eval()
        n, bs = len(data), self.config.eval_batch_size
        out = [torch.sigmoid(model(data.slice(torch.arange(i, min(n, i + bs))))) for i in range(0, n, bs)]
        return torch.cat(out).float().numpy() if out else np.zeros(0, np.float32)

    def evaluate(self, model: nn.Module, data: Batch, groups: np.ndarray | None = None) -> dict[str, float]:
        if data.label is None:
            raise ValueError("data.label: evaluation needs labels")
        p = self.predict(model, data)
        y = data.label.numpy()
        res = {"auc": auc(y, p), "logloss": logloss(y, p)}
        if groups is not None:
            res["gauc"] = group_auc(y, p, groups)
        return res

    def fit(self, model: nn.Module, train: Batch, valid: Batch) -> FitResult:
        c = self.config
        if train.label is None or valid.label is None:
            raise ValueError("train.label / valid.label: training needs labels")
        seed_everything(c.seed)
        opt = torch.optim.Adam(model.parameters(), lr=c.learning_rate)
        tables = model.embedding_tables() if hasattr(model, "embedding_tables") else []
        loss_fn = nn.BCEWithLogitsLoss()
        best_auc, best_state, best_epoch, bad = -1.0, None, -1, 0
        history: list[dict[str, float]] = []
        n = len(train)
        gen = torch.Generator().manual_seed(c.seed)
        t_train, seen = 0.0, 0
        for epoch in range(c.epochs):
            model.train()
            perm = torch.randperm(n, generator=gen)
            t0 = time.perf_counter()
            total = 0.0
            steps = range(0, n, c.batch_size)
            for i in tqdm(steps, desc=f"epoch {epoch + 1}", disable=not c.progress, leave=False):
                mb = train.slice(perm[i : i + c.batch_size])
                logits = model(mb)
                loss = loss_fn(logits, mb.label)
                if c.embedding_l2 > 0 and tables:
                    loss = loss + (c.embedding_l2 / 2) * sum(t.pow(2).sum() for t in tables)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if c.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
                opt.step()
                total += float(loss.detach()) * len(mb)
            t_train += time.perf_counter() - t0
            seen += n
            metrics = self.evaluate(model, valid)
            lr = opt.param_groups[0]["lr"]
            history.append({"epoch": epoch + 1, "train_loss": total / n, "lr": lr,
                            "valid_auc": metrics["auc"], "valid_logloss": metrics["logloss"]})
            if metrics["auc"] > best_auc + c.min_delta:
                best_auc, best_epoch, bad = metrics["auc"], epoch + 1, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad += 1
                for g in opt.param_groups:
                    g["lr"] = max(c.min_lr, g["lr"] * 0.1)
                if bad >= c.patience:
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
        best = next(h for h in history if h["epoch"] == best_epoch)
        return FitResult(
            best_epoch=best_epoch, best_valid={"auc": best["valid_auc"], "logloss": best["valid_logloss"]},
            history=history, train_seconds=t_train, samples_per_second=seen / t_train if t_train else 0.0,
        )
