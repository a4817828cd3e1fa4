"""The training tasks beyond pointwise CTR, with toy models: next-item CE and BPR through the one loop
(resume included), full-sort metrics against the list-based definitions, and the import layering."""
import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from llmrec.data import SyntheticConfig, generate_world
from llmrec.data.views import SeqBatch, interaction_view, sequence_view
from llmrec.metrics import full_sort_metrics, ndcg_at, recall_at
from llmrec.train import BPRTask, NextItemTask, Trainer, TrainerConfig


@pytest.fixture(scope="module")
def world():
    return generate_world(SyntheticConfig(n_users=150, n_items=120, impressions_per_user=60))


def test_full_sort_metrics_match_list_definitions():
    rng = np.random.default_rng(0)
    scores = torch.from_numpy(rng.normal(size=(6, 30)).astype(np.float32))
    gold = torch.zeros(6, 30, dtype=torch.bool)
    for r in range(6):
        gold[r, rng.choice(30, size=r + 1, replace=False)] = True
    m = full_sort_metrics(scores, gold, [5, 10])
    for r in range(6):
        ranked = [str(i) for i in torch.argsort(scores[r], descending=True).tolist()]
        g = {str(i) for i in torch.nonzero(gold[r]).flatten().tolist()}
        for k in (5, 10):
            assert m[f"recall@{k}"][r].item() == pytest.approx(recall_at(ranked, g, k), abs=1e-6)
            assert m[f"ndcg@{k}"][r].item() == pytest.approx(ndcg_at(ranked, g, k), abs=1e-6)
            assert m[f"hit@{k}"][r].item() == float(bool(g & set(ranked[:k])))


def test_sequence_view_is_leave_one_out(world):
    space, train, valid, test = sequence_view(world, max_len=20)
    assert len(valid) == len(test) == space.n_users
    # a user's test history is the valid history plus the valid target
    for r in range(5):
        v_hist = valid.items[r][valid.items[r] > 0].tolist()
        t_hist = test.items[r][test.items[r] > 0].tolist()
        assert t_hist[-len(v_hist) - 1:] == (v_hist + [int(valid.target[r])])[-len(t_hist):] or len(t_hist) == 20
    assert int(train.target.min()) >= 0 and int(train.items.max()) < space.n_items


def cyclic_sequences(n_rows: int, n_items: int = 40, seed: int = 0) -> SeqBatch:
    """Histories that walk item ids upward (next = last + 1, wrapping); 10% of targets random."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(1, n_items, (n_rows, 1), generator=g)
    items = (start + torch.arange(5)) % (n_items - 1) + 1
    target = items[:, -1] % (n_items - 1) + 1
    noise = torch.rand(n_rows, generator=g) < 0.1
    target[noise] = torch.randint(1, n_items, (int(noise.sum()),), generator=g)
    return SeqBatch(items, target, torch.arange(n_rows))


class LastItemNext(nn.Module):
    """Toy sequential model: the last item's vector through a linear map, dotted with every item vector."""

    def __init__(self, n_items: int, dim: int = 16) -> None:
        super().__init__()
        self.item = nn.Embedding(n_items, dim, padding_idx=0)
        self.step = nn.Linear(dim, dim)

    def forward(self, batch: SeqBatch) -> torch.Tensor:
        return self.step(self.item(batch.items[:, -1])) @ self.item.weight.T


