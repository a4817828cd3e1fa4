"""Personalized Deep Research: profile -> plan -> (private retrieval, then public) -> rerank/filter -> decide ->
refine ... -> report whose every claim cites the chunk it came from; a JSON trace of every step.

Safety by construction: retrieved text only ever enters prompts inside fences declared as data, closing tags
inside it are defanged, the plan is made before anything is retrieved, and follow-up queries are planned from
the question, the profile and *counts* of useful passages per query — never from retrieved text — so a
document cannot steer the plan or the report's instructions. Budgets (iterations, tokens) are checked before
every LLM call with a conservative estimate; exceeding one stops the loop and the report falls back to
extractive claims (no LLM call)."""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from llmrec.config import StrictConfig
from llmrec.prompts import defang
from llmrec.io import write_json_atomic
from llmrec.llm.base import LLM, GenerationParams
from llmrec.prompts import load_prompt
from llmrec.rerank.base import Candidate
from llmrec.research.sources import Evidence, Source, dedupe
from llmrec.errors import NotFoundError


class ResearchConfig(StrictConfig):
    """The research loop's limits and switches: iterations, token budget, sub-queries, k, stop rule, private
    stage."""
    max_iterations: int = 3
    token_budget: int = 8000  # prompt + completion tokens over every LLM call of one run
    sub_queries: int = 3
    k_private: int = 4
    k_public: int = 4
    keep_per_iteration: int = 6  # chunks kept after reranking / filtering, per iteration
    min_score: float | None = None  # drop chunks whose (reranker) score is below this
    report_claims: int = 6
    private_stage: bool = True
    profile_memories: int = 8
    max_new_tokens: int = 64
    chars_per_token: float = 3.0  # budget estimate before a call (conservative for English)


class BudgetExceeded(Exception):
    """Raised inside the loop when the token budget would be exceeded (the run stops with what it has)."""
    pass


class ResearchError(RuntimeError):
    """A run that could not finish; ``trace`` holds every step taken before the failure."""

    def __init__(self, message: str, trace: dict) -> None:
        super().__init__(message)
        self.trace = trace


@dataclass
class Claim:
    """One sentence of the report with the evidence chunk it cites."""
    text: str
    citations: list[str]


@dataclass
class ResearchResult:
    """The report, its claims, why the loop stopped and the step-by-step trace."""
    user_id: str
    question: str
    profile: str
    claims: list[Claim]
    evidence: list[Evidence]
    stop_reason: str
    trace: dict = field(repr=False)

    @property
    def report(self) -> str:
        """The report as text: each claim with its citation."""
        lines = [f"Research report for user {self.user_id}", f"Question: {self.question}"]
        if self.profile:
            lines.append(f"What we know of you: {self.profile}")
        lines += [f"- {c.text} [{', '.join(c.citations)}]" for c in self.claims]
        if not self.claims:
            lines.append("- No evidence was found for this question.")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The result as a JSON-ready dict."""
        return {"user_id": self.user_id, "question": self.question, "profile": self.profile,
                "report": self.report, "claims": [asdict(c) for c in self.claims],
                "evidence": [asdict(e) for e in self.evidence], "stop_reason": self.stop_reason, "trace": self.trace}


def parse_queries(text: str, limit: int) -> list[str]:
    """Sub-queries from the planner's output (one per line, numbering stripped), at most ``limit``."""
    out = []
    for line in text.splitlines():
        q = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line).strip().strip('"').strip()
        if len(q.split()) >= 2 and q.lower() not in {x.lower() for x in out}:
            out.append(q[:200])
    return out[:limit]


@dataclass
class RunState:
    """One research run's trace (steps, token counts) and clock."""
    trace: dict
    t0: float = field(default_factory=time.perf_counter)
    on_step: Callable[[dict], None] | None = None

    def step(self, step: str, **data: Any) -> None:
        """Append a step with its data to the run's trace (and show it to ``on_step``: progress)."""
        entry = {"step": step, "t": round(time.perf_counter() - self.t0, 3), **data}
        self.trace["steps"].append(entry)
        if self.on_step is not None:
            self.on_step(entry)


