"""The one experiment runner: what every kind used to rewrite. A kind supplies its typed config, the items of
its grid (a label, what to run, a seed) and ``run_one``; the runner owns the result path, resume after a kill
(each finished item kept with the settings it ran under in ``<output>.partial.json``, which stays after
the run so that more seeds or variants later train only what is new), progress, the
mean / std summary over seeds and the final write (provenance: command, commit, environment, config, seeds)
with its plot.

    runner = Runner(exp, settings_key(exp, exclude=("name", "output")), out)
    runs = runner.run([(m.label, m, seed) for m in exp.methods for seed in exp.seeds], run_one)
    summary = mean_std(runs)
    runner.write({"summary": summary, "runs": runs}, plot=lambda path: ...)
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from llmrec.io import load_resume, save_resume
from llmrec.results import result_path, write_result

Item = tuple[str, Any, "int | None"]  # (label, what the kind runs, seed; None: the item is not per seed)


class Runner:
    """Result path, resume, progress and the final write of one experiment."""

    def __init__(self, exp: Any, key: str, out: str | Path | None = None, resume_at: Path | None = None) -> None:
        self.exp, self.key = exp, key
        self.path = result_path(exp.name, getattr(exp, "output", None), out)
        # finished items are kept beside the result, or beside ``resume_at`` (one file whatever ``out`` says)
        where = resume_at or self.path
        self.partial = where.with_name(where.stem + ".partial.json")
        self._done: dict | None = None  # finished items, read from the resume file on first use

    def run(self, items: Iterable[Item], run_one: Callable[[Any, "int | None"], dict]) -> dict[str, list[dict]]:
        """Every item's result by label (in seed order); items finished under the same settings are reused."""
        items = list(items)
        out: dict[str, list[dict]] = {}
        for n, (label, what, seed) in enumerate(items, 1):
            # an item's own settings (a variant's, a data set's) key it too: editing one reruns only that one
            own = what.model_dump(mode="json", exclude_defaults=True) if hasattr(what, "model_dump") else None
            name = f"[{n}/{len(items)}] {label}" + (f" seed {seed}" if seed is not None else "")
            tag = {"label": label, "seed": seed, **({"settings": own} if own else {})}
            out.setdefault(label, []).append(self.cached(tag, lambda what=what, seed=seed: run_one(what, seed), name))
        return out

    def cached(self, tag: dict, compute: Callable[[], dict], name: str | None = None) -> dict:
        """One finished item: its result if it ran under ``tag`` (its label and settings) before, else
        ``compute()``, kept in the resume file at once."""
        if self._done is None:
            self._done = load_resume(self.partial, "settings", self.key, "runs")
        key = json.dumps(tag, sort_keys=True, default=str)
        name = name or str(tag.get("label"))
        if key in self._done:
            print(f"{name}: resumed from {self.partial}", flush=True)
            return self._done[key]
        t = time.perf_counter()
        self._done[key] = compute()
        save_resume(self.partial, "settings", self.key, "runs", self._done)
        print(f"{name}: {time.perf_counter() - t:.1f} s", flush=True)
        return self._done[key]

    def write(self, payload: dict, plot: Callable[[Path], None] | None = None, seeds: list[int] | None = None,
              config: dict | None = None) -> Path:
        """The result JSON with its provenance (the experiment's config and seeds unless given) and the plot
        beside it. The resume file stays (git-ignored): a later run over more seeds or variants under the same
        settings trains only what is new."""
        config = config if config is not None else self.exp.model_dump(mode="json", by_alias=True)
        write_result(self.path, payload, config=config,
                     seeds=seeds if seeds is not None else getattr(self.exp, "seeds", None))
        if plot is not None:
            plot(self.path.with_suffix(".png"))
        return self.path


def mean_std(runs: dict[str, list[dict]], metrics: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Per label, ``<metric>_mean`` and ``<metric>_std`` over its runs for every number all runs report (or
    ``metrics``)."""
    out: dict[str, dict[str, float]] = {}
    for label, rs in runs.items():
        keys = metrics or sorted(k for k in rs[0] if all(isinstance(r.get(k), (int, float)) and
                                                          not isinstance(r.get(k), bool) for r in rs))
        out[label] = {}
        for k in keys:
            v = np.array([float(r[k]) for r in rs])
            out[label][f"{k}_mean"], out[label][f"{k}_std"] = float(v.mean()), float(v.std())
    return out