def test_next_item_task_trains_a_toy_model_and_resumes(tmp_path):
    train, valid = cyclic_sequences(3000), cyclic_sequences(400, seed=1)
    cfg = TrainerConfig(progress=False, epochs=6, batch_size=128, learning_rate=0.02, embedding_l2=0.0, patience=6)
    torch.manual_seed(0)
    model = LastItemNext(40)
    trainer = Trainer(cfg, NextItemTask())
    untrained = trainer.evaluate(model, valid)["hit@5"]
    fit = trainer.fit(model, train, valid)
    assert untrained < 0.3 and fit.best_valid["hit@5"] > 0.8  # ~90% of targets are learnable
    assert fit.history[-1]["train_loss"] < fit.history[0]["train_loss"]
    # resume: 3 epochs, then a fresh start from the checkpoint that continues to 6 == one straight run
    torch.manual_seed(0)
    a = LastItemNext(40)
    Trainer(cfg.model_copy(update={"epochs": 3}), NextItemTask()).fit(a, train, valid, checkpoint_dir=tmp_path)
    torch.manual_seed(0)
    b = LastItemNext(40)
    fit_b = Trainer(cfg, NextItemTask()).fit(b, train, valid, checkpoint_dir=tmp_path)
    assert fit_b.resumed_from_epoch == 3
    assert fit_b.best_valid["ndcg@10"] == pytest.approx(fit.best_valid["ndcg@10"], abs=1e-6)


def test_min_epochs_holds_off_early_stopping():
    """A model that cannot improve (a vanishing learning rate) stops after ``patience`` bad epochs, but not
    before ``min_epochs`` (a model that learns its real form late, as L2Q-GCN after its warm-up)."""
    train, valid = cyclic_sequences(600), cyclic_sequences(100, seed=1)
    cfg = TrainerConfig(progress=False, epochs=20, batch_size=128, learning_rate=1e-12, embedding_l2=0.0,
                        patience=1, lr_decay=1.0)
    torch.manual_seed(0)
    plain = Trainer(cfg, NextItemTask()).fit(LastItemNext(40), train, valid)
    torch.manual_seed(0)
    held = Trainer(cfg.model_copy(update={"min_epochs": 5}), NextItemTask()).fit(LastItemNext(40), train, valid)
    assert len(plain.history) == 2 and len(held.history) == 5
    assert plain.best_epoch == held.best_epoch == 1


def test_bpr_samples_negatives_from_the_checkpointed_generator(world):
    space, train, valid, _ = interaction_view(world)
    task = BPRTask(space.n_items)
    idx = torch.arange(8)
    a = task.make_batch(train, idx, torch.Generator().manual_seed(1))
    b = task.make_batch(train, idx, torch.Generator().manual_seed(1))
    assert torch.equal(a.items, b.items) and a.items.shape == (8, 2)
    assert torch.equal(a.items[:, 0], train.items[:8]) and int(a.items[:, 1].min()) >= 1
    # evaluation never ranks a user's training items
    assert all(len(set(g) & set(s)) == 0 for g, s in zip(valid.gold, valid.seen))


def test_imports_only_point_down():
    """No module of a lower layer imports a higher one (and so no cycles between layers), and no import
    is hidden inside a function to dodge one (CLI commands import lazily on purpose, for start-up time)."""
    root = Path(__file__).resolve().parents[1] / "llmrec"
    layers = [
        {"config", "errors", "io", "registry", "prompts", "metrics", "lexical", "results", "jobs", "retrieval", "llm",
         "embed", "store", "data", "ctr", "stats", "threads", "sqlite", "scaling", "configfiles"},
        {"models", "train", "knowledge", "memory", "rerank", "eval", "families", "augment", "recommend"},
        {"experiments", "train_job", "research", "pipeline", "api", "configref", "resultspage"},
        {"cli"},
    ]
    level = {name: i for i, group in enumerate(layers) for name in group}
    bad, hidden = [], []
    for f in root.rglob("*.py"):
        rel = f.relative_to(root).parts
        top = rel[0].removesuffix(".py")
        if top in ("__init__", "_prompts", "_defaults"):
            continue
        assert top in level, f"llmrec/{'/'.join(rel)}: its package {top!r} has no layer here"  # every module covered
        tree = ast.parse(f.read_text())
        funcs = {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(fn) if n is not fn}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llmrec."):
                target = node.module.split(".")[1]
                if target in level and top in level and level[target] > level[top]:
                    bad.append(f"{'/'.join(rel)} -> {node.module}")
                if id(node) in funcs and top != "cli" and target != top and target in level and top in level \
                        and level[target] >= level[top]:
                    hidden.append(f"{'/'.join(rel)} -> {node.module} (inside a function)")
    assert not bad, bad
    assert not hidden, hidden
