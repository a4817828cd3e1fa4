"""The push view (the push family: PSP's A-PARW / PARW, Personalized PageRank, most active): a data set's log
cut into a graph period and validation / test periods, campaigns from an item column (``job.push``:
``llmrec.data.push.PushViewConfig``). The models are fitted on the graph period's user x item weights, not
trained by the loop; a saved model folder holds the weights (``push.npz``) and the id maps, and loading it
refits (deterministic). A push model ranks users for a campaign's seed items (``Recommender.audience``),
not items for a user."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from llmrec.data.push import push_view
from llmrec.data.schema import RecData
from llmrec.errors import ConfigError
from llmrec.families.base import VIEWS, FitView, Prepared, indices_of
from llmrec.metrics import precision_at
from llmrec.models import build_model


@dataclass
class PushContext:
    """What a push model is fitted on and answers in: user and item ids, the graph period's weights and each
    campaign's items (indices)."""
    users: list[str]
    items: list[str]
    weights: sp.csr_matrix
    campaigns: dict[str, np.ndarray]


class PushView(FitView):
    """Campaigns over a time-split log: precision@k of the ranked candidates in the validation and test periods."""
    name = "push"
    state_file = "push.npz"

    def prepare(self, job: Any, data: RecData) -> Prepared:
        """The job's data as the graph period (training), the validation and the test periods."""
        v = push_view(data, job.push)
        ctx = PushContext([str(u) for u in v.users], [str(i) for i in v.items], v.weights, v.campaign_items)
        return Prepared(data, ctx, v.weights, v.periods["valid"], v.periods["test"])

    def fit(self, job: Any, p: Prepared, config: Any) -> tuple[Any, dict]:
        """Fit on the graph period; precision@k per campaign in both periods (mean over the seed draws)."""
        model = build_model(None, config).fit(p.context.weights)
        return model, {"data": p.data.name, "users": len(p.context.users), "items": len(p.context.items),
                "edges": int(p.context.weights.nnz), "campaigns": sorted(p.context.campaigns),
                "model": model.config.model_dump(mode="json"), "family": "push", "task": "fit",
                "primary_metric": f"precision@{job.push.k}", "valid": self._metrics(job, p, model, p.valid),
                "test": self._metrics(job, p, model, p.test), "history": []}

    def evaluate(self, job: Any, p: Prepared, model: Any) -> dict:
        """Precision@k in the test period."""
        return self._metrics(job, p, model, p.test)

    @staticmethod
    def _metrics(job: Any, p: Prepared, model: Any, period) -> dict:
        c, ctx = job.push, p.context
        per = {}
        for campaign, pool in ctx.campaigns.items():
            scores = []
            for draw in range(c.draws):
                rng = np.random.default_rng([job.trainer.seed + draw, sum(campaign.encode())])
                seeds = np.sort(rng.choice(pool, size=min(c.seed_items, len(pool) - 1), replace=False))
                scores.append(precision_at(model.score_users(seeds), period.candidates,
                                           period.targets(campaign, seeds), c.k))
            per[campaign] = float(np.mean(scores))
        return {f"precision@{c.k}": float(np.mean(list(per.values()))), "by_campaign": per}

    def save_state(self, folder: Path, model: Any) -> None:
        """Nothing beyond the context: a push model is the graph it walks (``save_context``)."""

    def load_state(self, folder: Path, context: PushContext, config: Any) -> Any:
        """The model refitted on the saved weights."""
        return build_model(None, config).fit(context.weights)

    def save_context(self, folder: Path, context: PushContext) -> None:
        """Id maps and campaigns (``encoder.json``) and the graph period's weights (``push.npz``)."""
        (folder / "encoder.json").write_text(json.dumps({
            "users": context.users, "items": context.items,
            "campaigns": {k: v.tolist() for k, v in context.campaigns.items()}}))
        w = context.weights.tocoo()
        np.savez(folder / self.state_file, row=w.row, col=w.col, data=w.data, shape=np.array(w.shape))

    def load_context(self, folder: Path) -> PushContext:
        """The context ``save_context`` wrote."""
        raw = json.loads((folder / "encoder.json").read_text())
        z = np.load(folder / self.state_file)
        w = sp.csr_matrix((z["data"], (z["row"], z["col"])), shape=tuple(z["shape"]))
        return PushContext(raw["users"], raw["items"], w, {k: np.array(v, np.int64) for k, v in raw["campaigns"].items()})

    def scores(self, model, context, job, data, user, include_seen):
        """Push models rank users for a campaign, not items for a user."""
        raise ConfigError(f"user: {model.config.name} is a push model: it ranks users for a campaign's items "
                          "(Recommender.audience, CLI --campaign-item), not items for a user")

    def audience_scores(self, model, context: PushContext, items: list[str]) -> np.ndarray:
        """A score per user (``context.users``) for a campaign seeded with ``items`` (item ids)."""
        seeds = indices_of(items, context.items, "an item of the model's graph period")
        return np.asarray(model.score_users(seeds), np.float64)


VIEWS.add("push", PushView())
