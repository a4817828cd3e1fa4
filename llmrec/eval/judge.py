"""LLM judges: rubric grading (1-5, reasoning before the score), reference-guided grading, pairwise comparison
with position swap, and a panel of judges over any backends. Every judgment keeps the judge's raw output.

Untrusted text (answers, references, documents) is fenced in tags the system prompt declares to be data, and
any closing tag inside it is neutralised, so a graded answer cannot end its own fence."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Literal, Sequence

import numpy as np

from llmrec.llm.base import LLM, GenerationParams, generate_with_progress, warn_if_weak
from llmrec.prompts import load_prompt
from llmrec.prompts import defang, fence

CRITERIA = {
    "factuality": "Factuality: every claim in the answer is correct and supported by the reference or documents; "
                  "nothing is invented.",
    "personalization": "Personalization alignment: the answer respects the user's stated preferences, constraints "
                       "and situation in the profile.",
    "coverage": "Coverage: the answer addresses every part of the question with useful, specific information.",
    "faithfulness": "Faithfulness: the answer is grounded in the documents and does not contradict them.",
    "completeness": "Completeness: the answer gives all the information the question asks for.",
    "appropriateness": "Appropriateness: the answer gives an appropriate amount of useful information.",
}
Criterion = Literal["factuality", "personalization", "coverage", "faithfulness", "completeness", "appropriateness"]

FOLLOW_UP = ("Question: {question}\nAnswer: {answer}\nReviewer notes: {notes}\nRate the answer's {criterion} from 1 to 5 "
             "(5 = best). Reply with one digit only.")
_SCORE = re.compile(r"score\s*[:=]\s*\**\s*([1-5])(?:\s*/\s*5)?", re.I)
_DIGIT = re.compile(r"\b([1-5])\b")
_WINNER = re.compile(r"winner\s*[:=]\s*\**\s*(answer\s*)?(a|b|tie)\b", re.I)


@dataclass
class JudgeItem:
    """What a judge sees: the question, the answer, optional documents and a reference answer."""
    question: str
    answer: str
    reference: str | None = None
    profile: str | None = None
    documents: list[str] = field(default_factory=list)


@dataclass
class Judgment:
    """One judge's verdict: score (None if unparsable), reasoning, raw output and how the score was parsed."""
    judge: str
    criterion: str
    score: float | None  # 1-5; None when the output had no parsable score
    reasoning: str
    raw: str
    parsed: Literal["explicit", "followup", "fallback", "none", "expected"]

    def to_dict(self) -> dict:
        """The judgment as a JSON-ready dict."""
        return asdict(self)


def parse_score(text: str) -> tuple[float | None, str, str]:
    """(score, reasoning, how) from a judge's raw output; ``how`` says whether the score was explicit."""
    m = list(_SCORE.finditer(text))
    if m:
        return float(m[-1].group(1)), text[: m[-1].start()].strip(), "explicit"
    d = _DIGIT.findall(text)
    if d:
        return float(d[-1]), text.strip(), "fallback"
    return None, text.strip(), "none"


def _extra(item: JudgeItem, reference_guided: bool, criterion: str) -> str:
    parts = []
    if item.profile and criterion == "personalization":
        parts.append(fence(item.profile, "profile"))
    if reference_guided and item.reference:
        parts.append(fence(item.reference, "reference"))
    if item.documents:
        parts.append(fence("\n\n".join(item.documents), "documents"))
    return "".join(p + "\n" for p in parts)


