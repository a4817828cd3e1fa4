"""Graph RAG on your own corpus (papers.md §12): the LLM reads facts out of a passages file, the facts become a
graph, and a retriever answers questions from it — the plain subgraph (``graph_rag``) or Align-GRAG's pruned
one (``align_grag``), whose aligner is trained on questions with reference answers and the LLM's reasoning
about them. The built retriever is a folder that loads again without the LLM.

    llmrec graphrag build --config graphrag.yaml          # -> output_dir: graph.jsonl, retriever.json, aligner.pt
    llmrec graphrag ask runs/graphrag "who founded X?" --k 8 --json
    llmrec research --graph runs/graphrag ...             # the retriever as the research agent's public source

Python: ``build_retriever(GraphRAGBuild(...))`` and ``load_retriever(folder)``; both return an object with
``context(question)`` (the subgraph as text for an LLM) and ``retrieve(user_id, query, k)`` (its facts as hits).
The ``graphrag_align`` experiment builds its graph and its reasonings with the same functions."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from llmrec.config import StrictConfig, llmrec_home
from llmrec.data.files import TableFile, read_table
from llmrec.data.schema import DataFormatError
from llmrec.data.textgraph import TextGraph, build_graph, read_triples, write_triples
from llmrec.embed import default_embedder
from llmrec.errors import MissingFileError
from llmrec.io import write_json_atomic
from llmrec.knowledge.graph import extract_triples
from llmrec.llm import GenerationParams, LLMConfig, make_llm
from llmrec.llm.base import LLM, generate_with_progress
from llmrec.llm.cache import CachedLLM
from llmrec.models import build_model
from llmrec.models.graphrag.align_grag import AlignExample, AlignGRAG
from llmrec.models.graphrag.retriever import GraphIndex, GraphRAG, Subgraph, select_subgraph
from llmrec.prompts import load_prompt


class PassagesFile(TableFile):
    """The corpus: one passage per row, its id and text columns."""
    id: str = "id"
    text: str = "text"


class QuestionsFile(TableFile):
    """Training questions for Align-GRAG's aligner: the question and a reference answer per row."""
    question: str = "question"
    answer: str = "answer"


class GraphRAGBuild(StrictConfig):
    """What ``llmrec graphrag build`` reads: the corpus, the retriever (``graph_rag`` or ``align_grag`` with
    its settings), the LLM that extracts facts (and reasons for the aligner), and where the folder goes."""
    passages: PassagesFile
    questions: QuestionsFile | None = None  # align_grag: its training questions
    model: dict[str, Any] = {"name": "align_grag"}  # graph_rag or align_grag, with overrides of its config
    llm: LLMConfig = LLMConfig()
    extraction_tokens: int = Field(48, ge=8)
    two_part: bool = True  # keep "subject | description" replies as "subject | is | description"
    reasoning: Literal["llm", "answer"] = "llm"  # align_grag's targets: the LLM's reasoning, or question + answer
    reasoning_tokens: int = Field(48, ge=8)
    output_dir: str = "runs/graphrag"

    @model_validator(mode="after")
    def _aligner_has_questions(self) -> "GraphRAGBuild":
        if self.model.get("name") not in ("graph_rag", "align_grag"):
            raise ValueError(f"model.name: {self.model.get('name')!r} is not graph_rag or align_grag")
        if self.model["name"] == "align_grag" and self.questions is None:
            raise ValueError("questions: align_grag trains its aligner on questions with reference answers "
                             "(a file with question and answer columns); graph_rag needs none")
        return self


def read_passages(spec: PassagesFile, base: Path | None = None) -> dict[str, str]:
    """Passage id -> text; a missing column, an empty id or text, or a repeated id names the file and row."""
    t = read_table(spec, base)
    out: dict[str, str] = {}
    for row, (pid, text) in enumerate(zip(t.column(spec.id, "passage ids"), t.column(spec.text, "passage texts")),
                                      start=2):
        if not pid or not text:
            raise DataFormatError(str(t.path), row, spec.text if pid else spec.id, "empty value")
        if pid in out:
            raise DataFormatError(str(t.path), row, spec.id, f"passage id {pid!r} repeats an earlier row")
        out[pid] = text
    return out


