"""Earlier headline figures reproduced through the one experiment runner (issue 35): rerun experiments into
``eval/results/reproduced/`` and compare each headline figure with the committed result JSON.

    python eval/reproduce.py run push_psp session_knn graph_models    # one after another (resumable)
    python eval/reproduce.py table                                    # -> eval/results/reproduced/table.md

A figure is reproduced when the rerun's mean is within two of the committed run's standard deviations over
seeds (a deterministic experiment, std 0: within 1e-6). Every kind's headline figures are read by one small
function below (the recommender kinds' primary metric per variant, the session kind's test HR@20 per
method, ...)."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

OUT = Path("eval/results/reproduced")
Figure = tuple[float, float]  # mean, std over seeds (0 when the experiment has one deterministic run)


def recommender(d: dict) -> dict[str, Figure]:
    """The primary metric of every variant of every data set."""
    out = {}
    for ds, r in d["datasets"].items():
        for v, s in r["variants"].items():
            m = s["primary_metric"]
            out[f"{ds} / {v} / {m}"] = (s[f"{m}_mean"], s[f"{m}_std"])
    return out


def session(d: dict) -> dict[str, Figure]:
    """Test HR@k and MRR@k of every method at its validation-chosen setting (one deterministic run)."""
    out = {}
    for ds, r in d["results"].items():
        for m, x in r["methods"].items():
            for metric, v in x["test"].items():
                if metric != "predictions":
                    out[f"{ds} / {m} / {metric}"] = (v, 0.0)
    return out


def push(d: dict) -> dict[str, Figure]:
    """Test precision@k (mean over campaigns and seed draws) of every method at its chosen setting."""
    return {f"{ds} / {m} / test precision": (x["test_mean"], 0.0)
            for ds, r in d["results"].items() for m, x in r["methods"].items()}


def augment(d: dict) -> dict[str, Figure]:
    """Test recall@10 of every RSIR round (with and without the filter, the duplicates control) and of the
    DiffuASR variants (all users and the short-history users)."""
    s, out = d["summary"], {}
    for system in ("rsir", "rsir_no_filter", "rsir_duplicates"):
        for r in s.get(system, []):
            out[f"{system} / round {r['round']} / recall@10"] = (r["recall@10_mean"], r["recall@10_std"])
    for variant, v in s.get("diffuasr", {}).items():
        if isinstance(v, dict):
            for part in ("all", "short_users"):
                if v.get(part):
                    out[f"diffuasr / {variant} / {part} / recall@10"] = (v[part]["recall@10_mean"],
                                                                         v[part]["recall@10_std"])
    return out


def diversify(d: dict) -> dict[str, Figure]:
    """Test alpha-NDCG of every method at its validation-chosen setting (mean ± std over its seeds)."""
    return {f"{m} / test alpha-NDCG": (x["test_alpha_ndcg"]["mean"], x["test_alpha_ndcg"]["std"])
            for m, x in d["methods"].items()}


def assign(d: dict) -> dict[str, Figure]:
    """Mean AUC and rare-id AUC over the reported chunks, and rows in use, of every assignment method."""
    out = {}
    for m, x in d["summary"].items():
        out[f"{m} / auc"] = (x["auc_mean"], x["auc_std"])
        out[f"{m} / auc on rare ids"] = (x["auc_rare_mean"], x["auc_rare_std"])
    return out


READERS: dict[str, Callable[[dict], dict[str, Figure]]] = {
    "ctr_assign_ml100k": assign, "ctr_assign": assign,
    "diversify_mdp": diversify,
    "sequential_augment": augment,
    "push_psp": push, "session_knn": session, "graph_models": recommender, "graph_benchmark": recommender,
    "minimal_defaults": recommender, "graph_l2q": recommender, "ctr_din": recommender,
    "graph_behaviours": recommender, "ctr_kaml": recommender, "ctr_alpt_ml100k": recommender,
    "ctr_dgenn": recommender, "ctr_miss": recommender, "ctr_helen": recommender,
}


def run(names: list[str]) -> None:
    """Each experiment into ``OUT`` (a killed run resumes from its partial file)."""
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names:
        if name not in READERS:
            raise SystemExit(f"{name}: no reader for its headline figures (have {sorted(READERS)})")
        if (OUT / f"{name}.json").exists():
            print(f"{name}: already reproduced ({OUT / name}.json)", flush=True)
            continue
        subprocess.run([sys.executable, "-m", "llmrec.cli", "experiment", name, "--out", str(OUT / f"{name}.json")],
                       check=True)


def compare(name: str) -> list[dict]:
    """Every headline figure of ``name``: committed, reproduced, and whether it is within the noise."""
    old = READERS[name](json.loads(Path(f"eval/results/{name}.json").read_text()))
    new = READERS[name](json.loads((OUT / f"{name}.json").read_text()))
    rows = []
    for key, (mean, std) in old.items():
        if key not in new:
            rows.append({"experiment": name, "figure": key, "committed": mean, "std": std, "reproduced": None,
                         "within": False})
            continue
        got = new[key][0]
        rows.append({"experiment": name, "figure": key, "committed": mean, "std": std, "reproduced": got,
                     "within": abs(got - mean) <= max(2 * std, 1e-6)})
    return rows


def table() -> None:
    """The comparison of every reproduced experiment, printed and written to ``OUT/table.md``."""
    lines = ["| experiment | figure | committed (± std) | through the runner | within noise |", "|---|---|---|---|---|"]
    for path in sorted(OUT.glob("*.json")):
        if path.stem not in READERS:
            continue
        for r in compare(path.stem):
            got = "missing" if r["reproduced"] is None else f"{r['reproduced']:.4f}"
            lines.append(f"| {r['experiment']} | {r['figure']} | {r['committed']:.4f} ± {r['std']:.4f} | {got} | "
                         f"{'yes' if r['within'] else 'NO'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (OUT / "table.md").write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("run").add_argument("names", nargs="+")
    sub.add_parser("table")
    args = ap.parse_args()
    if args.command == "run":
        run(args.names)
    else:
        table()


if __name__ == "__main__":
    main()
