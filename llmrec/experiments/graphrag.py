"""Align-GRAG vs plain graph RAG (kind ``graphrag``; ``llmrec experiment graphrag_align``; papers.md §12).

**Data.** ARES NQ-synthetic questions with a faithful reference answer, split by a seeded permutation into
``train_queries`` and ``test_queries``. The graph's documents are the gold passages of all those questions
(one closed corpus; no question sees only its own passage). ExplaGraphs / WebQSP are not available here.

**Graph.** The LLM reads every sentence and writes facts (``llmrec.knowledge.graph``; replies cached in
``LLMREC_HOME/generations.sqlite``, so a rerun or a resumed run asks only for what is missing); ungrounded
and malformed lines are dropped and counted; the facts are written to ``<work_dir>/graph.jsonl`` (readable by
``llmrec.data.textgraph.read_triples``, e.g. to serve the graph to the research agent).

**Supervision.** For every training question the LLM writes a short reasoning (``prompts/graph_reasoning.txt``)
from the plain subgraph, the question and the reference answer (``reasoning: llm``; ``reasoning: answer``
uses "question answer" instead).

**Systems**, all answering with ``prompts/graph_answer.txt`` (greedy, ``answer_tokens`` tokens):
no context (the LLM alone), plain graph RAG (``graph_rag``), each Align-GRAG variant (``align_grag`` with
overrides, trained per seed), and two pruning controls at the same keep ratio: random nodes (per seed) and
the nodes most similar to the question.

**Reported** per system: answer token F1 and exact match against the reference answers, the mean number of
prompt tokens the LLM read (its tokenizer's count), the share of context words, the answer coverage (the best
reference's token recall in the context: whether the answer is there to be read), mean over seeds ± std."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from llmrec.config import StrictConfig, llmrec_home
from llmrec.data.qa import QAQuery, load_ares_nq
from llmrec.embed import default_embedder
from llmrec.errors import DataError
from llmrec.experiments.kinds import ExperimentKind, validate
from llmrec.experiments.runner import Runner
from llmrec.io import settings_key
from llmrec.knowledge.graphrag import graph_from_passages, reasoning_texts
from llmrec.lexical import exact_match, normalize, token_f1
from llmrec.llm import GenerationParams, LLMConfig, make_llm
from llmrec.llm.base import generate_with_progress
from llmrec.llm.cache import CachedLLM
from llmrec.models import build_model
from llmrec.models.graphrag.align_grag import AlignExample, prune
from llmrec.models.graphrag.retriever import GraphIndex, Subgraph, select_subgraph
from llmrec.prompts import load_prompt
from llmrec.results import grouped_bars, pyplot, save_figure


class AlignVariant(StrictConfig):
    """A labelled Align-GRAG configuration: overrides of the ``align_grag`` model config."""
    label: str
    overrides: dict[str, Any] = {}


class GraphRAGExperiment(StrictConfig):
    """Questions, the LLM, extraction and answer settings, the systems and seeds."""
    name: str
    output: str | None = None
    ares_path: str
    split_seed: int = 0
    train_queries: int = Field(240, ge=4)
    test_queries: int = Field(100, ge=1)
    llm: LLMConfig = LLMConfig()
    extraction_tokens: int = Field(48, ge=8)
    two_part: bool = True  # keep "subject | description" replies as "subject | is | description"
    reasoning: Literal["llm", "answer"] = "llm"
    reasoning_tokens: int = Field(48, ge=8)
    answer_tokens: int = Field(24, ge=1)
    graph_rag: dict[str, Any] = {}  # overrides of the graph_rag model config
    variants: list[AlignVariant] = [AlignVariant(label="Align-GRAG")]
    # random / question_cosine: pruning controls; answer_oracle: the subgraph pruned by the reference answer (a
    # node's score is the share of answer words its name holds, ties by question cosine): the best any pruning of
    # the same subgraph could keep; gold_passage: the question's gold passages as the context (what the graph was
    # extracted from). The two oracles bound what this generator can do with better context.
    controls: list[Literal["random", "question_cosine", "answer_oracle", "gold_passage"]] = ["random",
                                                                                            "question_cosine"]
    keep_ratio: float = Field(0.5, gt=0.0, le=1.0)  # every variant's and control's share of nodes kept
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    work_dir: str | None = None  # default LLMREC_HOME/graphrag/<name>


def _load(raw: dict, path: Path) -> GraphRAGExperiment:
    return validate(GraphRAGExperiment, raw, path)


def choose_queries(queries: list[QAQuery], n_train: int, n_test: int, seed: int) -> tuple[list[QAQuery], list[QAQuery]]:
    """Questions with a reference answer, seeded permutation, the first ``n_train`` then ``n_test``."""
    usable = [q for q in queries if q.answers]
    if len(usable) < n_train + n_test:
        raise DataError(f"train_queries + test_queries: {n_train + n_test} asked, {len(usable)} questions "
                        "have a reference answer")
    order = np.random.default_rng(seed).permutation(len(usable))
    return [usable[i] for i in order[:n_train]], [usable[i] for i in order[n_train:n_train + n_test]]


def coverage(context: str, answers: list[str]) -> float:
    """The best reference answer's token recall in ``context`` (1: every answer word is there)."""
    have = set(normalize(context).split())
    best = 0.0
    for a in answers:
        words = normalize(a).split()
        if words:
            best = max(best, sum(w in have for w in words) / len(words))
    return best