def read_questions(spec: QuestionsFile, base: Path | None = None) -> tuple[list[str], list[str]]:
    """Questions and their reference answers; an empty cell names the file, row and column."""
    t = read_table(spec, base)
    qs, ans = t.column(spec.question, "questions"), t.column(spec.answer, "reference answers")
    for row, (q, a) in enumerate(zip(qs, ans), start=2):
        if not q or not a:
            raise DataFormatError(str(t.path), row, spec.answer if q else spec.question, "empty value")
    return list(qs), list(ans)


def graph_from_passages(llm: LLM, passages: dict[str, str], path: Path, tokens: int = 48,
                        two_part: bool = True) -> tuple[TextGraph, dict]:
    """Facts of every passage (``extract_triples``), written to ``path`` (JSONL) and built into a graph; the
    graph and what happened (nodes, facts, extraction counts, what the build dropped, the file)."""
    triples, stats = extract_triples(llm, passages, max_new_tokens=tokens, two_part=two_part)
    graph = build_graph(triples)
    write_triples(path, triples)
    return graph, {"nodes": graph.n_nodes, "facts": graph.n_edges, "extraction": stats.as_dict(),
                   "build": graph.report, "file": str(path)}


def reasoning_texts(llm: LLM, graph: TextGraph, subgraphs: list[Subgraph], questions: list[str],
                    answers: list[str], mode: str, tokens: int) -> list[str]:
    """Align-GRAG's alignment targets: the LLM's reasoning from each question's plain subgraph to its
    reference answer (``prompts/graph_reasoning.txt``; an empty reply falls back to question + answer), or
    question + answer itself (``mode: answer``)."""
    if mode == "answer":
        return [f"{q} {a}" for q, a in zip(questions, answers)]
    tpl = load_prompt("graph_reasoning")
    msgs = [tpl.messages({"facts": s.text(graph), "question": q, "answer": a})
            for q, a, s in zip(questions, answers, subgraphs)]
    gens = generate_with_progress(llm, msgs, GenerationParams(max_new_tokens=tokens), desc="reasoning")
    return [g.text.strip() or f"{q} {a}" for g, q, a in zip(gens, questions, answers)]


def _index(graph: TextGraph) -> GraphIndex:
    return GraphIndex(graph, default_embedder(cache_path=str(llmrec_home() / "embeddings.sqlite")))


def build_retriever(config: GraphRAGBuild, base: Path | None = None) -> GraphRAG | AlignGRAG:
    """Extract, build, train (Align-GRAG) and save the retriever under ``config.output_dir``."""
    out = Path(config.output_dir)
    passages = read_passages(config.passages, base)
    questions = read_questions(config.questions, base) if config.questions is not None else None
    llm = CachedLLM(make_llm(config.llm), llmrec_home() / "generations.sqlite")
    graph, info = graph_from_passages(llm, passages, out / "graph.jsonl", config.extraction_tokens, config.two_part)
    index = _index(graph)
    model = build_model(None, config.model)
    meta: dict[str, Any] = {"config": model.config.model_dump(mode="json"), "graph": info,
                            "passages": len(passages), "llm": llm.model_id}
    if isinstance(model, AlignGRAG):
        qs, ans = questions
        subs = [select_subgraph(index, v, model.config.subgraph) for v in index.encode(qs)]
        targets = reasoning_texts(llm, graph, subs, qs, ans, config.reasoning, config.reasoning_tokens)
        model.fit(index, [AlignExample(s, r) for s, r in zip(subs, index.encode(targets))], progress=True)
        torch.save(model.aligner.state_dict(), out / "aligner.pt")
        meta.update(questions=len(qs), reasoning=config.reasoning, history=model.history)
    else:
        model.fit(index)
    write_json_atomic(out / "retriever.json", meta)
    return model


def load_retriever(folder: str | Path) -> GraphRAG | AlignGRAG:
    """A retriever ``build_retriever`` saved (the graph re-embedded with the default embedder's cache)."""
    folder = Path(folder)
    for f in ("retriever.json", "graph.jsonl"):
        if not (folder / f).exists():
            raise MissingFileError(f"{folder / f}: missing; not a folder written by `llmrec graphrag build`")
    meta = json.loads((folder / "retriever.json").read_text())
    facts, lone = read_triples(folder / "graph.jsonl")
    index = _index(build_graph(facts, lone))
    model = build_model(None, meta["config"])
    if isinstance(model, AlignGRAG):
        return model.restore(index, torch.load(folder / "aligner.pt", weights_only=True))
    return model.fit(index)
