"""Plain graph RAG (the G-Retriever-style baseline of Align-GRAG, papers.md §12): the subgraph of a textual
knowledge graph an LLM answers a question from.

1. The question, every node text and every fact (``head | relation | tail``) are embedded (any ``Embedder``;
   the default is MiniLM) and compared by cosine.
2. The ``top_nodes`` nodes and the two ends of the ``top_edges`` facts nearest the question are terminals.
3. Terminals in the same connected component are joined by an approximate Steiner tree (networkx's
   Mehlhorn 2-approximation) whose edge cost is ``1 - cos(question, fact)``: relevant facts are cheap
   paths. G-Retriever solves a prize-collecting Steiner tree (``pcst_fast``); here the prizes only pick the
   terminals, and every terminal is kept. When the tree passes ``max_nodes`` nodes, the joining nodes least
   similar to the question are dropped.
4. The subgraph is those nodes and the facts between them (at most ``max_edges``, most similar first),
   written one fact per line (``TextGraph.textualize``).

``GraphRAG`` also implements the ``Retriever`` protocol (``retrieve(user_id, query, k)``: the subgraph's
facts as hits), so the research agent reads it as a public source."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np
from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.data.textgraph import GraphError, TextGraph
from llmrec.models.registry import ModelConfigBase, register_model

if TYPE_CHECKING:  # the retrieval protocol module imports langchain-core: CTR-only installs skip it
    from llmrec.embed import Embedder
    from llmrec.retrieval import Hit


class GraphIndex:
    """A ``TextGraph`` with its node and fact embeddings and an undirected networkx view for path finding."""

    def __init__(self, graph: TextGraph, embedder: Embedder) -> None:
        self.graph, self.embedder = graph, embedder
        self.node_vectors = np.asarray(embedder.encode(graph.nodes), dtype=np.float32)
        self.fact_vectors = np.asarray(embedder.encode([graph.fact(e) for e in range(graph.n_edges)]),
                                       dtype=np.float32)
        self.nx = nx.Graph()
        self.nx.add_nodes_from(range(graph.n_nodes))
        for e, (h, t) in enumerate(graph.edges.tolist()):
            if not self.nx.has_edge(h, t):  # parallel facts: the path finder keeps one, the subgraph has all
                self.nx.add_edge(h, t, fact=e)
        self.component = np.zeros(graph.n_nodes, dtype=np.int64)
        for c, members in enumerate(nx.connected_components(self.nx)):
            self.component[list(members)] = c

    def encode(self, texts: list[str]) -> np.ndarray:
        """Question vectors in the graph's embedding space."""
        return np.asarray(self.embedder.encode(texts), dtype=np.float32)


@dataclass
class Subgraph:
    """Node and fact indices of a ``TextGraph`` chosen for one question, with the question's vector."""
    nodes: np.ndarray
    edges: np.ndarray
    question: np.ndarray

    def text(self, graph: TextGraph) -> str:
        """The subgraph's facts, one per line, then its nodes no listed fact names."""
        return graph.textualize(self.nodes.tolist(), self.edges)


class SubgraphConfig(StrictConfig):
    """How many nodes and facts are terminals, and the size caps of the joined subgraph."""
    top_nodes: int = Field(8, ge=1)
    top_edges: int = Field(8, ge=0)
    max_nodes: int = Field(40, ge=2)
    max_edges: int = Field(40, ge=1)


class GraphRAGConfig(ModelConfigBase):
    """Plain graph RAG: only the subgraph selection."""
    subgraph: SubgraphConfig = SubgraphConfig()


def rank_edges(index: GraphIndex, question: np.ndarray, edges: np.ndarray, limit: int) -> np.ndarray:
    """``edges`` ordered by their fact's cosine with the question, at most ``limit``."""
    if not len(edges):
        return edges
    order = np.argsort(-(index.fact_vectors[edges] @ question), kind="stable")
    return edges[order[:limit]]


