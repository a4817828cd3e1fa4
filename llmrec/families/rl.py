"""The RL view (the rl family: DRR, papers.md §32): a data set's ratings split per user by time, PMF fitted on
the training ratings (its vectors are DRR's frozen embeddings and its predictions the rating simulator's
fallback), and the actor-critic trained by DDPG against the simulator (``job.rl``: ``RLViewConfig``), not by
the one loop. A saved model folder holds the policy's weights (with the PMF vectors, ``model.safetensors``)
and the id maps with the popular-positive filler; a user's recommendations rank every item by the actor's
action for the state of their last positive ratings in the data."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.data.schema import RecData
from llmrec.data.simulator import RatingSimulator, rating_log, split_by_user
from llmrec.errors import DataError
from llmrec.families.base import VIEWS, FitView, Prepared, check_user
from llmrec.train.actor_critic import (DDPGConfig, UserHistory, evaluate, initial_window, popular_positives,
                                       train_drr)
from llmrec.train.pmf import PMFConfig, fit_pmf, pmf_vectors


class RLViewConfig(StrictConfig):
    """The rl family's view of a training job's data (``rl:``): the per-user time split, PMF, DDPG, and how many
    popular positives pad a short state window."""
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    pmf: PMFConfig = PMFConfig()
    ddpg: DDPGConfig = DDPGConfig(episodes=1500, eval_every=150)  # rl_drr's settings
    filler: int = Field(20, ge=1)


@dataclass
class RLContext:
    """What a DRR policy is built from and answers in: user / item ids, PMF's user [u; 1] and item [v; b_i]
    vectors, and the popular positives that pad a short state."""
    user_ids: list[str]
    item_ids: list[str]
    users: np.ndarray
    items: np.ndarray
    filler: np.ndarray


class RLView(FitView):
    """Ratings with a simulator: DDPG episodes, precision@k with logged feedback on validation and test."""
    name = "rl"

    def prepare(self, job: Any, data: RecData) -> Prepared:
        """The ratings split per user, PMF fitted on the training part, the simulator and the filler."""
        c = job.rl
        log = rating_log(data)
        train, valid, test = split_by_user(log, c.split)
        pmf = fit_pmf(train, c.pmf, valid)
        ctx = RLContext([str(u) for u in log.user_ids], [str(i) for i in log.item_ids], *pmf_vectors(pmf),
                        popular_positives(train, c.ddpg.positive, c.filler))
        sim = RatingSimulator(train, pmf.U, pmf.V, pmf.bu, pmf.bi, pmf.mean)
        return Prepared(data, ctx, (train, sim), valid, test)

    def fit(self, job: Any, p: Prepared, config: Any) -> tuple[Any, dict]:
        """DDPG against the simulator (the actor with the best validation precision kept); test precision."""
        c, ctx = job.rl.ddpg.model_copy(update={"seed": job.trainer.seed, "progress": job.trainer.progress}), p.context
        train, sim = p.train
        trained, test = train_drr(config, (ctx.users, ctx.items), sim, train, p.valid, p.test, ctx.filler, c)
        best = max(trained.curve, key=lambda r: r[f"valid_precision@{c.k}"])
        return trained.model, {
            "data": p.data.name, "ratings": {"train": len(train.user), "valid": len(p.valid.user),
                                             "test": len(p.test.user)},
            "model": config.model_dump(mode="json"), "family": "rl", "task": "actor_critic",
            "primary_metric": f"precision@{c.k}", "valid": {f"precision@{c.k}": best[f"valid_precision@{c.k}"]},
            "test": test, "best_episode": trained.best_episode, "seconds": trained.seconds, "history": trained.curve}

    def evaluate(self, job: Any, p: Prepared, model: Any) -> dict:
        """Precision@k with logged feedback on the test ratings."""
        train, _ = p.train
        return evaluate(model, UserHistory.of(train, p.valid), p.test, p.context.filler, job.rl.ddpg)

    def load_state(self, folder: Path, context: RLContext, config: Any) -> Any:
        """The policy rebuilt on the saved PMF vectors with its weights."""
        return super().load_state(folder, (context.users, context.items), config)

    def save_context(self, folder: Path, context: RLContext) -> None:
        """Id maps and the filler (``encoder.json``) and the PMF vectors (``pmf.npz``)."""
        (folder / "encoder.json").write_text(json.dumps({"users": context.user_ids, "items": context.item_ids,
                                                         "filler": context.filler.tolist()}))
        np.savez(folder / "pmf.npz", users=context.users, items=context.items)

    def load_context(self, folder: Path) -> RLContext:
        """The context ``save_context`` wrote."""
        raw = json.loads((folder / "encoder.json").read_text())
        z = np.load(folder / "pmf.npz")
        return RLContext(raw["users"], raw["items"], z["users"], z["items"], np.array(raw["filler"], np.int64))

    def scores(self, model, context: RLContext, job, data, user, include_seen):
        """Every item scored by the actor's action for ``user``'s state: their last positive ratings in ``data``
        (padded by the filler)."""
        check_user(user, set(context.user_ids), "the model")
        index = {i: n for n, i in enumerate(context.item_ids)}
        users = np.asarray(data.columns[data.user_col]).astype(str)
        rows = np.flatnonzero(users == user)
        rows = rows[np.argsort(np.asarray(data.columns[data.time], np.float64)[rows], kind="stable")]
        raw = np.asarray(data.columns[data.item_col])[rows].astype(str)
        known = np.array([r for r, i in zip(rows, raw) if i in index], np.int64)
        if not len(known):
            raise DataError(f"user: none of {user!r}'s rated items is known to the model")
        items = np.array([index[str(data.columns[data.item_col][r])] for r in known], np.int64)
        ratings = np.asarray(data.columns["rating"], np.float64)[known]
        state = initial_window(items, ratings, model.config.window, job.rl.ddpg.positive, context.filler)
        u = context.user_ids.index(user)
        model.eval()
        with torch.no_grad():
            scores = model.scores(torch.tensor([u]), torch.from_numpy(state)[None])[0].numpy().astype(np.float64)
        if not include_seen:
            scores[items] = -np.inf
        return scores, list(context.item_ids)


VIEWS.add("rl", RLView())
