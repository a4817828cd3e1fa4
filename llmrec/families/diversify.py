"""The diversify view (the diversify family: MDP-DIV and its kNN / NTN variants, MMR): a rated data set's items
grouped into diversity queries by an item column (``job.diversify``: ``DiversifyViewConfig``; the queries of
``llmrec.data.diversity``), PMF item vectors as the documents' features, the policies trained by REINFORCE
on alpha-DCG (MMR fitted), not by the one loop. A saved model folder holds the weights (MMR: its relevance
model) and the item vectors; ``Recommender.diversify(items, k)`` orders any set of candidate items."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from llmrec.config import StrictConfig
from llmrec.data.diversity import MovieLensDiversityConfig, movielens_diversity
from llmrec.data.schema import RecData
from llmrec.data.simulator import rating_log
from llmrec.errors import ConfigError
from llmrec.families.base import VIEWS, FitView, Prepared, indices_of
from llmrec.models import build_model
from llmrec.train.pmf import PMFConfig, fit_pmf, pmf_vectors
from llmrec.train.policy_gradient import PolicyGradientConfig, evaluate_policy, fit_diversifier


class DiversifyViewConfig(StrictConfig):
    """The diversify family's view of a training job's data (``diversify:``): how queries are made, the PMF
    features and REINFORCE (diversify_mdp's settings by default)."""
    queries: MovieLensDiversityConfig = MovieLensDiversityConfig()
    pmf: PMFConfig = PMFConfig(dim=16)
    training: PolicyGradientConfig = PolicyGradientConfig(episodes=1500)


@dataclass
class DiversifyContext:
    """Item ids and their feature vectors (PMF [v; b_i])."""
    item_ids: list[str]
    vectors: np.ndarray

    @property
    def dim(self) -> int:
        """The feature width the models are built for."""
        return int(self.vectors.shape[1])


class DiversifyView(FitView):
    """Diversity queries over the items: alpha-NDCG@k of greedy rankings on validation and test queries."""
    name = "diversify"

    def prepare(self, job: Any, data: RecData) -> Prepared:
        """PMF item vectors from every rating, and the training / validation / test queries."""
        c = job.diversify
        log = rating_log(data)
        pmf = fit_pmf(log, c.pmf)
        vectors = pmf_vectors(pmf)[1]
        ids = [str(i) for i in log.item_ids]
        ds = movielens_diversity(data, dict(zip(ids, vectors)), c.queries)
        return Prepared(data, DiversifyContext(ids, vectors), ds.train, ds.valid, ds.test)

    def fit(self, job: Any, p: Prepared, config: Any) -> tuple[Any, dict]:
        """MMR fitted on the training queries, or a policy trained by REINFORCE (validation-best kept)."""
        t = job.diversify.training.model_copy(update={"seed": job.trainer.seed, "progress": job.trainer.progress})
        model, valid, test, trained = fit_diversifier(config, p.context.dim, p.train, p.valid, p.test, t)
        out: dict = {"history": []} if trained is None else {"history": trained.valid, "seconds": trained.seconds}
        metric = f"alpha_ndcg@{t.k}"
        return model, {**out, "data": p.data.name, "queries": {"train": len(p.train), "valid": len(p.valid),
                                                               "test": len(p.test)},
                       "model": config.model_dump(mode="json"), "family": "diversify", "task": "policy_gradient",
                       "primary_metric": metric, "valid": {metric: valid},
                       "test": {metric: test}}

    def evaluate(self, job: Any, p: Prepared, model: Any) -> dict:
        """alpha-NDCG@k on the test queries."""
        t = job.diversify.training
        return {f"alpha_ndcg@{t.k}": evaluate_policy(model, p.test, t.k, t.alpha)}

    def save_state(self, folder: Path, model: Any) -> None:
        """A policy's weights, or MMR's relevance model."""
        if isinstance(model, torch.nn.Module):
            super().save_state(folder, model)
        else:
            save_file({"w": torch.from_numpy(np.asarray(model.w, np.float64))}, str(folder / self.state_file))

    def load_state(self, folder: Path, context: DiversifyContext, config: Any) -> Any:
        """The model rebuilt for the context's feature width with its saved state."""
        model = build_model(context.dim, config)
        if isinstance(model, torch.nn.Module):
            model.load_state_dict(load_file(str(folder / self.state_file)))
            return model.eval()
        model.w = load_file(str(folder / self.state_file))["w"].numpy()
        return model

    def save_context(self, folder: Path, context: DiversifyContext) -> None:
        """Item ids (``encoder.json``) and their vectors (``items.npz``)."""
        (folder / "encoder.json").write_text(json.dumps({"items": context.item_ids}))
        np.savez(folder / "items.npz", vectors=context.vectors)

    def load_context(self, folder: Path) -> DiversifyContext:
        """The context ``save_context`` wrote."""
        items = json.loads((folder / "encoder.json").read_text())["items"]
        return DiversifyContext(items, np.load(folder / "items.npz")["vectors"])

    def scores(self, model, context, job, data, user, include_seen):
        """Diversifiers order a query's candidates, not items for a user."""
        raise ConfigError(f"user: {model.config.name} is a diversify model: it orders a set of candidate items "
                          "(Recommender.diversify), not items for a user")

    def diversified(self, model, context: DiversifyContext, items: list[str], k: int) -> list[int]:
        """The order (indices into ``context.item_ids``) in which the model lists ``items`` (the query: their
        mean vector), ``k`` long."""
        idx = indices_of(items, context.item_ids, "an item the model has a vector for")
        feats = context.vectors[idx]
        with torch.no_grad():
            order = (model.rollout(feats.mean(0), feats, k)[0] if hasattr(model, "rollout")
                     else model.rank(SimpleNamespace(features=feats), k))
        return [int(idx[i]) for i in order]


VIEWS.add("diversify", DiversifyView())
