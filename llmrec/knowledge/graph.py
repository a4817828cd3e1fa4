"""A knowledge graph from documents, extracted by the LLM (Align-GRAG's graph, papers.md §12).

Every passage is cut into sentences (``llmrec.data.textgraph.sentences``); the LLM reads one sentence at a
time after the worked examples of ``prompts/graph_triples_examples.txt`` and writes ``subject | relation |
object`` lines (``prompts/graph_triples.txt``). One sentence per call because the bundled 135M model, given a
whole passage, mostly copies the passage or its examples back (measured: 12 facts from 16 passages, against
31 from 24 sentences). Replies are parsed and grounded (``parse_triples``): only facts whose subject and object
occur in their sentence are kept, and the dropped lines are counted by reason. Two-part lines
(``subject | description``) are kept as ``subject | is | description`` (``two_part``): of the first 3,420
reply lines on ARES passages, 2,216 were not three-part, most of them two-part, and three-part lines alone
gave 501 facts from 1,337 sentences.

Wrap the LLM in ``CachedLLM`` (``llmrec.llm.cache``) and a rerun, or a run resumed after a kill, asks the
LLM only for the sentences it has not answered yet."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from llmrec.data.textgraph import Triple, parse_triples, sentences
from llmrec.llm import GenerationParams
from llmrec.llm.base import LLM, generate_with_progress
from llmrec.prompts import load_prompt


@dataclass
class ExtractionStats:
    """What the extraction read and kept: passages, sentences, reply lines and the lines dropped by reason."""
    passages: int = 0
    sentences: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"lines": 0, "malformed": 0, "ungrounded": 0,
                                                            "repeated": 0, "two_part": 0})
    facts: int = 0

    def as_dict(self) -> dict:
        """The statistics as a JSON-ready dict, with the share of reply lines kept."""
        lines = max(self.counts["lines"], 1)
        return {"passages": self.passages, "sentences": self.sentences, "facts": self.facts, **self.counts,
                "kept_share_of_lines": self.facts / lines}


def example_turns() -> list[dict[str, str]]:
    """The worked examples as alternating user / assistant chat turns."""
    turns: list[dict[str, str]] = []
    for block in load_prompt("graph_triples_examples").template.split("====="):
        sentence, facts = block.split(">>>")
        turns += [{"role": "user", "content": sentence.strip()}, {"role": "assistant", "content": facts.strip()}]
    return turns


def extraction_prompt(sentence: str) -> list[dict[str, str]]:
    """The chat that asks for one sentence's facts: system, worked examples, the sentence."""
    tpl = load_prompt("graph_triples")
    msgs = tpl.messages({"sentence": sentence})
    return [msgs[0], *example_turns(), msgs[1]]


def extract_triples(llm: LLM, passages: Mapping[str, str], max_new_tokens: int = 48, grounded: bool = True,
                    two_part: bool = True, progress: bool = True) -> tuple[list[Triple], ExtractionStats]:
    """Facts of every passage (one LLM call per sentence, batched), with each fact's source set to its
    passage id; statistics count what was dropped."""
    stats = ExtractionStats(passages=len(passages))
    todo: list[tuple[str, str]] = [(pid, s) for pid, text in passages.items() for s in sentences(text)]
    stats.sentences = len(todo)
    params = GenerationParams(max_new_tokens=max_new_tokens, stop=["\n\n"])
    replies = generate_with_progress(llm, [extraction_prompt(s) for _, s in todo], params,
                                     desc="graph facts", progress=progress)
    triples: list[Triple] = []
    for (pid, sentence), g in zip(todo, replies):
        kept, counts = parse_triples(g.text, sentence, source=pid, grounded=grounded, two_part=two_part)
        for k, v in counts.items():
            stats.counts[k] += v
        triples += kept
    stats.facts = len(triples)
    return triples, stats
