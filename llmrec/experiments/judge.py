"""The judge-calibration experiment (kind ``judge``; ``configs/experiments/judge_calibration.yaml``): how far
the bundled small model can go as a judge of MT-RAG faithfulness, against the three annotators' median.

Split: MT-RAG conversations (the part of a task id before ``<::>``) are shuffled with ``seed`` and cut into
a fitting part and a held-out part; every response of a conversation stays on one side. Agreement is reported
on the held-out part only; nothing is chosen on it. Methods:

- ``rubric``: the rubric judge (reasoning, then "Score: N", parsed).
- ``expected``: G-Eval-style, the expected score under the probabilities of the score tokens 1-5.
- ``expected_calibrated``: the same score mapped onto the 1-4 human scale by quantiles fitted on the fitting
  part (a monotone map: Spearman unchanged, kappa can move).
- ``hybrid``: a multinomial logistic regression (scikit-learn) on the fitting part over lexical features
  (answer vs documents: token F1, ROUGE-L, share of answer words found in the documents; answer length;
  refusal words) plus the expected-score judge's probabilities; its expected class is the score.
- ``lexical_only``: the same regression without the LLM's features (what the LLM adds, measured).
- ``pairwise`` / ``pairwise_likelihood``: two responses to the same held-out task whose human medians differ,
  judged in both orders (generated "Winner: A/B/tie", or the probabilities of "A" vs "B"); reported: position
  consistency (the same response wins in both orders), agreement with the human preference, and the share
  of wins that went to whichever answer was shown first (0.5 = no position bias).
"""
from __future__ import annotations

import math
import random
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np

from llmrec.config import StrictConfig
from llmrec.data.catalog import dataset_dir
from llmrec.eval.calibration import calibrate, mtrag_judge_items, plot_calibration
from llmrec.eval.judge import (ExpectedScoreJudge, JudgeItem, Judgment, PairwiseJudge, RubricJudge,
                               parse_winner)
from llmrec.experiments.kinds import ExperimentKind, validate
from llmrec.experiments.runner import Runner
from llmrec.io import settings_key
from llmrec.lexical import normalize, rouge_l, token_f1
from llmrec.llm import LLMConfig, make_llm

Method = Literal["rubric", "expected", "expected_calibrated", "hybrid", "lexical_only", "pairwise",
                 "pairwise_likelihood"]
_REFUSAL = re.compile(r"\b(don'?t know|do not know|cannot|can'?t|unable|not sure|no information|not mentioned)\b", re.I)


class JudgeExperiment(StrictConfig):
    """Judge calibration on MT-RAG: data, criterion, the conversation split, the LLM and the methods."""
    name: str
    output: str | None = None  # default eval/results/<name>.json
    data: str = "mtrag_human_eval"
    criterion: Literal["faithfulness", "completeness", "appropriateness"] = "faithfulness"
    seed: int = 0
    fit_fraction: float = 0.5  # share of conversations in the fitting part
    limit: int | None = None  # only the first N responses (a slice for smoke runs)
    llm: LLMConfig = LLMConfig(dtype="bfloat16")
    methods: list[Method] = ["rubric", "expected", "expected_calibrated", "hybrid", "lexical_only"]
    max_document_words: int | None = 120  # each document clipped for the LLM judge (a 135M model on CPU; the
    # lexical features always see the full documents); None: whole documents
    rubric_max_new_tokens: int = 64
    pairwise_pairs: int = 60  # held-out pairs compared (a seeded sample of all pairs with differing humans)
    pairwise_max_new_tokens: int = 48


def conversation_split(meta: list[dict], fraction: float, seed: int) -> np.ndarray:
    """True for responses whose conversation falls in the fitting part (seeded shuffle of conversations)."""
    convs = sorted({m["task_id"].split("<::>")[0] for m in meta})
    random.Random(seed).shuffle(convs)
    fit = set(convs[: max(1, int(round(len(convs) * fraction)))])
    return np.array([m["task_id"].split("<::>")[0] in fit for m in meta])


def clip_documents(item: JudgeItem, words: int | None) -> JudgeItem:
    """The item with each document cut to its first ``words`` words (unchanged when ``words`` is None)."""
    if words is None:
        return item
    return replace(item, documents=[" ".join(d.split()[:words]) for d in item.documents])


