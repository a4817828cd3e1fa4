"""The personalized research experiment (kind ``research``; ``configs/experiments/research_pdr.yaml``): the PDR
loop with vs without its private stage, scored by the hybrid evaluation (lexical metrics + an LLM judge panel),
with the judge's measured agreement with humans beside it.

Tasks: llmrec.research.tasks (PrefEval explicit preferences + LoCoMo development conversations, generated from
the data at run time; about a third LoCoMo). Public corpus: the ARES NQ + MT-RAG passages in an llmrec store.
Each user's memory: the task's sessions in an llmrec Memory. Judges: a panel of two rubric judges per criterion
(reference-guided and not) on ``llm``, plus a pairwise judge with position swap; agreement of the same judge with
MT-RAG human faithfulness labels (Cohen's kappa, Spearman) is measured in the same run."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from llmrec.config import StrictConfig, llmrec_home
from llmrec.embed import default_embedder
from llmrec.eval.calibration import calibrate, mtrag_judge_items
from llmrec.eval.judge import JudgeItem, JudgePanel, PairwiseJudge, RubricJudge
from llmrec.experiments.kinds import ExperimentKind, validate
from llmrec.experiments.runner import Runner
from llmrec.io import settings_key
from llmrec.lexical import lexical_scores
from llmrec.llm import LLMConfig, make_llm
from llmrec.memory import Memory
from llmrec.rerank.pipeline import QADataConfig, load_qa
from llmrec.research import MemorySource, PersonalizedResearcher, ResearchConfig, StoreSource
from llmrec.research.tasks import locomo_tasks, prefeval_tasks
from llmrec.results import grouped_bars, pyplot
from llmrec.store import VectorStore


class ResearchExperiment(StrictConfig):
    """The research benchmark: task sources, the agent's settings, judges and calibration data."""
    name: str
    output: str | None = None  # default eval/results/<name>.json
    tasks: int = 30
    prefeval_path: str = "prefeval"
    prefeval_per_topic: int = 1
    locomo_path: str = "locomo"
    locomo_per_conversation: int = 2  # development conversations only
    corpus: QADataConfig = QADataConfig()  # the public corpus
    calibration_path: str = "mtrag_human_eval"  # human faithfulness labels for the judge agreement
    calibration_items: int = 60
    research: ResearchConfig = ResearchConfig(max_iterations=2, max_new_tokens=64)
    llm: LLMConfig = LLMConfig(dtype="bfloat16")


def _load(raw: dict, path: Path) -> ResearchExperiment:
    return validate(ResearchExperiment, raw, path)