class ExpectedScoreJudge:
    """G-Eval-style scoring: no text is parsed; the judge's probabilities of the score tokens "1".."5" right
    after "Score: " (normalized over the five) give the expected score, a continuous 1-5 value that keeps the
    model's uncertainty. Needs a backend that scores options (``score_options``: transformers, or the
    first-token top_logprobs of OpenAI-compatible endpoints and vLLM)."""

    SCORES = ("1", "2", "3", "4", "5")

    def __init__(self, llm: LLM, criterion: Criterion = "faithfulness", reference_guided: bool = False,
                 name: str | None = None, progress: bool = False, batch_size: int = 8) -> None:
        if criterion not in CRITERIA:
            raise ValueError(f"criterion: unknown {criterion!r} (one of {sorted(CRITERIA)})")
        if not hasattr(llm, "score_options"):
            raise TypeError(f"{llm.model_id}: expected-score judging needs option log-probabilities "
                            "(score_options: transformers, openai-compatible or vllm backends)")
        self.llm, self.criterion, self.reference_guided = llm, criterion, reference_guided
        self.name = name or f"{llm.model_id}:{criterion}:expected{':ref' if reference_guided else ''}"
        self.template, self.progress, self.batch_size = load_prompt("judge_geval"), progress, batch_size
        warn_if_weak(llm, "judging")

    def probabilities(self, items: Sequence[JudgeItem]) -> np.ndarray:
        """[n, 5] probabilities of the scores 1..5 for each item."""
        from tqdm.auto import tqdm

        msgs = [self.template.messages({"criterion": CRITERIA[self.criterion], "question": it.question,
                                        "extra": _extra(it, self.reference_guided, self.criterion),
                                        "answer": defang(it.answer)}) for it in items]
        out = []
        for s in tqdm(range(0, len(msgs), self.batch_size), desc=f"judge {self.criterion} (expected)",
                      disable=not self.progress):
            lp = self.llm.score_options(msgs[s : s + self.batch_size], self.SCORES, prefix="Score: ")
            p = np.exp(lp - lp.max(axis=1, keepdims=True))
            out.append(p / p.sum(axis=1, keepdims=True))
        return np.vstack(out) if out else np.zeros((0, 5))

    def judge_many(self, items: Sequence[JudgeItem]) -> list[Judgment]:
        """Expected 1-5 scores (the probabilities kept in ``raw``)."""
        probs = self.probabilities(items)
        return [Judgment(self.name, self.criterion, float(p @ np.arange(1, 6)), "",
                         " ".join(f"{k}:{x:.3f}" for k, x in zip(self.SCORES, p)), "expected") for p in probs]


class RubricJudge:
    """Grades one criterion 1-5; ``reference_guided`` shows the reference answer to the judge."""

    def __init__(self, llm: LLM, criterion: Criterion = "factuality", reference_guided: bool = False,
                 name: str | None = None, max_new_tokens: int = 96, progress: bool = False) -> None:
        if criterion not in CRITERIA:
            raise ValueError(f"criterion: unknown {criterion!r} (one of {sorted(CRITERIA)})")
        self.llm, self.criterion, self.reference_guided = llm, criterion, reference_guided
        self.name = name or f"{llm.model_id}:{criterion}{':ref' if reference_guided else ''}"
        self.params = GenerationParams(max_new_tokens=max_new_tokens)
        self.template = load_prompt("judge_rubric")
        self.progress = progress
        warn_if_weak(llm, "judging")

    def judge_many(self, items: Sequence[JudgeItem]) -> list[Judgment]:
        """Judge items in one batched LLM call (progress shown when asked); a missing explicit score gets one
        follow-up call."""
        for n, it in enumerate(items):
            if not isinstance(it.answer, str):
                raise ValueError(f"items[{n}].answer: must be text")
            if not it.question or not it.question.strip():
                raise ValueError(f"items[{n}].question: empty question")
        msgs = [self.template.messages({"criterion": CRITERIA[self.criterion], "question": it.question,
                                        "extra": _extra(it, self.reference_guided, self.criterion),
                                        "answer": defang(it.answer)})
                for it in items]
        gens = generate_with_progress(self.llm, msgs, self.params, f"judge {self.criterion}", self.progress)
        out = []
        for g in gens:
            score, reasoning, how = parse_score(g.text)
            out.append(Judgment(self.name, self.criterion, score, reasoning, g.text, how))
        # no explicit "Score: N": ask for the digit in a second call that carries the judge's own reasoning
        todo = [i for i, j in enumerate(out) if j.parsed != "explicit"]
        if todo:
            follow = [msgs[i][:-1] + [{"role": "user", "content": FOLLOW_UP.format(
                question=items[i].question[:300], answer=defang(items[i].answer[:600]), notes=defang(out[i].raw[:300]),
                criterion=self.criterion)}] for i in todo]
            for i, g in zip(todo, self.llm.generate(follow, GenerationParams(max_new_tokens=8))):
                d = _DIGIT.search(g.text)
                if d:
                    out[i].score, out[i].parsed = float(d.group(1)), "followup"
                    out[i].raw += f"\n[follow-up] {g.text}"
        return out

    def judge(self, item: JudgeItem) -> Judgment:
        """Judge one item (``judge_many`` of one)."""
        return self.judge_many([item])[0]


@dataclass
class PairJudgment:
    """A pairwise verdict with both orders' raw outputs (position bias is checked by swapping)."""
    judge: str
    criterion: str
    winner: Literal["A", "B", "tie"]
    consistent: bool  # the same answer won in both orders
    raw: list[str]  # [A-first output, B-first output]


