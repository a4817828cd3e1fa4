"""Why LightGCN stopped early on splits it was not tuned on, and the early-stopping rule that replaced it.

    python eval/graph_early_stopping.py tune                      # split seed 2020 only
    python eval/graph_early_stopping.py compare --split-seed 2    # a split where the old rule stopped early

``tune`` (split seed 2020, the split every graph setting was tuned on; nothing else is looked at): LightGCN
and BPR-MF (graph_benchmark's jobs) trained for 300 epochs without early stopping, 3 seeds, validation
NDCG@10 every epoch. Every candidate rule (``trainer.stop_window`` x ``trainer.patience``, and RecBole's own:
single epochs rounded to 4 decimals, ties count as gains, stop after more than 10 bad epochs) is replayed
with ``llmrec.train.loop.stop_epoch`` on noisy copies of each curve: a centred 15-epoch moving mean plus the
curve's own residuals resampled in blocks of 5 (400 copies per run). Regret = the moving mean's peak minus
its value at the epoch the rule selects (the best single epoch before it stops). The rule chosen for the
graph family: the fewest mean epochs among the rules whose chance of a regret above 0.005 is at most 5% on
LightGCN.

``compare`` (a split seed other than 2020): LightGCN under the old rule (single epochs, patience 10) and
the graph family's defaults, and RecBole 1.2.1's LightGCN on the identical split (its own rule), each with
its validation curve; the mean absolute gap between the two libraries' curves over their common epochs says
whether the loops learn the same curve.

Writes eval/results/graph_early_stopping.json / .png (tune) and graph_early_stopping_split<N>.json / .png
(compare). Single-threaded (set OMP_NUM_THREADS=1); RecBole runs from .venv-peers (`make peers`)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from llmrec.config import repo_root
from llmrec.experiments.harness import job_config, load_experiment, run_recbole_graph
from llmrec.train_job import prepare, train_prepared
from llmrec.results import pyplot, save_figure, write_result
from llmrec.train import TrainerConfig
from llmrec.models.registry import family_trainer_defaults
from llmrec.train.loop import stop_epoch, stopping_score

WINDOWS, PATIENCES = (1, 3, 5, 8, 10, 12), (10, 15, 20, 25)
OLD = {"stop_window": 1, "patience": 10}  # the rule graph_benchmark ran with before
REGRET, RISK = 0.005, 0.05


def train(model: str, split_seed: int, seed: int, trainer: dict) -> dict:
    """One graph_benchmark job on ``split_seed`` with trainer overrides: its result dict (history included)."""
    exp = load_experiment("graph_benchmark", [f"datasets.ml100k.graph.split_seed={split_seed}"])
    variant = next(v for v in exp.variants if v.key == model).model_copy(update={"trainer": trainer})
    job = job_config(exp, "ml100k", variant, seed)
    _, result = train_prepared(job, prepare(job))
    print(model, "split", split_seed, "seed", seed, "epochs", len(result["history"]), "best", result["best_epoch"],
          "valid ndcg@10", round(result["valid"]["ndcg@10"], 4), "test ndcg@20", round(result["test"]["ndcg@20"], 4),
          flush=True)
    return result


def recbole_stop_epoch(curve: list[float], stopping_step: int = 10) -> int:
    """RecBole 1.2.1's rule on a curve: 4-decimal values, a tie counts as a gain, stop after more than
    ``stopping_step`` epochs without one."""
    best, bad = -1.0, 0
    for t, x in enumerate(curve, 1):
        x = round(x, 4)
        if x >= best:
            best, bad = x, 0
        else:
            bad += 1
            if bad > stopping_step:
                return t
    return len(curve)


def moving_mean(v: np.ndarray, half: int = 7) -> np.ndarray:
    """Centred moving mean (shorter at the ends)."""
    return np.array([v[max(0, t - half): t + half + 1].mean() for t in range(len(v))])


def noisy_copies(v: np.ndarray, n: int, rng: np.random.Generator, block: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(trend, [n, len(v)] copies): the moving mean plus residuals resampled in blocks."""
    trend = moving_mean(v)
    resid = v - trend
    starts = rng.integers(0, len(v) - block, (n, len(v) // block + 1))
    idx = (starts[:, :, None] + np.arange(block)).reshape(n, -1)[:, :len(v)]
    return trend, trend + resid[idx]


def replay(curves: list[np.ndarray], rule, n: int, seed: int = 0) -> dict:
    """Mean epochs, mean regret and P(regret > REGRET) of ``rule`` (curve -> stop epoch) over noisy copies."""
    rng = np.random.default_rng(seed)
    epochs, regrets = [], []
    for v in curves:
        trend, copies = noisy_copies(v, n, rng)
        for c in copies:
            e = rule(list(c))
            sel = int(np.argmax(c[:e]))
            epochs.append(e)
            regrets.append(float(trend.max() - trend[sel]))
    r = np.array(regrets)
    return {"mean_epochs": float(np.mean(epochs)), "mean_regret": float(r.mean()),
            "p_regret_over": float((r > REGRET).mean()), "p99_regret": float(np.quantile(r, 0.99))}


def tune(args) -> None:
    runs = {m: [train(m, 2020, s, {"patience": 10_000}) for s in args.seeds] for m in ("lightgcn", "mf")}
    curves = {m: [np.array([h["valid_ndcg@10"] for h in r["history"]]) for r in rs] for m, rs in runs.items()}
    rules = {"recbole (stopping_step 10)": recbole_stop_epoch}
    for w in WINDOWS:
        for p in PATIENCES:
            c = TrainerConfig(stop_window=w, patience=p)
            rules[f"window {w}, patience {p}"] = (lambda v, c=c: stop_epoch(v, c))
    table = {m: {name: replay(curves[m], rule, args.copies) for name, rule in rules.items()} for m in curves}
    safe = {k: v for k, v in table["lightgcn"].items() if k.startswith("window") and v["p_regret_over"] <= RISK}
    chosen = min(safe, key=lambda k: safe[k]["mean_epochs"]) if safe else None
    for m, rows in table.items():
        print(f"\n{m}: rule, mean epochs, mean regret, P(regret > {REGRET})")
        for name, r in rows.items():
            print(f"  {name:28s} {r['mean_epochs']:6.1f} {r['mean_regret']:.4f} {r['p_regret_over']:.3f}"
                  + ("  <- chosen" if name == chosen else ""))
    out = Path(args.out)
    write_result(out, {"experiment": "graph_early_stopping", "split_seed": 2020, "seeds": args.seeds,
                       "copies_per_run": args.copies, "regret_threshold": REGRET, "risk": RISK, "chosen": chosen,
                       "rules": table,
                       "curves": {m: [{"seed": s, "valid_ndcg@10": c.tolist(),
                                       "peak_epoch": int(np.argmax(moving_mean(c))) + 1}
                                      for s, c in zip(args.seeds, cs)] for m, cs in curves.items()}},
                 seeds=args.seeds)
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
    for m, colour in (("lightgcn", "tab:blue"), ("mf", "tab:orange")):
        for n, c in enumerate(curves[m]):
            a.plot(np.arange(1, len(c) + 1), c, color=colour, lw=0.8, label=m if n == 0 else None)
    a.set(title="split seed 2020: validation NDCG@10, no early stopping", xlabel="epoch", ylabel="NDCG@10")
    a.legend()
    for name, r in table["lightgcn"].items():
        colour = "tab:red" if name == chosen else ("tab:gray" if name.startswith("recbole") else "tab:blue")
        b.scatter(r["mean_epochs"], r["p_regret_over"], color=colour, s=14)
        if name == chosen or name.startswith("recbole") or name == "window 1, patience 10":
            b.annotate(name, (r["mean_epochs"], r["p_regret_over"]), fontsize=7)
    b.axhline(RISK, color="tab:red", lw=0.6, ls="--")
    b.set(title=f"LightGCN: each rule on noisy copies (red: chosen)", xlabel="mean epochs trained",
          ylabel=f"P(regret > {REGRET})")
    save_figure(fig, out.with_suffix(".png"))


def compare(args) -> None:
    split = args.split_seed
    before = train("lightgcn", split, args.seed, OLD)
    after = train("lightgcn", split, args.seed, {})
    exp = load_experiment("graph_benchmark", [f"datasets.ml100k.graph.split_seed={split}"])
    variant = next(v for v in exp.variants if v.key == "lightgcn")
    root = repo_root()
    peer = run_recbole_graph(root / ".venv-peers/bin/python", root, exp, "ml100k", variant, [args.seed],
                             "lightgcn")["runs"][0]
    ours = [h["valid_ndcg@10"] for h in after["history"]]
    theirs = [h["ndcg@10"] for h in peer["history"]]
    common = min(len(ours), len(theirs))
    gap = float(np.mean(np.abs(np.round(ours[:common], 4) - np.array(theirs[:common]))))
    summary = {name: {"epochs": len(r["history"]), "best_epoch": r["best_epoch"], "valid_ndcg@10": r["valid"]["ndcg@10"],
                      "test_ndcg@20": r["test"]["ndcg@20"], "test_ndcg@10": r["test"]["ndcg@10"]}
               for name, r in (("before", before), ("after", after))}
    summary["recbole"] = {"epochs": peer["epochs"], "best_epoch": int(np.argmax(theirs)) + 1,
                          "valid_ndcg@10": peer["valid"]["ndcg@10"], "test_ndcg@20": peer["test"]["ndcg@20"],
                          "test_ndcg@10": peer["test"]["ndcg@10"]}
    for k, v in summary.items():
        print(k, v, flush=True)
    print(f"mean |llmrec - RecBole| validation NDCG@10 over {common} common epochs: {gap:.4f}")
    out = Path(args.out or f"eval/results/graph_early_stopping_split{split}.json")
    write_result(out, {"experiment": "graph_early_stopping compare", "split_seed": split, "seed": args.seed,
                       "summary": summary, "curve_gap_common_epochs": common, "curve_gap_mean_abs": gap,
                       "curves": {"llmrec": ours, "recbole": theirs,
                                  "llmrec_old_rule": [h["valid_ndcg@10"] for h in before["history"]]}},
                 seeds=[args.seed])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(np.arange(1, len(ours) + 1), ours, color="tab:blue", lw=1, label="llmrec LightGCN")
    window = TrainerConfig.model_validate(family_trainer_defaults("graph")).stop_window
    judged = [stopping_score(ours[:t], window) for t in range(1, len(ours) + 1)]
    ax.plot(np.arange(1, len(ours) + 1), [np.nan if j is None else j for j in judged], color="tab:blue", lw=2,
            alpha=0.4, label=f"its {window}-epoch mean (judged)")
    ax.plot(np.arange(1, len(theirs) + 1), theirs, color="tab:gray", lw=1, ls="--", label="RecBole LightGCN")
    for name, x, colour in (("old rule stops", summary["before"]["epochs"], "tab:red"),
                            ("new rule stops", summary["after"]["epochs"], "tab:blue"),
                            ("RecBole stops", summary["recbole"]["epochs"], "tab:gray")):
        ax.axvline(x, color=colour, lw=0.8, ls=":", label=f"{name} ({x})")
    ax.set(title=f"split seed {split}, seed {args.seed}: validation NDCG@10 (test NDCG@20: before "
                 f"{summary['before']['test_ndcg@20']:.4f}, after {summary['after']['test_ndcg@20']:.4f}, "
                 f"RecBole {summary['recbole']['test_ndcg@20']:.4f})", xlabel="epoch", ylabel="NDCG@10")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, out.with_suffix(".png"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tune")
    t.add_argument("--seeds", type=int, nargs="+", default=[2021, 2022, 2023])
    t.add_argument("--copies", type=int, default=400)
    t.add_argument("--out", default="eval/results/graph_early_stopping.json")
    c = sub.add_parser("compare")
    c.add_argument("--split-seed", type=int, default=2)
    c.add_argument("--seed", type=int, default=2021)
    c.add_argument("--out", default=None)
    args = ap.parse_args()
    tune(args) if args.command == "tune" else compare(args)


if __name__ == "__main__":
    main()
