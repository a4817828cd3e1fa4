"""One parity table from the experiments' `parity` blocks (each written by `llmrec experiment <name>`).

    python eval/parity_table.py [--out eval/results/parity]

Reads eval/results/{graph_parity,ctr_parity,ctr_din_parity,sequential_parity}.json (those that exist) and
writes <out>.md (model, peer, splits, pairs, ours and the peer's mean ± std, the paired difference, its worst
pair, parity, the peer's time over ours, and llmrec against itself: the std and worst of the differences
between two of our seeds on the same split, the noise any single pair carries) and <out>.png (each row's paired difference ± one std, the -0.005
floor marked). Parity as the harness decides it: the mean paired difference (ours - peer; lower-is-better
metrics flipped) is within one std of the differences and never below -0.005."""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from llmrec.results import pyplot, save_figure

SOURCES = {  # experiment -> the metric its table reports (the others stay in the JSON)
    "graph_parity": "ndcg@20",
    "ctr_parity": "auc",
    "ctr_din_parity": "auc",
    "sequential_parity": "ndcg@10",
}


def rows(results: Path) -> list[dict]:
    out = []
    for name, metric in SOURCES.items():
        path = results / f"{name}.json"
        if not path.exists():
            continue
        d = json.loads(path.read_text())
        for r in d.get("parity", []):
            if r["metric"] == metric:
                out.append({"experiment": name, "commit": d.get("git_commit", "")[:7], **r,
                            **self_pairs(d, r["variant"], metric)})
    return out


def self_pairs(result: dict, variant: str, metric: str) -> dict:
    """Our own seeds paired with each other on the same data set (every ordered pair): what a library
    scores against itself, the floor any per-pair criterion has to clear."""
    sign = -1.0 if metric == "logloss" else 1.0
    d = np.array([sign * (a["test"][metric] - b["test"][metric]) for res in result["datasets"].values()
                  for a, b in itertools.permutations(res["variants"].get(variant, {}).get("runs", []), 2)])
    if len(d) < 2:
        return {}
    return {"self_std": float(d.std(ddof=1)), "self_min": float(d.min())}


def markdown(table: list[dict]) -> str:
    head = ("| model | peer | metric | splits | pairs | llmrec | peer | paired difference | worst pair | parity "
            "| peer time / ours | llmrec vs itself: std, worst |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in table:
        ratio = f"{r['time_ratio']:.2f}x" if r.get("time_ratio") else "-"
        itself = f"{r['self_std']:.4f}, {r['self_min']:+.4f}" if "self_std" in r else "-"
        lines.append(f"| {r['variant']} | {r['peer']} | {r['metric']} | {', '.join(r['datasets'])} | {r['pairs']} "
                     f"| {r['ours_mean']:.4f} ± {r['ours_std']:.4f} | {r['peer_mean']:.4f} ± {r['peer_std']:.4f} "
                     f"| {r['diff_mean']:+.4f} ± {r['diff_std']:.4f} | {r['diff_min']:+.4f} "
                     f"| {'yes' if r['parity'] else 'NO'} | {ratio} | {itself} |")
    return head + "\n".join(lines) + "\n"


def plot(table: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(table) + 1.4))
    labels = [f"{r['variant']} vs {r['peer']} ({r['metric']})" for r in table]
    ys = list(range(len(table)))[::-1]
    for y, r in zip(ys, table):
        ax.errorbar(r["diff_mean"], y, xerr=r["diff_std"], fmt="o", color="tab:green" if r["parity"] else "tab:red",
                    capsize=3)
        ax.plot(r["diff_min"], y, "x", color="grey", ms=5)
    ax.axvline(0, color="black", lw=0.8)
    ax.axvline(-0.005, color="tab:red", lw=0.8, ls="--", label="-0.005 floor")
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_xlabel("paired difference, llmrec - peer (± one std; x: worst pair)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Parity out of sample: split seeds no setting was tuned on")
    save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="eval/results")
    ap.add_argument("--out", default="eval/results/parity")
    a = ap.parse_args()
    table = rows(Path(a.results))
    if not table:
        raise SystemExit(f"{a.results}: none of {sorted(SOURCES)} has a parity block yet (llmrec experiment NAME)")
    Path(a.out + ".md").write_text(markdown(table))
    plot(table, Path(a.out + ".png"))
    print(markdown(table))


if __name__ == "__main__":
    main()