def parse_winner(text: str) -> str | None:
    """The last "Winner: A|B|tie" of a pairwise verdict ("A", "B", "tie"), None when there is none."""
    m = list(_WINNER.finditer(text))
    return m[-1].group(2).upper().replace("TIE", "tie") if m else None


class PairwiseJudge:
    """Compares two answers twice (A/B, then B/A); a winner counts only when both orders agree."""

    def __init__(self, llm: LLM, criterion: Criterion = "coverage", name: str | None = None,
                 max_new_tokens: int = 64) -> None:
        if criterion not in CRITERIA:
            raise ValueError(f"criterion: unknown {criterion!r}")
        self.llm, self.criterion = llm, criterion
        self.name = name or f"{llm.model_id}:pairwise:{criterion}"
        self.params = GenerationParams(max_new_tokens=max_new_tokens)
        self.template = load_prompt("judge_pairwise")

    def messages(self, pairs: Sequence[tuple[JudgeItem, JudgeItem]]) -> list[list[dict[str, str]]]:
        """The judge's prompts: every pair in the A/B order, then the B/A order (two per pair, adjacent)."""
        return [self.template.messages({"criterion": CRITERIA[self.criterion], "question": a.question,
                                        "extra": _extra(a, True, self.criterion),
                                        "answer_a": defang(x.answer), "answer_b": defang(y.answer)})
                for a, b in pairs for x, y in ((a, b), (b, a))]

    def compare_many(self, pairs: Sequence[tuple[JudgeItem, JudgeItem]]) -> list[PairJudgment]:
        """Compare answer pairs in both orders; a verdict that flips with the order is a tie."""
        msgs = self.messages(pairs)
        gens = self.llm.generate(msgs, self.params)
        out = []
        for i in range(0, len(gens), 2):
            first, swapped = parse_winner(gens[i].text), parse_winner(gens[i + 1].text)
            swapped_back = {"A": "B", "B": "A"}.get(swapped or "", swapped)
            consistent = first is not None and first == swapped_back
            out.append(PairJudgment(self.name, self.criterion, first if consistent else "tie", consistent,
                                    [gens[i].text, gens[i + 1].text]))
        return out

    def preferences(self, pairs: Sequence[tuple[JudgeItem, JudgeItem]], batch_size: int = 8,
                    progress: bool = False) -> np.ndarray:
        """Likelihood verdicts, no text parsed: [n, 2] probability that the first item of each pair wins, read
        from the judge's probabilities of "A" vs "B" after "Winner: " in the A/B order (column 0) and in the
        swapped order (column 1, already mapped back to the first item). A position-consistent judge gives
        the same side in both columns; their mean is the position-debiased preference."""
        from tqdm.auto import tqdm

        if not hasattr(self.llm, "score_options"):
            raise TypeError(f"{self.llm.model_id}: likelihood pairwise judging needs score_options")
        msgs = self.messages(pairs)
        first = []
        for s in tqdm(range(0, len(msgs), batch_size), desc=f"pairwise {self.criterion} (likelihood)",
                      disable=not progress):
            lp = self.llm.score_options(msgs[s : s + batch_size], ("A", "B"), prefix="Winner: ")
            first.append(1.0 / (1.0 + np.exp(lp[:, 1] - lp[:, 0])))  # P(A) over {A, B}
        p = np.concatenate(first) if first else np.zeros(0)
        return np.stack([p[0::2], 1.0 - p[1::2]], axis=1) if len(p) else np.zeros((0, 2))


@dataclass
class PanelJudgment:
    """The mean and spread of a panel of judges' scores for one item, with each judgment."""
    criterion: str
    score: float | None  # mean over judges that gave a score
    spread: float | None  # std over those judges
    judgments: list[Judgment]


class JudgePanel:
    """Several rubric judges (any backends, any prompts); scores averaged, every judgment kept."""

    def __init__(self, judges: Sequence[RubricJudge]) -> None:
        if not judges:
            raise ValueError("judges: a panel needs at least one judge")
        crit = {j.criterion for j in judges}
        if len(crit) > 1:
            raise ValueError(f"judges: one criterion per panel, got {sorted(crit)}")
        self.judges, self.criterion = list(judges), crit.pop()

    def judge_many(self, items: Sequence[JudgeItem]) -> list[PanelJudgment]:
        """Every judge of the panel on every item; the mean and spread of their scores per item."""
        per = [j.judge_many(items) for j in self.judges]
        out = []
        for i in range(len(items)):
            js = [p[i] for p in per]
            s = [j.score for j in js if j.score is not None]
            out.append(PanelJudgment(self.criterion, float(np.mean(s)) if s else None,
                                     float(np.std(s)) if s else None, js))
        return out
