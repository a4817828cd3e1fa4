"""The textual knowledge graph (Align-GRAG, papers.md §12): entities as nodes, (head, relation, tail) facts
as edges, every fact with the passage it came from.

**Triples.** An extractor (``llmrec.knowledge.graph`` asks the LLM, one sentence at a time) writes lines
``subject | relation | object``; ``parse_triples`` keeps a line only when it has three non-empty parts (or,
with ``two_part=True``, two: ``subject | description``, kept as the fact ``subject | is | description``, the
form the bundled 135M model writes most), each at most ``max_words`` words, and (``grounded=True``) its
subject and object both occur in the sentence it came from (case-folded): a small LLM copies its few-shot
examples or invents names, and those facts are dropped and counted, never added to the graph.

**Nodes** are keyed by their case-folded, space-collapsed text; the first spelling seen is kept. A fact whose
subject and object are the same node is a self-loop and is dropped and counted.

**Isolated nodes** (a node listed with no fact touching it, e.g. in a user's graph file) cannot be reached by
any walk: ``build_graph`` drops and counts them (``on_isolated="drop"``) or raises a ``GraphError`` naming
the first (``on_isolated="error"``).

**Files** (``read_triples`` / ``write_triples``): JSONL, one ``{"head", "relation", "tail", "source"}``
fact per line (``source`` optional), or ``{"node": TEXT}`` for a node without facts."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np

from llmrec.data.schema import DataFormatError
from llmrec.errors import LLMRecError


class GraphError(LLMRecError, ValueError):
    """A graph that cannot be used (an isolated node under ``on_isolated="error"``, no facts at all)."""


@dataclass(frozen=True)
class Triple:
    """One fact: subject, relation, object and the id of the passage it was read from."""
    head: str
    relation: str
    tail: str
    source: str = ""


@dataclass
class TextGraph:
    """Nodes (texts), directed edges (head index, tail index) with their relation texts and sources."""
    nodes: list[str]
    edges: np.ndarray  # (E, 2) int64: head, tail node indices
    relations: list[str]
    sources: list[str]
    report: dict = field(default_factory=dict)  # what build_graph dropped, by reason

    def __post_init__(self) -> None:
        self.edges = np.asarray(self.edges, dtype=np.int64).reshape(-1, 2)
        if not (len(self.edges) == len(self.relations) == len(self.sources)):
            raise GraphError(f"edges: {len(self.edges)} edges but {len(self.relations)} relations and "
                             f"{len(self.sources)} sources")
        if len(self.edges) and (self.edges.min() < 0 or self.edges.max() >= len(self.nodes)):
            raise GraphError(f"edges: node index out of range 0..{len(self.nodes) - 1}")

    @property
    def n_nodes(self) -> int:
        """Number of nodes."""
        return len(self.nodes)

    @property
    def n_edges(self) -> int:
        """Number of edges (facts)."""
        return len(self.edges)

    def fact(self, e: int) -> str:
        """Edge ``e`` as the line ``head | relation | tail``."""
        h, t = self.edges[e]
        return f"{self.nodes[h]} | {self.relations[e]} | {self.nodes[t]}"

    def induced_edges(self, nodes: Iterable[int]) -> np.ndarray:
        """Indices of the edges whose two ends are both in ``nodes``."""
        keep = np.zeros(self.n_nodes, dtype=bool)
        keep[np.fromiter(nodes, dtype=np.int64)] = True
        return np.flatnonzero(keep[self.edges[:, 0]] & keep[self.edges[:, 1]])

    def textualize(self, nodes: Sequence[int], edges: Sequence[int] | None = None) -> str:
        """The subgraph as text for an LLM: one fact per line (the induced edges unless ``edges`` is given),
        then the nodes no listed fact mentions, on one ``Other entities:`` line."""
        edges = self.induced_edges(nodes) if edges is None else np.asarray(edges, dtype=np.int64)
        lines = [self.fact(int(e)) for e in edges]
        named = set(self.edges[edges].ravel().tolist()) if len(edges) else set()
        rest = [self.nodes[int(v)] for v in nodes if int(v) not in named]
        if rest:
            lines.append("Other entities: " + "; ".join(rest))
        return "\n".join(lines)


def node_key(text: str) -> str:
    """The identity of a node text: case-folded, whitespace collapsed."""
    return " ".join(text.casefold().split())


def build_graph(triples: Iterable[Triple], nodes: Iterable[str] = (),
                on_isolated: Literal["drop", "error"] = "drop") -> TextGraph:
    """A ``TextGraph`` from facts (duplicates merged: the same head, relation and tail keep the first source)
    and optional extra node texts; self-loops are dropped and counted, isolated nodes dropped and counted or
    an error (see the module doc). ``report`` holds the counts."""
    index: dict[str, int] = {}
    names: list[str] = []
    seen: set[tuple[int, str, int]] = set()
    edges, rels, srcs = [], [], []
    report = {"facts_in": 0, "duplicates": 0, "self_loops": 0, "isolated_nodes": 0}

    def node(text: str) -> int:
        key = node_key(text)
        if key not in index:
            index[key] = len(names)
            names.append(" ".join(text.split()))
        return index[key]

    for t in triples:
        report["facts_in"] += 1
        if not node_key(t.head) or not node_key(t.tail) or not t.relation.strip():
            raise GraphError(f"triple {t!r}: head, relation and tail must be non-empty")
        if node_key(t.head) == node_key(t.tail):
            report["self_loops"] += 1
            continue
        h, r, d = node(t.head), " ".join(t.relation.split()), node(t.tail)
        if (h, r.casefold(), d) in seen:
            report["duplicates"] += 1
            continue
        seen.add((h, r.casefold(), d))
        edges.append((h, d))
        rels.append(r)
        srcs.append(t.source)
    for text in nodes:
        if node_key(text) and node_key(text) not in index:
            if on_isolated == "error":
                raise GraphError(f"node {text!r} is isolated: no fact mentions it (on_isolated='drop' skips "
                                 "and counts such nodes)")
            report["isolated_nodes"] += 1
    if not edges:
        raise GraphError("graph: no facts left to build a graph from "
                         f"({report['facts_in']} read, {report['self_loops']} self-loops)")
    return TextGraph(names, np.array(edges, dtype=np.int64), rels, srcs, report)


_SENTENCE = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def sentences(text: str, min_words: int = 4) -> list[str]:
    """``text`` cut at sentence ends (., ! or ? then space then a capital or digit); pieces shorter than
    ``min_words`` words are joined to the next one."""
    out: list[str] = []
    carry = ""
    for piece in _SENTENCE.split(" ".join(text.split())):
        piece = f"{carry} {piece}".strip() if carry else piece.strip()
        if len(piece.split()) < min_words:
            carry = piece
            continue
        out.append(piece)
        carry = ""
    if carry:
        if out:
            out[-1] = f"{out[-1]} {carry}"
        else:
            out.append(carry)
    return out


def parse_triples(text: str, sentence: str, source: str = "", grounded: bool = True, two_part: bool = True,
                  max_words: int = 12) -> tuple[list[Triple], dict[str, int]]:
    """Facts from an extractor's reply (``subject | relation | object`` lines), with counts of the lines
    dropped by reason: ``malformed`` (not three non-empty parts, or two without ``two_part``, or a part over
    ``max_words`` words), ``ungrounded`` (subject or object not in ``sentence``), ``repeated``; and of the
    kept two-part lines (``two_part``)."""
    kept: list[Triple] = []
    counts = {"lines": 0, "malformed": 0, "ungrounded": 0, "repeated": 0, "two_part": 0}
    where = node_key(sentence)
    seen: set[tuple[str, str, str]] = set()
    for line in text.splitlines():
        if not line.strip():
            continue
        counts["lines"] += 1
        parts = [" ".join(p.split()).strip(" .;,\"'") for p in line.strip().strip("-*• ").split("|")]
        pair = two_part and len(parts) == 2
        if pair:
            parts = [parts[0], "is", parts[1]]
        if len(parts) != 3 or not all(parts) or any(len(p.split()) > max_words for p in parts):
            counts["malformed"] += 1
            continue
        if grounded and (node_key(parts[0]) not in where or node_key(parts[2]) not in where):
            counts["ungrounded"] += 1
            continue
        key = (node_key(parts[0]), parts[1].casefold(), node_key(parts[2]))
        if key in seen:
            counts["repeated"] += 1
            continue
        seen.add(key)
        counts["two_part"] += pair
        kept.append(Triple(parts[0], parts[1], parts[2], source))
    return kept, counts


def write_triples(path: str | Path, triples: Iterable[Triple]) -> Path:
    """Facts as JSONL (see the module doc), written to a temporary file and renamed (atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for t in triples:
            f.write(json.dumps({"head": t.head, "relation": t.relation, "tail": t.tail, "source": t.source},
                               ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def read_triples(path: str | Path) -> tuple[list[Triple], list[str]]:
    """Facts and fact-less node texts from a JSONL graph file; a bad line is a ``DataFormatError`` naming
    its line and field."""
    path = Path(path)
    triples: list[Triple] = []
    lone: list[str] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(str(path), lineno, "line", f"invalid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataFormatError(str(path), lineno, "line", "a JSON object is required")
            if "node" in row:
                if not isinstance(row["node"], str) or not row["node"].strip():
                    raise DataFormatError(str(path), lineno, "node", "must be a non-empty string")
                lone.append(row["node"])
                continue
            for key in ("head", "relation", "tail"):
                if not isinstance(row.get(key), str) or not row[key].strip():
                    raise DataFormatError(str(path), lineno, key, "must be a non-empty string")
            triples.append(Triple(row["head"], row["relation"], row["tail"], str(row.get("source", ""))))
    return triples, lone
