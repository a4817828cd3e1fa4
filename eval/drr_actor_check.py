"""Where DRR loses to PMF (issue 37, docs/methods/drr.md): is it the policy class or its learning?

DRR ranks items by a . e_i with e_i = [v_i; b_i] (PMF's frozen item vectors) and a unit action. The action
a = [u; 1] / |[u; 1]| ranks every user's items exactly as PMF's predicted rating does (mu + b_u is constant per
user), so the policy class contains PMF. This script, on rl_drr's split and PMF, measures with rl_drr's own
``evaluate`` (sequential, logged feedback): PMF's direction as the action, the untrained actor, and the
actor DDPG trains (rl_drr's settings, or ``--actor-lr``), with the mean cosine between each actor's first action
and PMF's direction over the test users, and the trained critic itself as a ranker (Q of each candidate item):
whether the value it learned ranks well, and so whether the loss is in the critic or in the actor's ascent. `python eval/drr_actor_check.py [--state ave] [--seed 0]`"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from llmrec.data.registry import load_data
from llmrec.data.simulator import RatingSimulator, rating_log, split_by_user
from llmrec.experiments.kinds import load_kind
from llmrec.experiments.rl import static_precision
from llmrec.models import build_model
from llmrec.train.actor_critic import UserHistory, evaluate, initial_window, popular_positives, train_drr
from llmrec.train.pmf import fit_pmf, pmf_vectors


def pmf_direction(model, user: torch.Tensor, recent: torch.Tensor) -> torch.Tensor:
    """The action that ranks as PMF does: the user's [u; 1], unit length."""
    return torch.nn.functional.normalize(model.users[user], dim=1)


def mean_cosine(model, past: UserHistory, split, filler: np.ndarray, c) -> float:
    """Mean cosine between the actor's first action and PMF's direction, over the evaluated users."""
    out = []
    with torch.no_grad():
        for u, rows in enumerate(split.by_user()):
            if len(rows) < c.k:
                continue
            state = initial_window(past.items[u], past.ratings[u], model.config.window, c.positive, filler)
            a = model.action(torch.tensor([u]), torch.from_numpy(state)[None])[0]
            out.append(float(a @ pmf_direction(model, torch.tensor([u]), None)[0]))
    return float(np.mean(out))


def critic_precision(model, past: UserHistory, split, filler: np.ndarray, c) -> float:
    """precision@k of ranking each evaluated user's split items by the critic, Q(s, unit e_i) (the actions its
    replay holds are executed items' unit vectors), from the user's first state."""
    unit = torch.nn.functional.normalize(model.items, dim=1)
    out = []
    with torch.no_grad():
        for u, rows in enumerate(split.by_user()):
            if len(rows) < c.k:
                continue
            cand, rating = split.item[rows], split.rating[rows]
            state = initial_window(past.items[u], past.ratings[u], model.config.window, c.positive, filler)
            su, si = model.embed(torch.full((len(cand),), u), torch.from_numpy(state)[None].repeat(len(cand), 1))
            q = model.critic(su, si, unit[torch.from_numpy(cand)]).numpy()
            out.append(float((rating[np.argsort(-q, kind="stable")[: c.k]] >= c.positive).mean()))
    return float(np.mean(out))


def main() -> None:
    """Fit rl_drr's PMF, measure the three actors and the critic, print one JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--state", default="ave", choices=["n", "p", "u", "ave"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--actor-lr", type=float, default=None, help="override rl_drr's actor learning rate")
    ap.add_argument("--episodes", type=int, default=None, help="override rl_drr's episodes")
    args = ap.parse_args()
    exp = load_kind("rl_drr", "rl")
    log = rating_log(load_data(exp.data))
    train, valid, test = split_by_user(log, exp.split)
    pmf = fit_pmf(train, exp.pmf, valid)
    sim = RatingSimulator(train, pmf.U, pmf.V, pmf.bu, pmf.bi, pmf.mean)
    update = {"seed": args.seed, **({"actor_lr": args.actor_lr} if args.actor_lr else {}),
              **({"episodes": args.episodes} if args.episodes else {})}
    c = exp.ddpg.model_copy(update=update)
    k, filler = c.k, popular_positives(train, c.positive, exp.filler)
    vectors = pmf_vectors(pmf)
    variant = next(v for v in exp.variants if v.model["state"] == args.state)
    past = UserHistory.of(train, valid)
    out = {"state": args.state, "seed": args.seed, "ddpg": c.model_dump(include={"actor_lr", "critic_lr", "episodes"}),
           "PMF static": static_precision(lambda u, it: pmf.predict(np.full(len(it), u), it), test, k, c.positive)}
    torch.manual_seed(args.seed)
    untrained = build_model(vectors, variant.model)
    oracle = build_model(vectors, variant.model)
    oracle.action = lambda user, recent: pmf_direction(oracle, user, recent)
    out["PMF direction as the action"] = evaluate(oracle, past, test, filler, c)
    out["untrained actor"] = {**evaluate(untrained, past, test, filler, c),
                              "cosine_to_pmf": mean_cosine(untrained, past, test, filler, c)}
    trained, tested = train_drr(variant.model, vectors, sim, train, valid, test, filler, c)
    out["trained actor"] = {**tested, "best_episode": trained.best_episode,
                            "cosine_to_pmf": mean_cosine(trained.model, past, test, filler, c),
                            "critic_as_ranker_precision": critic_precision(trained.model, past, test, filler, c)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
