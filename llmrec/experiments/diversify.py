"""Search-result diversification benchmark (kind ``diversify``; ``llmrec experiment diversify_mdp``): MDP-DIV's
protocol on the MovieLens diversity proxy (papers.md §33, ``llmrec.data.diversity``).

PMF item vectors ([v; b_i], fitted on every rating: features, as doc2vec vectors in the paper) are the
documents' features. Each method's grid is searched on the validation queries (policies: trained per grid
point and seed, the validation-best checkpoint kept; MMR: fitted on the training queries). Reported per
method: test alpha-NDCG@k of greedy rankings (mean ± std over seeds), training seconds, and for policies the
episodes to reach 95% of the final training reward (moving average) and the reward curves (plotted)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from llmrec.config import StrictConfig
from llmrec.data.diversity import MovieLensDiversityConfig, movielens_diversity
from llmrec.data.registry import DataConfig, load_data
from llmrec.data.simulator import rating_log
from llmrec.experiments.kinds import ExperimentKind, validate
from llmrec.experiments.runner import Runner
from llmrec.io import settings_key
from llmrec.experiments.methods import GridMethod, distinct_labels, setting_key
from llmrec.models import MODELS
from llmrec.results import pyplot, save_figure
from llmrec.train.pmf import PMFConfig, fit_pmf, pmf_vectors
from llmrec.train.policy_gradient import PolicyGradientConfig, episodes_to, fit_diversifier, moving_average


class DiversifyExperiment(StrictConfig):
    """Data, the diversity proxy, PMF features, REINFORCE settings, methods with grids, seeds."""
    name: str
    output: str | None = None
    data: DataConfig = DataConfig(source="movielens100k")
    diversity: MovieLensDiversityConfig = MovieLensDiversityConfig()
    pmf: PMFConfig = PMFConfig(dim=16)
    training: PolicyGradientConfig = PolicyGradientConfig()
    methods: list[GridMethod]
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    reference: str | None = None  # the method whose episodes-to-95% the others are divided by

    _labels = field_validator("methods")(distinct_labels)


def _mean_std(xs: list[float]) -> dict:
    return {"mean": float(np.mean(xs)), "std": float(np.std(xs)), "per_seed": xs}


def run_method(exp: DiversifyExperiment, m: GridMethod, ds, dim: int) -> dict:
    """Every grid point (x seeds for policies) on validation; the chosen point's test results."""
    c, trained = exp.training, MODELS.get(m.model["name"]).default_task != "fit"
    settings = {}
    for point in m.points():
        spec = {**m.model, **point}
        runs = []
        for seed in (exp.seeds if trained else exp.seeds[:1]):
            _, valid, test, t = fit_diversifier(spec, dim, ds.train, ds.valid, ds.test,
                                                c.model_copy(update={"seed": seed}))
            if t is not None:
                runs.append({"seed": seed, "valid": valid, "test": test, "seconds": t.seconds,
                             "episodes_to_95": episodes_to(t.rewards, 0.95, c.smooth),
                             "final_reward": float(np.mean(t.rewards[-c.smooth:])),
                             "curve": [float(x) for x in moving_average(t.rewards, c.smooth)][::10],
                             "valid_curve": t.valid})
            else:
                runs.append({"seed": seed, "valid": valid, "test": test})
        settings[setting_key(point)] = {"point": point, "valid": float(np.mean([r["valid"] for r in runs])),
                                        "runs": runs}
    best = max(settings, key=lambda k: settings[k]["valid"])
    runs = settings[best]["runs"]
    out = {"chosen": settings[best]["point"], "test_alpha_ndcg": _mean_std([r["test"] for r in runs]),
           "valid_per_setting": {k: v["valid"] for k, v in settings.items()}, "runs": runs}
    if trained:
        out["episodes_to_95"] = _mean_std([r["episodes_to_95"] for r in runs])
        out["seconds"] = _mean_std([r["seconds"] for r in runs])
    return out


def run_diversify(exp: DiversifyExperiment, out: str | Path | None = None) -> dict:
    """Build the diversity set, run every method; writes the result JSON and the curves plot."""
    data = load_data(exp.data)
    log = rating_log(data)
    pmf = fit_pmf(log, exp.pmf)
    vectors = dict(zip(log.item_ids, pmf_vectors(pmf)[1]))
    ds = movielens_diversity(data, vectors, exp.diversity)
    dim = exp.pmf.dim + 1
    runner = Runner(exp, settings_key(exp, exclude=("name", "output", "methods", "reference")), out)
    done = runner.run([(m.label, m, None) for m in exp.methods], lambda m, _: run_method(exp, m, ds, dim))
    methods = {label: runs[0] for label, runs in done.items()}
    summary = {lab: {"test_alpha_ndcg": r["test_alpha_ndcg"]["mean"], "chosen": r["chosen"],
                     **({"episodes_to_95": r["episodes_to_95"]["mean"]} if "episodes_to_95" in r else {})}
               for lab, r in methods.items()}
    if exp.reference in methods and "episodes_to_95" in methods[exp.reference]:
        ref = methods[exp.reference]["episodes_to_95"]["mean"]
        for lab, r in methods.items():
            if "episodes_to_95" in r:
                summary[lab]["episodes_ratio_to_reference"] = r["episodes_to_95"]["mean"] / max(ref, 1e-12)
    path = runner.write({"summary": summary, "queries": {"train": len(ds.train), "valid": len(ds.valid),
                                                         "test": len(ds.test), "skipped_without_subtopics": ds.skipped},
                         "test_genres": sorted({q.qid.split("#")[0] for q in ds.test}), "methods": methods},
                        plot=lambda png: plot(methods, exp, png))
    return {"output": str(path), "summary": summary}


def plot(methods: dict, exp: DiversifyExperiment, path: Path) -> None:
    """Training reward (moving average) against episodes per policy, and test alpha-NDCG per method."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
    for n, (lab, r) in enumerate(methods.items()):
        for j, run in enumerate(r["runs"]):
            if "curve" in run:
                x = np.arange(len(run["curve"])) * 10 + exp.training.smooth
                ax1.plot(x, run["curve"], color=f"C{n}", alpha=0.8, label=lab if j == 0 else None)
                ax1.axvline(run["episodes_to_95"], color=f"C{n}", ls=":", lw=0.8)
    ax1.set_xlabel("episode")
    ax1.set_ylabel(f"training alpha-NDCG@{exp.training.k} (moving average)")
    ax1.set_title("REINFORCE curves; dotted: episodes to 95% of the final reward")
    ax1.legend(fontsize=7)
    labels = list(methods)
    ax2.bar(range(len(labels)), [methods[lab]["test_alpha_ndcg"]["mean"] for lab in labels],
            yerr=[methods[lab]["test_alpha_ndcg"]["std"] for lab in labels], color=[f"C{n}" for n in range(len(labels))])
    ax2.set_xticks(range(len(labels)), labels, rotation=20)
    ax2.set_ylabel(f"test alpha-NDCG@{exp.training.k}")
    ax2.set_title("test queries (unseen genres)")
    save_figure(fig, path)


def _load(raw: dict, path: Path) -> DiversifyExperiment:
    return validate(DiversifyExperiment, raw, path)


KIND = ExperimentKind(load=_load, run=run_diversify)