def select_subgraph(index: GraphIndex, question: np.ndarray, config: SubgraphConfig) -> Subgraph:
    """Terminals by cosine, joined per component by an approximate Steiner tree, capped (module doc)."""
    g = index.graph
    node_sim = index.node_vectors @ question
    fact_sim = index.fact_vectors @ question
    terminals = set(np.argsort(-node_sim, kind="stable")[: config.top_nodes].tolist())
    if config.top_edges:
        terminals |= set(g.edges[np.argsort(-fact_sim, kind="stable")[: config.top_edges]].ravel().tolist())
    chosen = set(terminals)
    for comp in sorted({int(index.component[t]) for t in terminals}):
        group = sorted(t for t in terminals if index.component[t] == comp)
        if len(group) < 2:
            continue
        members = np.flatnonzero(index.component == comp).tolist()
        sub = index.nx.subgraph(members)
        weighted = nx.Graph()
        for u, v, data in sub.edges(data=True):
            weighted.add_edge(u, v, weight=float(max(1.0 - fact_sim[data["fact"]], 1e-3)))
        tree = nx.algorithms.approximation.steiner_tree(weighted, group, weight="weight", method="mehlhorn")
        chosen |= set(tree.nodes)
    if len(chosen) > config.max_nodes:
        joining = sorted(chosen - terminals, key=lambda v: -node_sim[v])
        keep_terms = sorted(terminals, key=lambda v: -node_sim[v])[: config.max_nodes]
        chosen = set(keep_terms) | set(joining[: max(config.max_nodes - len(keep_terms), 0)])
    nodes = np.array(sorted(chosen), dtype=np.int64)
    edges = rank_edges(index, question, g.induced_edges(nodes), config.max_edges)
    return Subgraph(nodes, edges, question)


def facts_as_hits(index: GraphIndex, sub: Subgraph, k: int) -> list[Hit]:
    """A subgraph's facts as retrieval hits, most similar to the question first (``k`` of them)."""
    from llmrec.retrieval import Hit, check_k  # lower layer; here so that importing the models needs no LLM extra

    check_k(k)
    edges = rank_edges(index, sub.question, sub.edges, k)
    sims = index.fact_vectors[edges] @ sub.question if len(edges) else []
    return [Hit(id=f"fact{int(e)}", text=index.graph.fact(int(e)), score=float(s), unit="fact",
                metadata={"source": index.graph.sources[int(e)]}) for e, s in zip(edges, sims)]


class GraphRAG:
    """Plain graph RAG over a fitted ``GraphIndex``: ``subgraph(question)``, ``context(question)`` and the
    ``Retriever`` protocol."""

    def __init__(self, config: GraphRAGConfig) -> None:
        self.config = config
        self.index: GraphIndex | None = None

    def fit(self, index: GraphIndex) -> "GraphRAG":
        """Attach the graph to answer from (no training)."""
        self.index = index
        return self

    def _index(self) -> GraphIndex:
        if self.index is None:
            raise GraphError(f"{self.config.name}: call fit(GraphIndex) before asking for a subgraph")
        return self.index

    def subgraph(self, question: str) -> Subgraph:
        """The subgraph for ``question``."""
        index = self._index()
        return select_subgraph(index, index.encode([question])[0], self.config.subgraph)

    def context(self, question: str) -> str:
        """The subgraph for ``question`` as text for the LLM."""
        return self.subgraph(question).text(self._index().graph)

    def retrieve(self, user_id: str, query: str, k: int) -> list[Hit]:
        """The subgraph's facts as hits (the graph is public: ``user_id`` is not used)."""
        return facts_as_hits(self._index(), self.subgraph(query), k)


@register_model("graph_rag", family="graphrag", config=GraphRAGConfig, onnx=False, task="fit")
def build_graph_rag(context: None, config: GraphRAGConfig) -> GraphRAG:
    """Plain graph RAG: cosine terminals joined by a Steiner tree, every chosen fact to the LLM."""
    return GraphRAG(config)
