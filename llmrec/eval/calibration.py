"""Judge calibration: how well does an LLM judge agree with human labels?

``mtrag_judge_items`` turns the MT-RAG human-evaluation subset into judge items (question = last user turn,
answer = a system's response, documents = the task's gold passages, reference = the reference answer) with
the median of the three annotators' 1-4 ratings for one criterion. ``calibrate`` reports Spearman's rho on
the raw scores and Cohen's kappa (quadratic weights) after mapping the judge's 1-5 onto the humans' 1-4
scale linearly (``to_four_point``); unparsable judgments are counted and left out."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from llmrec.eval.judge import JudgeItem, Judgment
from llmrec.results import pyplot
from llmrec.stats import cohen_kappa, fmt_stat, kappa_reason, nan_to_none, spearman, spearman_reason

__all__ = ["calibrate", "cohen_kappa", "mtrag_judge_items", "plot_calibration", "spearman", "to_four_point"]


def to_four_point(score: float) -> int:
    """Judge 1-5 -> human 1-4, linearly, rounding halves up: 1, 2, 3, 4, 5 -> 1, 2, 3, 3, 4."""
    return int(np.floor(1 + 3 * (score - 1) / 4 + 0.5))


def mtrag_judge_items(path: str | Path, criterion: str = "faithfulness", models: Sequence[str] | None = None,
                      limit: int | None = None) -> tuple[list[JudgeItem], list[float], list[dict]]:
    """MT-RAG responses as judge items with the human median rating of ``criterion`` and metadata, optionally
    only ``models`` and the first ``limit``."""
    path = Path(path)
    if path.is_dir():
        path = path / "reference_subset_with_human_evaluations.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    docs = {d["document_id"]: d["text"] for d in doc["documents"]}
    tasks = {t["task_id"]: t for t in doc["tasks"]}
    items, human, meta = [], [], []
    for ev in doc["evaluations"]:
        if models and ev["model_id"] not in models:
            continue
        ann = ev.get("annotations", {}).get(criterion)
        t = tasks.get(ev["task_id"])
        if not ann or t is None:
            continue
        vals = [float(v["value"]) for v in ann.values() if isinstance(v, dict) and str(v.get("value", "")).strip()]
        turns = [x["text"] for x in t.get("input", []) if x.get("speaker") == "user"]
        if not vals or not turns:
            continue
        items.append(JudgeItem(question=turns[-1], answer=ev["model_response"],
                               reference=(t.get("targets") or [{}])[0].get("text"),
                               documents=[docs[c["document_id"]] for c in t.get("contexts", []) if c["document_id"] in docs]))
        human.append(float(np.median(vals)))
        meta.append({"task_id": ev["task_id"], "model_id": ev["model_id"]})
        if limit and len(items) >= limit:
            break
    return items, human, meta


def calibrate(judgments: Sequence[Judgment], human: Sequence[float]) -> dict:
    """Agreement of judgments with human ratings: Spearman's rho, Cohen's kappa (plain and quadratic) on the 1-4
    scale, a confusion matrix; undefined statistics are None with the reason."""
    pairs = [(j.score, h) for j, h in zip(judgments, human) if j.score is not None]
    out = {"n": len(judgments), "scored": len(pairs), "unparsable": len(judgments) - len(pairs),
           "explicit_score_format": sum(j.parsed == "explicit" for j in judgments)}
    if len(pairs) < 2:
        why = f"{len(pairs)} parsable judgment(s)"
        return {**out, "spearman": None, "kappa_quadratic": None, "kappa": None, "spearman_why": why,
                "kappa_why": why}
    js, hs = [p[0] for p in pairs], [p[1] for p in pairs]
    j4, h4 = [to_four_point(s) for s in js], [int(np.floor(h + 0.5)) for h in hs]
    out.update({"spearman": nan_to_none(spearman(js, hs)), "spearman_why": spearman_reason(js, hs),
                "kappa_quadratic": nan_to_none(cohen_kappa(j4, h4, [1, 2, 3, 4], "quadratic")),
                "kappa": nan_to_none(cohen_kappa(j4, h4, [1, 2, 3, 4])), "kappa_why": kappa_reason(j4, h4),
                "judge_mean": float(np.mean(js)), "human_mean": float(np.mean(hs)),
                "confusion": [[int(sum(1 for a, b in zip(h4, j4) if a == hh and b == jj)) for jj in range(1, 5)]
                              for hh in range(1, 5)]})
    return out


def plot_calibration(results: dict, path: str | Path) -> None:
    """One confusion-matrix panel per judge (human median vs judge mapped to 1-4), written to ``path``."""
    plt = pyplot()

    names = list(results)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False)
    for ax, n in zip(axes[0], names):
        r = results[n]
        m = np.array(r.get("confusion") or np.zeros((4, 4)))
        ax.imshow(m, cmap="Blues")
        for i in range(4):
            for j in range(4):
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=9)
        ax.set_xticks(range(4), [1, 2, 3, 4])
        ax.set_yticks(range(4), [1, 2, 3, 4])
        ax.set_xlabel("judge (mapped to 1-4)")
        ax.set_ylabel("human median")
        ax.set_title(f"{n}\nSpearman {fmt_stat(r.get('spearman'))}  weighted kappa {fmt_stat(r.get('kappa_quadratic'))}",
                     fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