class PersonalizedResearcher:
    """Personalized deep research: profile from memory, planned sub-queries, private-then-public retrieval,
    reranking, adaptive stop and a cited report."""
    def __init__(self, llm: LLM, private: Sequence[Source] = (), public: Sequence[Source] = (),
                 reranker: Any = None, config: ResearchConfig | None = None,
                 on_step: Callable[[dict], None] | None = None) -> None:
        self.on_step = on_step  # called with every trace step as it happens (the CLI prints progress)
        self.llm, self.private, self.public = llm, list(private), list(public)
        self.reranker, self.config = reranker, config or ResearchConfig()
        self.prompts = {n: load_prompt(f"research_{n}") for n in ("profile", "plan", "decide", "refine", "claim")}

    # -- budget-checked LLM calls ------------------------------------------------------------------------
    def _call(self, run: "RunState", kind: str, variables: list[dict], max_new_tokens: int) -> list[str]:
        c, t = self.config, run.trace
        msgs = [self.prompts[kind].messages(v) for v in variables]
        estimate = sum(int(sum(len(m["content"]) for m in ms) / c.chars_per_token) + max_new_tokens for ms in msgs)
        used = t["tokens"]["prompt"] + t["tokens"]["completion"]
        if used + estimate > c.token_budget:
            raise BudgetExceeded(f"{kind}: needs ~{estimate} tokens, {c.token_budget - used} left of {c.token_budget}")
        gens = self.llm.generate(msgs, GenerationParams(max_new_tokens=max_new_tokens))
        p, q = sum(g.prompt_tokens for g in gens), sum(g.completion_tokens for g in gens)
        t["tokens"]["prompt"] += p
        t["tokens"]["completion"] += q
        run.step("llm", kind=kind, tokens={"prompt": p, "completion": q}, outputs=[g.text for g in gens])
        return [g.text.strip() for g in gens]

    # -- the loop --------------------------------------------------------------------------------------
    def run(self, user_id: str, question: str) -> ResearchResult:
        # every piece of per-run state lives in this run's own object: concurrent runs (threads, LangChain's
        # batch) never share a trace or a token count
        """Research ``question`` for ``user_id``; ``ResearchError`` carries the trace so far."""
        run = RunState({"user_id": user_id, "question": question, "config": self.config.model_dump(),
                        "llm": self.llm.model_id, "tokens": {"prompt": 0, "completion": 0}, "steps": []},
                       on_step=self.on_step)
        try:
            return self._run(run, user_id, question)
        except Exception as e:
            run.step("error", error=f"{type(e).__name__}: {e}")
            raise ResearchError(f"research failed: {e}", run.trace) from e

    def _run(self, run: "RunState", user_id: str, question: str) -> ResearchResult:
        c = self.config
        if not isinstance(question, str) or not question.strip():
            raise ValueError("question: empty question")
        if not isinstance(user_id, str) or not user_id.strip():
            raise ValueError("user_id: empty user id")
        private = self.private if c.private_stage else []
        known = [s for s in private if s.knows_user is not None]
        if known and not any(s.knows_user(user_id) for s in known):
            raise NotFoundError(f"user_id: unknown user {user_id!r} (no memories)")
        stop, evidence, profile = "max_iterations", [], ""
        try:
            # 1. profile from private sources
            if private:
                mem = dedupe([e for s in private for e in s.retrieve(user_id, question, c.profile_memories)])
                run.step("profile_retrieve", retrieved=[{"id": e.id, "source": e.source, "score": e.score} for e in mem])
                if mem:
                    profile = self._call(run, "profile", [{"question": question, "memories": defang(
                        "\n".join(f"- {e.text}" for e in mem))}], c.max_new_tokens)[0]
                    run.step("profile", profile=profile)
            # 2. plan (before any retrieval)
            queries = [question] + parse_queries(self._call(run, "plan", [{"question": question, "profile": profile or "unknown",
                                                                      "n": c.sub_queries}], c.max_new_tokens)[0],
                                                 c.sub_queries)
            run.step("plan", queries=queries)
            tried: dict[str, int] = {}
            for it in range(c.max_iterations):
                new = self._retrieve(user_id, question, queries, private, tried)
                evidence = dedupe(evidence + new)
                run.step("retrieve", iteration=it, queries=queries,
                           kept=[{"id": e.id, "source": e.source, "score": round(e.score, 4)} for e in new])
                if not new and it > 0:
                    stop = "no_new_evidence"
                    break
                verdict = self._call(run, "decide", [{"question": question, "evidence": defang(
                    "\n\n".join(f"[{e.id}] {e.text}" for e in evidence[: c.report_claims]))}], 8)[0]
                sufficient = verdict.lower().lstrip(" \"'*").startswith("yes")
                run.step("decide", iteration=it, sufficient=sufficient, evidence=len(evidence))
                if sufficient:
                    stop = "sufficient"
                    break
                if it + 1 < c.max_iterations:
                    coverage = "\n".join(f"- {q}: {n} passages" for q, n in tried.items())
                    refined = parse_queries(self._call(run, "refine", [{"question": question, "profile": profile or "unknown",
                                                                   "coverage": coverage, "n": c.sub_queries}],
                                                       c.max_new_tokens)[0], c.sub_queries)
                    queries = [q for q in refined if q not in tried] or [question]
                    run.step("refine", iteration=it, queries=queries)
        except BudgetExceeded as e:
            stop = "token_budget"
            run.step("stop", reason=str(e))
        claims = self._report(run, question, profile, evidence)
        run.step("report", claims=len(claims), stop_reason=stop)
        return ResearchResult(user_id, question, profile, claims, evidence, stop, run.trace)

    def _retrieve(self, user_id: str, question: str, queries: list[str], private: list[Source],
                  tried: dict[str, int]) -> list[Evidence]:
        c = self.config
        stage = []
        for q in queries:  # private sources first, then public
            got = [e for s in private for e in s.retrieve(user_id, q, c.k_private)]
            got += [e for s in self.public for e in s.retrieve(user_id, q, c.k_public)]
            tried[q] = len(got)
            stage += got
        stage = dedupe(stage)
        if self.reranker is not None and stage:
            ranked = self.reranker.rerank(question, [Candidate(e.id, e.text, e.score) for e in stage])
            by_id = {e.id: e for e in stage}
            stage = [Evidence(r.id, by_id[r.id].text, by_id[r.id].source, r.score, by_id[r.id].private) for r in ranked]
        else:
            stage.sort(key=lambda e: -e.score)
        if c.min_score is not None:
            stage = [e for e in stage if e.score >= c.min_score]
        return stage[: c.keep_per_iteration]

    def _report(self, run: "RunState", question: str, profile: str, evidence: list[Evidence]) -> list[Claim]:
        c = self.config
        top = sorted(evidence, key=lambda e: (not e.private, -e.score))[: c.report_claims]
        if not top:
            return []
        try:
            texts = self._call(run, "claim", [{"question": question, "profile": profile or "unknown",
                                          "passage": defang(e.text)} for e in top], c.max_new_tokens)
        except BudgetExceeded as e:  # extractive fallback: the first sentence of each chunk, no LLM call
            run.step("stop", reason=f"report: {e}; extractive claims")
            texts = [re.split(r"(?<=[.!?])\s+", e.text.strip())[0][:300] for e in top]
        return [Claim(t.split("\n")[0].strip() or e.text[:200], [e.id]) for t, e in zip(texts, top)]

    def as_runnable(self):
        """A LangChain Runnable: ``{"user_id", "question"} -> result dict`` (report, claims, evidence, trace)."""
        from langchain_core.runnables import RunnableLambda

        return RunnableLambda(lambda inp: self.run(inp["user_id"], inp["question"]).to_dict())


def save_trace(path: str | Path, trace: dict) -> Path:
    """Write a run's JSON trace atomically."""
    return write_json_atomic(path, trace)