def answer_all(llm, questions: list[QAQuery], contexts: list[str | None], tokens: int, desc: str) -> dict:
    """Answers of the LLM from each context (``None``: no context) and their metrics."""
    tpl = load_prompt("graph_answer")
    msgs = []
    for q, c in zip(questions, contexts):
        if c is None:
            msgs.append([{"role": "user", "content": f"Question: {q.question}\nAnswer:"}])
        else:
            msgs.append(tpl.messages({"facts": c or "(no facts)", "question": q.question}))
    gens = generate_with_progress(llm, msgs, GenerationParams(max_new_tokens=tokens), desc=desc)
    texts = [g.text.strip() for g in gens]
    return {"token_f1": float(np.mean([token_f1(t, q.answers) for t, q in zip(texts, questions)])),
            "exact_match": float(np.mean([exact_match(t, q.answers) for t, q in zip(texts, questions)])),
            "prompt_tokens": float(np.mean([g.prompt_tokens for g in gens])),
            "context_words": float(np.mean([len((c or "").split()) for c in contexts])),
            "answer_coverage": float(np.mean([coverage(c or "", q.answers) for c, q in zip(contexts, questions)])),
            "examples": [{"question": q.question, "answer": t, "reference": q.answers[0]}
                         for q, t in list(zip(questions, texts))[:3]]}


# a control's cache label (what earlier runs stored) and its row in the results
CONTROL_NAMES = {"random": ("random pruning", "random pruning (control)"),
                 "question_cosine": ("question_cosine pruning", "question cosine pruning (control)"),
                 "answer_oracle": ("answer_oracle pruning", "answer oracle pruning (oracle)"),
                 "gold_passage": ("gold passages", "gold passages (oracle)")}


def control_scores(control: str, index: GraphIndex, sub: Subgraph, question: QAQuery,
                   rng: np.random.Generator) -> np.ndarray:
    """Node scores of a pruning control: random, the question's cosine, or (answer_oracle) the share of the
    reference answer's words in each node's name with the question's cosine breaking ties."""
    cosine = index.node_vectors[sub.nodes] @ sub.question
    if control == "random":
        return rng.random(len(sub.nodes))
    if control == "question_cosine":
        return cosine
    if control == "answer_oracle":
        names = [index.graph.nodes[int(n)] for n in sub.nodes]
        return np.array([coverage(n, question.answers) for n in names]) * 10.0 + cosine  # cosine in [-1, 1]
    raise ValueError(f"controls: unknown pruning control {control!r}")


def summarize(runs: list[dict]) -> dict:
    """Mean and std over seeds of every numeric metric, the first run's examples, every run kept."""
    keys = [k for k, v in runs[0].items() if isinstance(v, float)]
    out = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    out["std"] = {k: float(np.std([r[k] for r in runs])) for k in keys}
    out["examples"] = runs[0]["examples"]
    out["per_seed"] = [{k: r[k] for k in keys} for r in runs]
    return out