def lexical_features(item) -> list[float]:
    """Reference-free lexical evidence of grounding: answer vs its documents, length, refusal words."""
    docs = " ".join(item.documents)
    words = normalize(item.answer).split()
    doc_words = set(normalize(docs).split())
    found = sum(w in doc_words for w in words) / len(words) if words else 0.0
    return [token_f1(item.answer, [docs]) if docs else 0.0, rouge_l(item.answer, docs) if docs else 0.0, found,
            math.log1p(len(words)), float(bool(_REFUSAL.search(item.answer)))]


def quantile_map(fit_scores: np.ndarray, fit_labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Scores mapped onto 1-4 so that the fitting part's label shares are reproduced (monotone)."""
    shares = np.array([np.mean(fit_labels <= k) for k in (1, 2, 3)])
    cuts = np.quantile(fit_scores, shares)
    return 1 + np.searchsorted(cuts, scores, side="right").astype(float)


def heldout_pairs(meta: list[dict], human: np.ndarray, held: np.ndarray, limit: int,
                  seed: int) -> list[tuple[int, int]]:
    """Index pairs (i, j) of held-out responses to the same task with different human medians, a seeded
    sample of at most ``limit``."""
    by_task: dict[str, list[int]] = {}
    for i, m in enumerate(meta):
        if held[i]:
            by_task.setdefault(m["task_id"], []).append(i)
    pairs = [(a, b) for ids in by_task.values() for x, a in enumerate(ids) for b in ids[x + 1:]
             if human[a] != human[b]]
    random.Random(seed).shuffle(pairs)
    return sorted(pairs[:limit])


def pairwise_agreement(first_wins: np.ndarray, human_first: np.ndarray) -> dict:
    """Agreement of pairwise verdicts with human preferences. ``first_wins``: [n, 2] verdicts for the pair's
    first response in the A/B order and in the swapped order (1 win, 0 loss, 0.5 tie/unparsed; or
    probabilities); ``human_first``: True where humans rated the first response higher."""
    n = len(first_wins)
    if n == 0:
        return {"pairs": 0}
    side = np.sign(first_wins - 0.5)  # +1 first response preferred, -1 second, 0 undecided
    consistent = (side[:, 0] == side[:, 1]) & (side[:, 0] != 0)
    mean = first_wins.mean(axis=1)  # the position-debiased preference
    truth = np.where(human_first, 1.0, -1.0)
    decided = np.sign(mean - 0.5)
    shown_first = np.concatenate([first_wins[:, 0], 1.0 - first_wins[:, 1]])  # wins of whatever came first
    return {"pairs": n, "position_consistency": float(consistent.mean()),
            "accuracy_consistent": (float((side[consistent, 0] == truth[consistent]).mean())
                                    if consistent.any() else None),
            "accuracy_debiased": float(np.mean(np.where(decided == 0, 0.5, decided == truth))),
            "first_position_win_share": float(shown_first.mean())}


def _as_judgments(name: str, scores: np.ndarray, criterion: str) -> list[Judgment]:
    # scores on the human 1-4 scale -> the 1-5 judge scale calibrate() expects (inverse of to_four_point)
    return [Judgment(name, criterion, float(1 + (s - 1) * 4 / 3), "", f"{s:.3f}", "expected") for s in scores]


def run_judge(exp: JudgeExperiment, out: str | Path | None = None) -> dict:
    """Every method on the held-out conversations; fitting only on the fitting part. Writes JSON + plot."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    path_in = exp.data if Path(exp.data).exists() else dataset_dir(exp.data)
    items, human, meta = mtrag_judge_items(path_in, exp.criterion, limit=exp.limit)
    human = np.array(human)
    labels = np.floor(human + 0.5).astype(int)
    fit = conversation_split(meta, exp.fit_fraction, exp.seed)
    held = ~fit
    llm = make_llm(exp.llm)
    results, scores_by = {}, {}
    probs = None
    shown = [clip_documents(it, exp.max_document_words) for it in items]  # what the LLM judges read
    # the LLM's work (score distributions, rubric verdicts, pairwise verdicts) is kept by the runner as each
    # finishes: a killed run resumes, and a run with other methods or a refit reuses it
    runner = Runner(exp, settings_key(exp, exclude=("name", "output", "methods")), out)
    if {"expected", "expected_calibrated", "hybrid"} & set(exp.methods):
        probs = np.array(runner.cached({"label": "expected-score probabilities"}, lambda: {
            "probs": ExpectedScoreJudge(llm, exp.criterion, progress=True).probabilities(shown).tolist()})["probs"])
        expected = probs @ np.arange(1, 6)
        scores_by["expected"] = expected
    if "rubric" in exp.methods:
        held_items = [it for it, h in zip(shown, held) if h]
        results["rubric"] = runner.cached({"label": "rubric"}, lambda: calibrate(
            RubricJudge(llm, exp.criterion, max_new_tokens=exp.rubric_max_new_tokens, progress=True)
            .judge_many(held_items), list(human[held])))
    if "expected" in exp.methods:
        results["expected"] = calibrate([Judgment("expected", exp.criterion, float(s), "", "", "expected")
                                         for s in expected[held]], list(human[held]))
    if "expected_calibrated" in exp.methods:
        mapped = quantile_map(expected[fit], labels[fit], expected[held])
        results["expected_calibrated"] = calibrate(_as_judgments("expected_calibrated", mapped, exp.criterion),
                                                   list(human[held]))
    lex = np.array([lexical_features(it) for it in items])
    for method, feats in (("hybrid", None if probs is None else np.hstack([lex, probs, expected[:, None]])),
                          ("lexical_only", lex)):
        if method not in exp.methods or feats is None:
            continue
        scaler = StandardScaler().fit(feats[fit])
        clf = LogisticRegression(max_iter=2000, C=1.0).fit(scaler.transform(feats[fit]), labels[fit])
        p = clf.predict_proba(scaler.transform(feats[held]))
        score = p @ clf.classes_.astype(float)  # expected human label
        scores_by[method] = np.zeros(len(items))
        scores_by[method][held] = score
        results[method] = calibrate(_as_judgments(method, score, exp.criterion), list(human[held]))
    wants_pairs = {"pairwise", "pairwise_likelihood"} & set(exp.methods)
    pairs = heldout_pairs(meta, human, held, exp.pairwise_pairs, exp.seed) if wants_pairs else []
    human_first = np.array([human[a] > human[b] for a, b in pairs])
    if pairs:
        judge = PairwiseJudge(llm, exp.criterion, max_new_tokens=exp.pairwise_max_new_tokens)
        shown_pairs = [(shown[a], shown[b]) for a, b in pairs]
        if "pairwise_likelihood" in exp.methods:
            results["pairwise_likelihood"] = runner.cached({"label": "pairwise_likelihood"}, lambda: pairwise_agreement(
                judge.preferences(shown_pairs, progress=True), human_first))
        if "pairwise" in exp.methods:
            def verdicts() -> dict:
                value = {"A": 1.0, "B": 0.0}
                got = judge.compare_many(shown_pairs)
                wins = np.array([[value.get(parse_winner(v.raw[0]), 0.5),
                                  1.0 - value.get(parse_winner(v.raw[1]), 0.5)] for v in got]).reshape(-1, 2)
                return {**pairwise_agreement(wins, human_first),
                        "unparsed": int(sum(parse_winner(r) is None for v in got for r in v.raw))}

            results["pairwise"] = runner.cached({"label": "pairwise"}, verdicts)
        if "hybrid" in scores_by:  # the pointwise hybrid judge's order on the same pairs, for comparison
            h = scores_by["hybrid"]
            diff = np.array([[h[a] > h[b], h[a] > h[b]] for a, b in pairs], float)
            diff[[h[a] == h[b] for a, b in pairs]] = 0.5
            results["pairwise_from_hybrid"] = pairwise_agreement(diff, human_first)
    for name, r in results.items():
        if "pairs" in r:
            print(f"{name:20s} held-out pairs={r['pairs']} position consistency {r.get('position_consistency')} "
                  f"accuracy (debiased) {r.get('accuracy_debiased')}", flush=True)
            continue
        print(f"{name:20s} held-out n={r['scored']} Spearman {r['spearman']} weighted kappa {r['kappa_quadratic']}",
              flush=True)
    payload = {"criterion": exp.criterion, "llm": llm.model_id, "responses": len(items),
               "fit_responses": int(fit.sum()), "heldout_responses": int(held.sum()),
               "fit_conversations": len({m["task_id"].split("<::>")[0] for m, f in zip(meta, fit) if f}),
               "heldout_conversations": len({m["task_id"].split("<::>")[0] for m, f in zip(meta, fit) if not f}),
               "split": f"conversations shuffled with seed {exp.seed}, {exp.fit_fraction:.0%} for fitting",
               "results": results, "seconds": time.perf_counter() - t0}
    path = runner.write(payload, plot=lambda png: plot_calibration(results, png), seeds=[exp.seed],
                        config=exp.model_dump(mode="json"))
    return {"output": str(path), "results": results}


def _load(raw: dict, path: Path) -> JudgeExperiment:
    return validate(JudgeExperiment, raw, path)


KIND = ExperimentKind(load=_load, run=run_judge)
