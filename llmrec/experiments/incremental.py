"""Incremental training of a graph model over time-ordered blocks (kind ``incremental``;
``configs/experiments/graphsail_ml100k.yaml``): full retraining, plain fine-tuning and GraphSAIL side by side.

Protocol (papers.md §28): the interactions in time order; the first ``base_fraction`` is the base block, the
rest ``blocks`` equal blocks. Every block is split at random: ``holdout`` of it is kept out of training (the
block's validation set, and later the old-block test that measures forgetting), the rest trains. One model
is trained on the base block; then for every block t = 1..blocks-1 each method updates its own model:

- ``full``: a new model trained from scratch on the training parts of blocks 0..t;
- ``finetune``: the method's previous model trained further on block t only;
- ``graphsail``: as ``finetune`` with GraphSAIL's distillation from the method's previous model.

Every model propagates over the graph of all training edges up to its block and selects on that block's
holdout (early stopping; no later data). After each update it is tested on block t+1 (every interaction of
it, the user's earlier items excluded: Recall/NDCG@20) and on the base block's holdout (forgetting). Time is
the trainer's training seconds plus a method's setup (GraphSAIL's teacher and anchors). Ids are fixed over
the whole data, so a later user or item already has its (untrained) row."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from llmrec.config import StrictConfig, deep_merge
from llmrec.data.graph import InteractionGraph
from llmrec.data.registry import DataConfig, load_data
from llmrec.data.views import GraphViewConfig, ItemSpace, PairBatch, RankingEval
from llmrec.errors import DataError
from llmrec.experiments.kinds import ExperimentKind, validate
from llmrec.experiments.runner import Runner
from llmrec.io import settings_key
from llmrec.models import build_model
from llmrec.models.registry import with_family_trainer
from llmrec.models.graph.graphsail import GraphSAIL, GraphSAILConfig
from llmrec.results import grouped_bars, pyplot
from llmrec.train import BPRTask, Trainer, TrainerConfig


class Method(StrictConfig):
    """One way of updating the model when a block arrives."""
    label: str
    kind: Literal["full", "finetune", "graphsail"]
    graphsail: GraphSAILConfig = GraphSAILConfig()


class IncrementalExperiment(StrictConfig):
    """Data, model, blocks and the update methods to compare over seeds."""
    name: str
    output: str | None = None  # default eval/results/<name>.json
    seeds: list[int] = [2021, 2022, 2023]
    data: DataConfig
    graph: GraphViewConfig = GraphViewConfig()  # ``interactions`` (all / positive) is what is read
    model: dict[str, Any] = {"name": "lightgcn"}
    base_fraction: float = Field(0.6, gt=0, lt=1)
    blocks: int = Field(4, ge=2)
    holdout: float = Field(0.1, gt=0, lt=1)
    block_seed: int = 2020
    trainer: TrainerConfig = TrainerConfig()  # base training and full retraining, over the model family's
    finetune: dict[str, Any] = {}  # overrides of ``trainer`` for fine-tuning (finetune, graphsail)
    methods: list[Method]
    metrics: list[str] = ["recall@20", "ndcg@20"]

    @model_validator(mode="before")
    @classmethod
    def _family_trainer_defaults(cls, raw: Any) -> Any:
        """The model's family's trainer settings (graph: RecBole's, the 10-epoch-mean stopping rule) under
        the experiment's own ``trainer`` keys."""
        return with_family_trainer(raw, default_model="lightgcn")

    @model_validator(mode="after")
    def _labels(self) -> "IncrementalExperiment":
        labels = [m.label for m in self.methods]
        if len(set(labels)) != len(labels):
            raise ValueError(f"methods: labels must be distinct, got {labels}")
        return self


def time_blocks(data, exp: IncrementalExperiment) -> tuple[ItemSpace, list[tuple[np.ndarray, np.ndarray]]]:
    """The id space of the whole data and, per block, (training edges, holdout edges) as [n, 2] arrays of
    (user index, item index); duplicates keep their first occurrence."""
    rows = (np.flatnonzero(np.asarray(data.columns[data.label]) > 0.5) if exp.graph.interactions == "positive"
            else np.arange(len(data)))
    if len(rows) == 0:
        raise DataError(f"{data.name}: no interactions to build blocks from")
    users = np.asarray(data.columns[data.user_col]).astype(str)
    items = np.asarray(data.columns[data.item_col]).astype(str)
    space = ItemSpace(users={u: n for n, u in enumerate(sorted(set(users[rows])))},
                      items={i: n + 1 for n, i in enumerate(sorted(set(items[rows])))})
    order = rows[np.argsort(np.asarray(data.columns[data.time], dtype=np.float64)[rows], kind="stable")]
    u = np.array([space.users[x] for x in users[order]])
    i = np.array([space.items[x] for x in items[order]])
    _, first = np.unique(u.astype(np.int64) * space.n_items + i, return_index=True)
    first = np.sort(first)
    edges = np.stack([u[first], i[first]], 1)
    n = len(edges)
    cuts = [0, int(n * exp.base_fraction)]
    step = (n - cuts[1]) / exp.blocks
    cuts += [int(cuts[1] + step * k) for k in range(1, exp.blocks)] + [n]
    rng = np.random.default_rng(exp.block_seed)
    out = []
    for a, b in zip(cuts, cuts[1:]):
        block = edges[a:b]
        held = rng.random(len(block)) < exp.holdout
        out.append((block[~held], block[held]))
    return space, out


def _graph(space: ItemSpace, edges: np.ndarray) -> ItemSpace:
    return ItemSpace(space.users, space.items, graph=InteractionGraph(space.n_users, space.n_items,
                                                                      edges[:, 0].copy(), edges[:, 1].copy()))


def _evaluation(gold: np.ndarray, seen: np.ndarray) -> RankingEval:
    by_user: dict[int, list[int]] = {}
    for u, i in gold:
        by_user.setdefault(int(u), []).append(int(i))
    seen_by: dict[int, set[int]] = {}
    for u, i in seen:
        seen_by.setdefault(int(u), set()).add(int(i))
    users = sorted(by_user)
    gold_sets = [np.array(sorted(set(by_user[u]) - seen_by.get(u, set()))) for u in users]
    keep = [k for k, g in enumerate(gold_sets) if len(g)]
    return RankingEval(torch.tensor([users[k] for k in keep], dtype=torch.long), [gold_sets[k] for k in keep],
                       [np.array(sorted(seen_by.get(users[k], set()))) for k in keep])


def _pairs(edges: np.ndarray) -> PairBatch:
    return PairBatch(torch.from_numpy(edges[:, 0].astype(np.int64)), torch.from_numpy(edges[:, 1].astype(np.int64)))


def run_seed(exp: IncrementalExperiment, space: ItemSpace, blocks: list, seed: int) -> dict:
    """Base model, then every method's update per block: test on the next block and on the base holdout."""
    base_cfg = exp.trainer.model_copy(update={"seed": seed, "progress": False})
    ft_cfg = TrainerConfig.model_validate(deep_merge(base_cfg.model_dump(), exp.finetune))
    task = BPRTask(space.n_items)

    def curve(res) -> list[float]:  # the per-epoch validation curve (the task's primary metric), kept in the result
        return [round(h[f"valid_{task.primary}"], 5) for h in res.history]

    def fit(model, cfg, train_edges, valid_edges, seen_edges):
        trainer = Trainer(cfg, task)
        result = trainer.fit(model, _pairs(train_edges), _evaluation(valid_edges, seen_edges))
        return trainer, result

    def tests(trainer, model, t: int, seen_until: np.ndarray) -> dict:
        nxt = np.concatenate(blocks[t + 1]) if t + 1 < len(blocks) else None
        out = {}
        if nxt is not None:
            out["next"] = trainer.evaluate(model, _evaluation(nxt, seen_until))
        out["old"] = trainer.evaluate(model, _evaluation(blocks[0][1], np.concatenate([b[0] for b in blocks[: t + 1]])))
        return out

    torch.manual_seed(seed)
    train0, hold0 = blocks[0]
    base = build_model(_graph(space, train0), exp.model)
    t0 = time.perf_counter()
    trainer, res = fit(base, base_cfg, train0, hold0, train0)
    seen0 = np.concatenate(blocks[0])
    steps: list[dict] = [{"block": 0, "base": {"seconds": res.train_seconds, "epochs": len(res.history),
                                                "best_epoch": res.best_epoch, "curve": curve(res),
                                                **tests(trainer, base, 0, seen0)}}]
    print(f"seed {seed} base: {time.perf_counter() - t0:.1f} s", steps[0]["base"].get("next", {}).get("recall@20"),
          flush=True)
    models = {m.label: base for m in exp.methods}
    graphs = {m.label: _graph(space, train0).graph for m in exp.methods}  # what each previous model propagated over
    for t in range(1, len(blocks) - 1):
        train_t, hold_t = blocks[t]
        all_train = np.concatenate([b[0] for b in blocks[: t + 1]])
        seen = np.concatenate([np.concatenate(b) for b in blocks[: t + 1]])
        row: dict[str, Any] = {"block": t}
        for m in exp.methods:
            prev = models[m.label]
            new_space = _graph(space, all_train)
            torch.manual_seed(seed + t)
            student = build_model(new_space, exp.model)
            setup = time.perf_counter()
            if m.kind == "full":
                model, cfg, edges = student, base_cfg, all_train
            else:
                student.load_state_dict(prev.state_dict())
                model, cfg, edges = student, ft_cfg, train_t
                if m.kind == "graphsail":
                    model = GraphSAIL(student, prev, graphs[m.label], m.graphsail, seed=seed + t,
                                      new_graph=new_space.graph)
            setup = time.perf_counter() - setup
            trainer, res = fit(model, cfg, edges, hold_t, all_train)
            result = tests(trainer, model, t, seen)
            models[m.label], graphs[m.label] = student, new_space.graph
            row[m.label] = {"seconds": res.train_seconds + setup, "epochs": len(res.history),
                            "best_epoch": res.best_epoch, "valid": res.best_valid, "curve": curve(res), **result}
            print(f"seed {seed} block {t} {m.label}: {row[m.label]['seconds']:.1f} s",
                  {k: round(v.get("recall@20", float("nan")), 4) for k, v in result.items()}, flush=True)
        steps.append(row)
    return {"seed": seed, "steps": steps}


def summarize(exp: IncrementalExperiment, runs: list[dict]) -> dict:
    """Per method: mean over increments and seeds of next-block and old-block metrics and of seconds; the
    ratios against full retraining."""
    out: dict[str, Any] = {}
    for m in exp.methods:
        rows = [s[m.label] for r in runs for s in r["steps"][1:]]
        entry: dict[str, Any] = {"seconds_mean": float(np.mean([x["seconds"] for x in rows])),
                                 # the block holdouts: what weights are chosen on (never the next block)
                                 **{f"valid_{k}_mean": float(np.mean([x["valid"][k] for x in rows])) for k in exp.metrics}}
        for part in ("next", "old"):
            for k in exp.metrics:
                vals = [x[part][k] for x in rows if part in x]
                per_seed = [np.mean([s[m.label][part][k] for s in r["steps"][1:] if part in s[m.label]]) for r in runs]
                entry[f"{part}_{k}_mean"], entry[f"{part}_{k}_std"] = float(np.mean(vals)), float(np.std(per_seed))
        out[m.label] = entry
    full = next((m.label for m in exp.methods if m.kind == "full"), None)
    if full:
        for label, e in out.items():
            e["seconds_vs_full"] = e["seconds_mean"] / out[full]["seconds_mean"]
            for k in exp.metrics:
                e[f"next_{k}_vs_full"] = e[f"next_{k}_mean"] / max(1e-12, out[full][f"next_{k}_mean"])
    return out


def plot(summary: dict, metric: str, path: Path) -> None:
    """Bars per method: next-block and old-block (forgetting) metric, and training seconds."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    labels = list(summary)
    grouped_bars(axes[0], ["next block", "base holdout (forgetting)"],
                 {m: [summary[m][f"next_{metric}_mean"], summary[m][f"old_{metric}_mean"]] for m in labels},
                 ylabel=f"{metric} (mean over increments and seeds)")
    axes[0].set_title("quality after each increment")
    axes[1].bar(labels, [summary[m]["seconds_mean"] for m in labels], color="tab:blue")
    axes[1].set_ylabel("seconds per increment (training + setup)")
    axes[1].set_title("time")
    axes[1].tick_params(axis="x", rotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")


def run_incremental(exp: IncrementalExperiment, out: str | Path | None = None) -> dict:
    """Every seed of the incremental comparison (resumable per seed, through the one runner); writes the
    result JSON and plot."""
    data = load_data(exp.data)
    space, blocks = time_blocks(data, exp)
    runner = Runner(exp, settings_key(exp, exclude=("name", "output", "seeds")), out)
    runs = runner.run([("seed", None, seed) for seed in exp.seeds],
                      lambda _, seed: run_seed(exp, space, blocks, seed))["seed"]
    summary = summarize(exp, runs)
    for label, e in summary.items():
        print(label, {k: round(v, 4) for k, v in e.items()}, flush=True)
    sizes = [{"train": len(a), "holdout": len(b)} for a, b in blocks]
    path = runner.write({"data": data.name, "blocks": sizes, "summary": summary, "runs": runs},
                        plot=lambda png: plot(summary, exp.metrics[0], png))
    return {"output": str(path), "summary": summary}


def _load(raw: dict, path: Path) -> IncrementalExperiment:
    return validate(IncrementalExperiment, raw, path)


KIND = ExperimentKind(load=_load, run=run_incremental)
