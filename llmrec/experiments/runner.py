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

    def __init__(self, exp: Any, key: str, out: str | Path | None = None) -> None:
        self.exp, self.key = exp, key
        self.path = result_path(exp.name, getattr(exp, "output", None), out)
        self.partial = self.path.with_name(self.path.stem + ".partial.json")

    def run(self, items: Iterable[Item], run_one: Callable[[Any, "int | None"], dict]) -> dict[str, list[dict]]:
        """Every item's result by label (in seed order); items finished under the same settings are reused."""
        done = load_resume(self.partial, "settings", self.key, "runs")
        items = list(items)
        out: dict[str, list[dict]] = {}
        for n, (label, what, seed) in enumerate(items, 1):
            # an item's own settings (a variant's, a data set's) key it too: editing one reruns only that one
            own = what.model_dump(mode="json", exclude_defaults=True) if hasattr(what, "model_dump") else None
            tag = json.dumps({"label": label, "seed": seed, **({"settings": own} if own else {})}, sort_keys=True)
            name = f"[{n}/{len(items)}] {label}" + (f" seed {seed}" if seed is not None else "")
            if tag in done:
                print(f"{name}: resumed", flush=True)
            else:
                t = time.perf_counter()
                done[tag] = run_one(what, seed)
                save_resume(self.partial, "settings", self.key, "runs", done)
                print(f"{name}: {time.perf_counter() - t:.1f} s", flush=True)
            out.setdefault(label, []).append(done[tag])
        return out

    def write(self, payload: dict, plot: Callable[[Path], None] | None = None) -> Path:
        """The result JSON with its provenance and the plot beside it. The resume file stays (git-ignored): a
        later run over more seeds or variants under the same settings trains only what is new."""
        config = self.exp.model_dump(mode="json", by_alias=True)
        write_result(self.path, payload, config=config, seeds=getattr(self.exp, "seeds", None))
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
