"""Question answering over a closed passage corpus, for retrieval / reranking / RAG experiments.

Sources (read from ../shared/data, never copied):
- ARES NQ synthetic (``nq_synthetic_queries.tsv``): a query's gold passages are the rows labelled
  ``Context_Relevance_Label = Yes``; its answers are the ``generated_answer`` of rows whose answer is labelled
  faithful. Queries with no relevant passage (randomly paired negatives only) are dropped.
- MT-RAG human-eval subset: passages are its ``documents``; a task's question is its last user turn, its
  gold passages its ``contexts``, its answer the reference ``targets``. Tasks without contexts are dropped.
Passage ids are prefixed by source (``ares:``, ``mtrag:``) so the corpora can be merged."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmrec.data.schema import DataFormatError


@dataclass
class QAQuery:
    """A question with the ids of its gold passages, its reference answers and its source."""
    id: str
    question: str
    gold: list[str]  # passage ids
    answers: list[str] = field(default_factory=list)
    source: str = ""


@dataclass
class QACorpus:
    """Passages by id and the queries over them; ``merge`` joins corpora with disjoint ids."""
    passages: dict[str, str]
    queries: list[QAQuery]

    def merge(self, other: "QACorpus") -> "QACorpus":
        """This corpus and ``other`` joined (passage ids must not collide)."""
        dup = set(self.passages) & set(other.passages)
        if dup:
            raise ValueError(f"passages: ids in both corpora, e.g. {sorted(dup)[:3]}")
        return QACorpus({**self.passages, **other.passages}, self.queries + other.queries)

    def split(self, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), seed: int = 0) -> tuple[list[QAQuery], ...]:
        """Split by query (every query lands in exactly one part), seeded."""
        if abs(sum(fractions) - 1) > 1e-6 or min(fractions) <= 0:
            raise ValueError(f"fractions: must be positive and sum to 1, got {fractions}")
        order = np.random.default_rng(seed).permutation(len(self.queries))
        a = int(len(order) * fractions[0])
        b = int(len(order) * (fractions[0] + fractions[1]))
        pick = lambda idx: [self.queries[i] for i in idx]  # noqa: E731
        return pick(order[:a]), pick(order[a:b]), pick(order[b:])


def load_ares_nq(path: str | Path) -> QACorpus:
    """The ARES NQ synthetic-queries corpus (see the module doc for how gold passages and answers are chosen)."""
    path = Path(path)
    if path.is_dir():
        path = path / "nq_synthetic_queries.tsv"
    csv.field_size_limit(1 << 24)
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        need = ["document_index", "document", "synthetic_query", "Context_Relevance_Label", "generated_answer",
                "Answer_Faithfulness_Label"]
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise DataFormatError(str(path), 1, missing[0], "column missing from the header")
        passages: dict[str, str] = {}
        by_query: dict[str, QAQuery] = {}
        for lineno, r in enumerate(reader, start=2):
            doc_id, text, q = r["document_index"].strip(), r["document"].strip(), r["synthetic_query"].strip()
            if not doc_id:
                raise DataFormatError(str(path), lineno, "document_index", "empty")
            if not q:
                raise DataFormatError(str(path), lineno, "synthetic_query", "empty")
            pid = f"ares:{doc_id}"
            passages.setdefault(pid, text)
            qq = by_query.setdefault(q, QAQuery(id=f"ares:q{len(by_query)}", question=q, gold=[], source="ares"))
            if r["Context_Relevance_Label"].strip() == "Yes":
                if pid not in qq.gold:
                    qq.gold.append(pid)
                ans = r["generated_answer"].strip()
                if r["Answer_Faithfulness_Label"].strip() == "Yes" and ans and ans not in qq.answers:
                    qq.answers.append(ans)
    return QACorpus(passages, [q for q in by_query.values() if q.gold])


def load_mtrag(path: str | Path) -> QACorpus:
    """The MT-RAG human-evaluation subset as a QA corpus (last user turn -> its contexts and reference answer)."""
    path = Path(path)
    if path.is_dir():
        path = path / "reference_subset_with_human_evaluations.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    for key in ("documents", "tasks"):
        if key not in doc:
            raise DataFormatError(str(path), None, key, "missing")
    passages = {}
    for n, d in enumerate(doc["documents"]):
        did = d.get("document_id") or d.get("id")
        if not did or not d.get("text"):
            raise DataFormatError(str(path), None, f"documents[{n}]", "needs an id and a text")
        passages[f"mtrag:{did}"] = d["text"]
    queries = []
    for n, t in enumerate(doc["tasks"]):
        turns = [x["text"] for x in t.get("input", []) if x.get("speaker") == "user" and x.get("text")]
        gold = [f"mtrag:{c['document_id']}" for c in t.get("contexts", []) if f"mtrag:{c['document_id']}" in passages]
        if not turns or not gold:
            continue
        answers = [x["text"] for x in t.get("targets", []) if x.get("text")]
        queries.append(QAQuery(id=f"mtrag:{t.get('task_id', n)}", question=turns[-1], gold=gold, answers=answers,
                               source="mtrag"))
    return QACorpus(passages, queries)
