"""Session-based recommendation benchmark (kind ``session``; ``llmrec experiment session_knn``): AHC-KNN's
protocol (papers.md §31) over the session family.

For every data set (``llmrec.data.sessions``), every method is fitted on the training sessions once per grid
point (no trainer, nothing random: one run), predicts the next click after every prefix of the validation and
test sessions, and is scored by **HR@k** (the next click is in the top k) and **MRR@k** (its reciprocal rank,
0 beyond k). The grid point with the best validation HR@k is the method's test result; every grid point's
test metrics are reported too (papers.md's "at the best lambda" reads them), and ``sweep`` names a method and
a field whose test curve is drawn."""
from __future__ import annotations

import time
from pathlib import Path

from pydantic import Field, field_validator

from llmrec.config import StrictConfig
from llmrec.data.sessions import SessionConfig, load_sessions
from llmrec.experiments.kinds import ExperimentKind, validate
from llmrec.experiments.runner import Runner
from llmrec.io import settings_key
from llmrec.experiments.methods import GridMethod, distinct_labels, setting_key
from llmrec.models import build_model
from llmrec.models.session.base import next_click_metrics
from llmrec.results import pyplot, save_figure


class SessionDataset(StrictConfig):
    """One data set of sessions."""
    sessions: SessionConfig = SessionConfig()


class SessionSweep(StrictConfig):
    """The method and grid field whose test metrics are plotted against the field's values."""
    method: str
    field: str


class SessionExperiment(StrictConfig):
    """Data sets, methods (with validation grids), the cutoff k and the plotted sweep."""
    name: str
    output: str | None = None
    cutoff: int = Field(20, ge=1)
    datasets: dict[str, SessionDataset]
    methods: list[GridMethod]
    sweep: SessionSweep | None = None
    progress: bool = True

    _labels = field_validator("methods")(distinct_labels)


def run_dataset(exp: SessionExperiment, d: SessionDataset) -> dict:
    """Every method and grid point on one data set."""
    s = load_sessions(d.sessions)
    out = {"items": s.n_items, "sessions": {p: len(getattr(s, p)) for p in ("train", "valid", "test")},
           "dropped": s.dropped, "methods": {}}
    hr = f"hr@{exp.cutoff}"
    for m in exp.methods:
        settings = {}
        for point in m.points():
            t0 = time.perf_counter()
            model = build_model(None, {**m.model, **point}).fit(s.train, s.train_start, s.n_items)
            valid = next_click_metrics(model, s, "valid", exp.cutoff, exp.progress)
            test = next_click_metrics(model, s, "test", exp.cutoff, exp.progress)
            settings[setting_key(point)] = {"point": point, "valid": valid, "test": test,
                                            "ms_per_prediction": 1000 * (time.perf_counter() - t0)
                                            / max(1, valid["predictions"] + test["predictions"])}
        best = max(settings, key=lambda key: settings[key]["valid"][hr])
        out["methods"][m.label] = {"chosen": settings[best]["point"], "test": settings[best]["test"],
                                   "valid": settings[best]["valid"], "settings": settings}
    return out


def compare(results: dict, hr: str, mrr: str) -> dict:
    """Each method's test HR / MRR relative to every other method's (validation-chosen settings)."""
    out = {}
    for a, ra in results["methods"].items():
        for b, rb in results["methods"].items():
            if a != b:
                out[f"{a} vs {b}"] = {m: ra["test"][m] / rb["test"][m] - 1 if rb["test"][m] else None
                                      for m in (hr, mrr)}
    return out


def plot(results: dict, exp: SessionExperiment, path: Path) -> None:
    """Per data set: test HR@k and MRR@k of the validation-chosen methods, and the sweep's test curve."""
    plt = pyplot()
    hr, mrr = f"hr@{exp.cutoff}", f"mrr@{exp.cutoff}"
    fig, axes = plt.subplots(2, len(results), figsize=(6.5 * len(results), 7.5), squeeze=False)
    for j, (dname, r) in enumerate(results.items()):
        labels = list(r["methods"])
        for row, metric in enumerate((hr, mrr)):
            ax = axes[row][j]
            if exp.sweep is not None and exp.sweep.method in r["methods"]:
                sw = r["methods"][exp.sweep.method]["settings"]
                others = {k: v for k, v in r["methods"][exp.sweep.method]["chosen"].items() if k != exp.sweep.field}
                pts = sorted((v["point"][exp.sweep.field], v["test"][metric]) for v in sw.values()
                             if all(v["point"].get(k) == x for k, x in others.items()))
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color="black",
                        label=f"{exp.sweep.method} over {exp.sweep.field} ({others or 'as chosen'})")
            for n, label in enumerate(labels):
                ax.axhline(r["methods"][label]["test"][metric], color=f"C{n}", ls="--", lw=1.2,
                           label=f"{label}: {r['methods'][label]['test'][metric]:.4f}")
            ax.set_xlabel(exp.sweep.field if exp.sweep else "")
            ax.set_ylabel(f"test {metric}")
            ax.set_title(f"{dname}: {metric} (settings chosen on validation)")
            ax.legend(fontsize=7)
    save_figure(fig, path)


def run_session(exp: SessionExperiment, out: str | Path | None = None) -> dict:
    """Every data set; writes the result JSON and the plot."""
    hr, mrr = f"hr@{exp.cutoff}", f"mrr@{exp.cutoff}"
    runner = Runner(exp, settings_key(exp, exclude=("name", "output", "datasets")), out)
    done = runner.run([(name, d, None) for name, d in exp.datasets.items()], lambda d, _: run_dataset(exp, d))
    results = {name: runs[0] for name, runs in done.items()}
    summary = {name: {"test": {label: {hr: m["test"][hr], mrr: m["test"][mrr], "chosen": m["chosen"]}
                               for label, m in r["methods"].items()},
                      "relative": compare(r, hr, mrr)} for name, r in results.items()}
    path = runner.write({"summary": summary, "results": results}, plot=lambda png: plot(results, exp, png))
    return {"output": str(path), "summary": summary}


def _load(raw: dict, path: Path) -> SessionExperiment:
    return validate(SessionExperiment, raw, path)


KIND = ExperimentKind(load=_load, run=run_session)