def run_research(cfg: ResearchExperiment, out: str | Path | None = None) -> dict:
    """Run the research loop with and without its private stage on every task, score lexically and with the judge
    panel, and check the judge against human labels."""
    t0 = time.perf_counter()
    pe = prefeval_tasks(cfg.prefeval_path, cfg.prefeval_per_topic)
    lo = locomo_tasks(cfg.locomo_path, cfg.locomo_per_conversation)
    n_lo = min(len(lo), cfg.tasks // 3)  # about a third LoCoMo, the rest PrefEval
    tasks = pe[: cfg.tasks - n_lo] + lo[:n_lo]
    llm = make_llm(cfg.llm)
    emb = default_embedder(cache_path=str(llmrec_home() / "embeddings.sqlite"))
    tmp = Path(tempfile.mkdtemp(prefix="llmrec-research-bench-"))
    corpus = load_qa(cfg.corpus)
    public = VectorStore(tmp / "public")
    ids = list(corpus.passages)
    for s in range(0, len(ids), 512):
        chunk = ids[s : s + 512]
        public.add("public", chunk, [corpus.passages[i] for i in chunk], emb.encode([corpus.passages[i] for i in chunk]))
    memory = Memory(VectorStore(tmp / "memory"), emb)
    for t in tasks:
        for s in t["sessions"]:
            if s["messages"]:
                memory.add(t["user_id"], s["messages"], s["session_id"])
    print(f"{len(tasks)} tasks, {len(ids)} public passages, memories loaded ({time.perf_counter() - t0:.0f} s)", flush=True)

    rcfg = cfg.research
    runs: dict[str, list[dict]] = {}
    # each variant's research runs are one item of the runner (a killed run resumes after the finished variant)
    runner = Runner(cfg, settings_key(cfg, exclude=("name", "output")), out)
    for variant, private_stage in (("personalized", True), ("no private stage", False)):
        def researched(private_stage=private_stage) -> dict:
            r = PersonalizedResearcher(llm, [MemorySource(memory)], [StoreSource(public, emb)],
                                       config=rcfg.model_copy(update={"private_stage": private_stage}))
            rows = []
            for t in tasks:
                res = r.run(t["user_id"], t["question"])
                rows.append({"task_id": t["task_id"], "source": t["source"], "report": res.report,
                             "claims_text": " ".join(c.text for c in res.claims), "stop_reason": res.stop_reason,
                             "tokens": res.trace["tokens"], "private_evidence": sum(e.private for e in res.evidence),
                             "lexical": lexical_scores(" ".join(c.text for c in res.claims), t["reference"])})
            return {"rows": rows}

        runs[variant] = runner.cached({"label": f"research {variant}"}, researched)["rows"]
        print(variant, "done", f"({time.perf_counter() - t0:.0f} s)", flush=True)

    panels = {crit: JudgePanel([RubricJudge(llm, crit, reference_guided=True, max_new_tokens=80, name=f"{crit}:ref"),
                                RubricJudge(llm, crit, max_new_tokens=80, name=f"{crit}:plain")])
              for crit in ("personalization", "factuality")}
    summary = {}
    for variant, rows in runs.items():
        items = [JudgeItem(t["question"], o["claims_text"], reference=t["reference"], profile=t["must_respect"])
                 for t, o in zip(tasks, rows)]
        judged = {crit: p.judge_many(items) for crit, p in panels.items()}
        for i, o in enumerate(rows):
            o["judges"] = {crit: {"score": judged[crit][i].score,
                                  "judgments": [j.to_dict() for j in judged[crit][i].judgments]} for crit in judged}
        lex = {k: float(np.mean([o["lexical"][k] for o in rows])) for k in rows[0]["lexical"]}
        judge_means = {crit: float(np.nanmean([np.nan if o["judges"][crit]["score"] is None else o["judges"][crit]["score"]
                                               for o in rows])) for crit in panels}
        summary[variant] = {"lexical": lex, "judge_panel": judge_means,
                            "tokens_mean": float(np.mean([o["tokens"]["prompt"] + o["tokens"]["completion"] for o in rows])),
                            "private_evidence_mean": float(np.mean([o["private_evidence"] for o in rows]))}
        print(variant, summary[variant], flush=True)
    pj = PairwiseJudge(llm, "personalization", max_new_tokens=48)
    pairs = [(JudgeItem(t["question"], p["claims_text"], reference=t["reference"], profile=t["must_respect"]),
              JudgeItem(t["question"], n["claims_text"], reference=t["reference"], profile=t["must_respect"]))
             for t, p, n in zip(tasks, runs["personalized"], runs["no private stage"])]
    pw = pj.compare_many(pairs)
    pairwise = {"personalized_wins": sum(p.winner == "A" for p in pw), "no_private_wins": sum(p.winner == "B" for p in pw),
                "ties_or_inconsistent": sum(p.winner == "tie" for p in pw),
                "position_consistent": sum(p.consistent for p in pw), "n": len(pw)}
    print("pairwise", pairwise, flush=True)
    cal_items, human, _ = mtrag_judge_items(cfg.calibration_path, "faithfulness", limit=cfg.calibration_items)
    agreement = {}
    for name, j in (("faithfulness:ref", RubricJudge(llm, "faithfulness", reference_guided=True, max_new_tokens=80)),
                    ("faithfulness:plain", RubricJudge(llm, "faithfulness", max_new_tokens=80))):
        agreement[name] = calibrate(j.judge_many(cal_items), human)
        print("judge agreement", name, {k: agreement[name][k] for k in ("spearman", "kappa_quadratic", "scored")}, flush=True)
    payload = {"llm": llm.model_id, "tasks": len(tasks), "by_source": {s: sum(t["source"] == s for t in tasks)
                                                                      for s in ("prefeval", "locomo")},
               "config": rcfg.model_dump(), "summary": summary, "pairwise_personalization": pairwise,
               "judge_agreement_with_humans_mtrag": agreement, "runs": runs, "seconds": time.perf_counter() - t0}
    out_path = runner.write(payload, plot=lambda png: plot(summary, png), config=cfg.model_dump(mode="json"))
    return {"output": str(out_path), "summary": summary}



def plot(summary: dict, path: Path) -> None:
    """Lexical scores (0-1 and sacrebleu's 0-100 on separate axes) and judge-panel means per variant."""
    plt = pyplot()

    first = next(iter(summary.values()))
    unit = [k for k in first["lexical"] if k not in ("bleu", "chrf")]  # 0-1 metrics
    pct = [k for k in first["lexical"] if k in ("bleu", "chrf")]  # sacrebleu's 0-100 scale
    crit = list(first["judge_panel"])
    fig, (ax1, ax3, ax2) = plt.subplots(1, 3, figsize=(14, 4.2), gridspec_kw={"width_ratios": [3, 2, 3]})
    grouped_bars(ax1, unit, {v: [s["lexical"][k] for k in unit] for v, s in summary.items()}, ylabel="score (0-1)")
    ax1.set_ylim(0, 1)
    grouped_bars(ax3, pct, {v: [s["lexical"][k] for k in pct] for v, s in summary.items()},
                 ylabel="sacrebleu score (0-100)")
    grouped_bars(ax2, crit, {v: [s["judge_panel"][c] or 0.0 for c in crit] for v, s in summary.items()},
                 ylabel="judge panel mean (rubric 1-5; 0 = no parsable score)")
    ax2.set_ylim(0, 5)
    ax1.set_title("ROUGE / token F1 vs reference")
    ax3.set_title("BLEU / chrF vs reference")
    ax2.set_title("judge panel")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")


KIND = ExperimentKind(load=_load, run=run_research)