def run_graphrag(cfg: GraphRAGExperiment, out: str | Path | None = None) -> dict:
    """Build the graph, train the aligners, answer the test questions with every system; JSON + plot."""
    if not Path(cfg.ares_path).exists():
        raise DataError(f"ares_path: {cfg.ares_path} is missing (set LLMREC_DATA or the path)")
    t0 = time.perf_counter()
    corpus = load_ares_nq(cfg.ares_path)
    train, test = choose_queries(corpus.queries, cfg.train_queries, cfg.test_queries, cfg.split_seed)
    passages = {p: corpus.passages[p] for p in sorted({g for q in train + test for g in q.gold})}
    work = Path(cfg.work_dir).expanduser() if cfg.work_dir else llmrec_home() / "graphrag" / cfg.name
    llm = CachedLLM(make_llm(cfg.llm), llmrec_home() / "generations.sqlite")
    print(f"{len(passages)} passages; questions train {len(train)} / test {len(test)}", flush=True)

    graph, graph_info = graph_from_passages(llm, passages, work / "graph.jsonl", cfg.extraction_tokens, cfg.two_part)
    print(f"graph: {graph.n_nodes} nodes, {graph.n_edges} facts ({graph_info['extraction']})", flush=True)
    index = GraphIndex(graph, default_embedder(cache_path=str(llmrec_home() / "embeddings.sqlite")))

    plain = build_model(None, {"name": "graph_rag", **cfg.graph_rag}).fit(index)
    sub_cfg = plain.config.subgraph
    train_subs = [select_subgraph(index, v, sub_cfg) for v in index.encode([q.question for q in train])]
    reasonings = reasoning_texts(llm, graph, train_subs, [q.question for q in train], [q.answers[0] for q in train],
                                 cfg.reasoning, cfg.reasoning_tokens)
    examples = [AlignExample(s, r) for s, r in zip(train_subs, index.encode(reasonings))]
    test_subs = [select_subgraph(index, v, sub_cfg) for v in index.encode([q.question for q in test])]

    results: dict[str, dict] = {}
    # every system's answers (per seed for the trained aligners) are one item of the runner: a killed run resumes
    runner = Runner(cfg, settings_key(cfg, exclude=("name", "output", "seeds", "variants", "controls")), out)
    results["no context (LLM alone)"] = runner.cached({"label": "no context"}, lambda: answer_all(
        llm, test, [None] * len(test), cfg.answer_tokens, "no context"))
    results["plain graph RAG"] = runner.cached({"label": "plain graph RAG"}, lambda: answer_all(
        llm, test, [s.text(graph) for s in test_subs], cfg.answer_tokens, "plain graph RAG"))
    training: dict[str, list] = {}
    for v in cfg.variants:
        runs = []
        training[v.label] = []
        for seed in cfg.seeds:
            def aligned(v=v, seed=seed) -> dict:
                model = build_model(None, {"name": "align_grag", "subgraph": sub_cfg.model_dump(),
                                           "keep_ratio": cfg.keep_ratio, **v.overrides, "seed": seed})
                t = time.perf_counter()
                model.fit(index, examples, progress=True)
                fit = {"seed": seed, "seconds": time.perf_counter() - t, "history": model.history}
                pruned = [model.prune(s) for s in test_subs]
                return {"training": fit, "answers": answer_all(llm, test, [s.text(graph) for s in pruned],
                                                               cfg.answer_tokens, f"{v.label} seed {seed}")}

            got = runner.cached({"label": v.label, "seed": seed, "settings": v.overrides}, aligned)
            training[v.label].append(got["training"])
            runs.append(got["answers"])
        results[v.label] = summarize(runs)
    for control in cfg.controls:
        runs = []
        for seed in (cfg.seeds if control == "random" else cfg.seeds[:1]):
            def controlled(control=control, seed=seed) -> dict:
                if control == "gold_passage":
                    contexts = ["\n".join(corpus.passages[g] for g in q.gold) for q in test]
                    return answer_all(llm, test, contexts, cfg.answer_tokens, "gold passages")
                rng = np.random.default_rng(seed)
                pruned = [prune(index, s, control_scores(control, index, s, q, rng), cfg.keep_ratio, sub_cfg.max_edges)
                          for s, q in zip(test_subs, test)]
                return answer_all(llm, test, [s.text(graph) for s in pruned], cfg.answer_tokens, f"{control} pruning")

            runs.append(runner.cached({"label": CONTROL_NAMES[control][0], "seed": seed}, controlled))
        results[CONTROL_NAMES[control][1]] = summarize(runs)
    for name, r in results.items():
        print(f"{name:34s} F1 {r['token_f1']:.4f} EM {r['exact_match']:.3f} prompt tokens "
              f"{r['prompt_tokens']:.1f} coverage {r['answer_coverage']:.3f}", flush=True)
    base = results["plain graph RAG"]
    acceptance = {v.label: {"f1_gain_points": 100 * (results[v.label]["token_f1"] - base["token_f1"]),
                            "token_reduction": 1 - results[v.label]["prompt_tokens"] / base["prompt_tokens"],
                            "met": bool(100 * (results[v.label]["token_f1"] - base["token_f1"]) >= 1.0
                                        and 1 - results[v.label]["prompt_tokens"] / base["prompt_tokens"] >= 0.3)}
                  for v in cfg.variants}
    payload = {"passages": len(passages), "questions": {"train": len(train), "test": len(test)},
               "llm": llm.model_id, "graph": graph_info,
               "acceptance_check": "F1(Align-GRAG) >= F1(plain graph RAG) + 1 point with >= 30% fewer prompt tokens",
               "acceptance": acceptance, "results": results, "training": training,
               "reasoning_examples": [{"question": q.question, "reasoning": r} for q, r in zip(train[:3], reasonings[:3])],
               "seconds": time.perf_counter() - t0}
    path = runner.write(payload, plot=lambda png: plot(results, png), config=cfg.model_dump(mode="json"))
    return {"output": str(path), "results": results, "acceptance": acceptance}


def plot(results: dict, path: Path) -> None:
    """Answer token F1 and coverage (left) and mean prompt tokens (right) per system."""
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.5))
    grouped_bars(a, ["token F1", "answer coverage"],
                 {n: [r["token_f1"], r["answer_coverage"]] for n, r in results.items()}, ylabel="0-1")
    a.set_title("Answers on held-out ARES NQ questions")
    names = list(results)
    b.barh(names, [results[n]["prompt_tokens"] for n in names], color="tab:gray")
    b.set_xlabel("mean prompt tokens read by the LLM")
    b.invert_yaxis()
    save_figure(fig, path)


KIND = ExperimentKind(load=_load, run=run_graphrag)
