"""Align-GRAG (Xu et al., arXiv 2505.16237; papers.md §12): the plain graph-RAG subgraph, pruned by a graph
aligner trained to agree with an LLM's reasoning about the question.

**Aligner.** Node inputs are ``[x_v ; x_v * q ; cos(x_v, q)]`` (x_v the node text's vector, q the
question's); a linear layer to ``hidden`` and ``layers`` graph-attention layers over the subgraph's facts in
both directions, whose attention logits and messages see the fact as ``[f ; f * q ; cos(f, q)]`` (a
node is relevant through the facts that match the question; self-loops; residual). A head scores
every node; mean pooling + a linear map gives the graph vector.

**Losses** (one question's subgraph and the vector r of the LLM's reasoning for it):
- node alignment: ``KL(t || p)``, p = softmax of the node scores, t = softmax(cos(x_v, r) / target_tau),
  the nodes the reasoning is about;
- representation alignment: InfoNCE between graph vectors and reasoning vectors over a batch of questions
  (temperature ``tau``, both directions), weighted ``contrastive_weight``.

**Pruning.** At answer time the aligner keeps the ``keep_ratio`` best-scored nodes (at least one) and the
facts between them. The paper also feeds the graph vector to the LLM as a soft token; that is not built
here (the generator reads only the pruned text; the contrastive loss shapes the shared encoder).

``fit`` holds out ``val_fraction`` of the examples and keeps the epoch with the lowest validation KL."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from llmrec.data.textgraph import GraphError
from llmrec.models.graphrag.retriever import (GraphIndex, Subgraph, SubgraphConfig, facts_as_hits, rank_edges,
                                              select_subgraph)
from llmrec.models.registry import ModelConfigBase, register_model

if TYPE_CHECKING:
    from llmrec.retrieval import Hit


class AlignGRAGConfig(ModelConfigBase):
    """The plain subgraph's settings, the aligner's sizes and training, and the share of nodes kept."""
    subgraph: SubgraphConfig = SubgraphConfig()
    hidden: int = Field(128, ge=8)
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    keep_ratio: float = Field(0.5, gt=0.0, le=1.0)
    target_tau: float = Field(0.05, gt=0.0)
    tau: float = Field(0.1, gt=0.0)
    contrastive_weight: float = Field(1.0, ge=0.0)
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(16, ge=2)
    learning_rate: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    seed: int = 0


@dataclass
class AlignExample:
    """One training question: its subgraph and the embedding of the LLM's reasoning about it."""
    subgraph: Subgraph
    reasoning: np.ndarray


class GraphAttention(nn.Module):
    """One multi-head attention layer over directed (source -> target) facts with fact vectors."""

    def __init__(self, hidden: int, fact_dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden: {hidden} is not divisible by heads {heads}")
        self.heads, self.width = heads, hidden // heads
        self.value = nn.Linear(hidden, hidden)
        self.fact = nn.Linear(fact_dim, hidden, bias=False)
        self.att_src = nn.Parameter(torch.randn(heads, self.width) / math.sqrt(self.width))
        self.att_dst = nn.Parameter(torch.randn(heads, self.width) / math.sqrt(self.width))
        self.att_fact = nn.Parameter(torch.randn(heads, self.width) / math.sqrt(self.width))
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, facts: torch.Tensor) -> torch.Tensor:
        """New node states: ``h`` plus the attention-weighted messages from each node's in-neighbours."""
        n = h.shape[0]
        v = self.value(h).view(n, self.heads, self.width)
        f = self.fact(facts).view(-1, self.heads, self.width)
        logits = F.leaky_relu((v[src] * self.att_src).sum(-1) + (v[dst] * self.att_dst).sum(-1)
                              + (f * self.att_fact).sum(-1), 0.2)  # (E, heads)
        logits = logits - logits.max()
        w = logits.exp()
        denom = torch.zeros(n, self.heads, dtype=h.dtype).index_add_(0, dst, w)
        alpha = self.drop(w / denom[dst].clamp_min(1e-12))
        msg = (v[src] + f) * alpha.unsqueeze(-1)
        out = torch.zeros(n, self.heads, self.width, dtype=h.dtype).index_add_(0, dst, msg).reshape(n, -1)
        return self.norm(h + F.elu(out))


@dataclass
class GraphBatch:
    """Subgraphs as one disjoint union: node vectors with their question's vector, directed facts (both
    directions plus a self-loop per node, which carries a zero fact vector) with their question's vector, and
    which subgraph every node belongs to."""
    x: torch.Tensor  # (N, dim)
    q_nodes: torch.Tensor  # (N, dim)
    src: torch.Tensor  # (E,)
    dst: torch.Tensor  # (E,)
    facts: torch.Tensor  # (E, dim)
    q_facts: torch.Tensor  # (E, dim)
    graph: torch.Tensor  # (N,) subgraph index of every node
    n_graphs: int


def graph_batch(index: GraphIndex, subs: list[Subgraph]) -> GraphBatch:
    """The disjoint union of ``subs`` (``GraphBatch``)."""
    dim = index.node_vectors.shape[1]
    xs, qn, srcs, dsts, fs, qf, gid = [], [], [], [], [], [], []
    offset = 0
    for i, sub in enumerate(subs):
        n = len(sub.nodes)
        pos = {int(v): offset + j for j, v in enumerate(sub.nodes)}
        pairs = index.graph.edges[sub.edges]
        a = np.array([pos[int(h)] for h in pairs[:, 0]], dtype=np.int64)
        b = np.array([pos[int(t)] for t in pairs[:, 1]], dtype=np.int64)
        loops = np.arange(offset, offset + n, dtype=np.int64)
        srcs.append(np.concatenate([a, b, loops]))
        dsts.append(np.concatenate([b, a, loops]))
        fv = index.fact_vectors[sub.edges]
        fs.append(np.concatenate([fv, fv, np.zeros((n, dim), dtype=np.float32)]))
        qf.append(np.repeat(sub.question[None], 2 * len(sub.edges) + n, 0))
        xs.append(index.node_vectors[sub.nodes])
        qn.append(np.repeat(sub.question[None], n, 0))
        gid.append(np.full(n, i, dtype=np.int64))
        offset += n
    cat = lambda parts: torch.from_numpy(np.concatenate(parts))  # noqa: E731
    return GraphBatch(cat(xs), cat(qn), cat(srcs), cat(dsts), cat(fs), cat(qf), cat(gid), len(subs))


def segment_log_softmax(scores: torch.Tensor, segment: torch.Tensor, n: int) -> torch.Tensor:
    """log softmax of ``scores`` within each segment (``segment[i]`` in 0..n-1)."""
    top = torch.zeros(n, dtype=scores.dtype).scatter_reduce(0, segment, scores.detach(), "amax", include_self=False)
    shifted = scores - top[segment]
    total = torch.zeros(n, dtype=scores.dtype).index_add(0, segment, shifted.exp())
    return shifted - total.log()[segment]


class GraphAligner(nn.Module):
    """Node scores and one graph vector per subgraph of a ``GraphBatch`` (module doc)."""

    def __init__(self, dim: int, config: AlignGRAGConfig) -> None:
        super().__init__()
        self.inp = nn.Linear(2 * dim + 1, config.hidden)
        self.layers = nn.ModuleList(GraphAttention(config.hidden, 2 * dim + 1, config.heads, config.dropout)
                                    for _ in range(config.layers))
        self.score = nn.Sequential(nn.Linear(config.hidden, config.hidden), nn.ReLU(), nn.Linear(config.hidden, 1))
        self.pool = nn.Linear(config.hidden, dim)

    def forward(self, b: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(node scores [N], graph vectors [n_graphs, dim])."""
        h = F.relu(self.inp(torch.cat([b.x, b.x * b.q_nodes, (b.x * b.q_nodes).sum(1, keepdim=True)], 1)))
        facts = torch.cat([b.facts, b.facts * b.q_facts, (b.facts * b.q_facts).sum(1, keepdim=True)], 1)
        for layer in self.layers:
            h = layer(h, b.src, b.dst, facts)
        sizes = torch.zeros(b.n_graphs).index_add(0, b.graph, torch.ones(len(b.graph)))
        pooled = torch.zeros(b.n_graphs, h.shape[1]).index_add(0, b.graph, h) / sizes.clamp_min(1).unsqueeze(1)
        return self.score(h).squeeze(1), self.pool(pooled)


def prune(index: GraphIndex, sub: Subgraph, scores: np.ndarray, keep_ratio: float, limit: int) -> Subgraph:
    """The ``keep_ratio`` best-scored nodes of ``sub`` (at least one) and the facts among them (most similar
    to the question first, at most ``limit``)."""
    if len(scores) != len(sub.nodes):
        raise GraphError(f"scores: {len(scores)} scores for {len(sub.nodes)} nodes")
    keep = max(1, math.ceil(keep_ratio * len(sub.nodes)))
    nodes = np.sort(sub.nodes[np.argsort(-np.asarray(scores), kind="stable")[:keep]])
    edges = rank_edges(index, sub.question, index.graph.induced_edges(nodes), limit)
    return Subgraph(nodes, edges, sub.question)


class AlignGRAG:
    """Graph RAG whose subgraph a trained aligner prunes: ``fit(index, examples)``, then ``subgraph``,
    ``context`` and the ``Retriever`` protocol as ``GraphRAG``."""

    def __init__(self, config: AlignGRAGConfig) -> None:
        self.config = config
        self.index: GraphIndex | None = None
        self.aligner: GraphAligner | None = None
        self.history: list[dict] = []

    def examples(self, index: GraphIndex, questions: list[str], reasonings: list[str]) -> list[AlignExample]:
        """Training examples: each question's plain subgraph and its reasoning text's vector."""
        if len(questions) != len(reasonings):
            raise ValueError(f"reasonings: {len(reasonings)} for {len(questions)} questions")
        qv, rv = index.encode(questions), index.encode(reasonings)
        return [AlignExample(select_subgraph(index, q, self.config.subgraph), r) for q, r in zip(qv, rv)]

    def losses(self, index: GraphIndex, batch: list[AlignExample], aligner: GraphAligner) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean node-alignment KL over the batch's subgraphs and the batch's symmetric InfoNCE."""
        gb = graph_batch(index, [ex.subgraph for ex in batch])
        scores, graphs = aligner(gb)
        rv = torch.from_numpy(np.stack([ex.reasoning for ex in batch]))
        target = segment_log_softmax((gb.x * rv[gb.graph]).sum(1) / self.config.target_tau, gb.graph, gb.n_graphs)
        kl = (target.exp() * (target - segment_log_softmax(scores, gb.graph, gb.n_graphs))).sum() / len(batch)
        logits = F.normalize(graphs, dim=1) @ F.normalize(rv, dim=1).T / self.config.tau
        labels = torch.arange(len(batch))
        nce = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
        return kl, nce

    def fit(self, index: GraphIndex, examples: list[AlignExample], progress: bool = False) -> "AlignGRAG":
        """Train the aligner (seeded); keeps the epoch with the lowest validation KL; ``history`` per epoch."""
        from tqdm.auto import tqdm

        c = self.config
        if len(examples) < 2:
            raise ValueError(f"examples: need at least 2 training questions, got {len(examples)}")
        self.index = index
        torch.manual_seed(c.seed)
        rng = np.random.default_rng(c.seed)
        order = rng.permutation(len(examples))
        n_val = int(round(c.val_fraction * len(examples)))
        val = [examples[i] for i in order[:n_val]]
        train = [examples[i] for i in order[n_val:]]
        aligner = GraphAligner(index.node_vectors.shape[1], c)
        opt = torch.optim.Adam(aligner.parameters(), lr=c.learning_rate, weight_decay=c.weight_decay)
        best, best_state = math.inf, None
        self.history = []
        for epoch in tqdm(range(c.epochs), desc="align", disable=not progress):
            aligner.train()
            perm = rng.permutation(len(train))
            totals = np.zeros(2)
            for i in range(0, len(perm) - 1, c.batch_size):
                batch = [train[j] for j in perm[i:i + c.batch_size]]
                if len(batch) < 2:
                    continue
                kl, nce = self.losses(index, batch, aligner)
                loss = kl + c.contrastive_weight * nce
                opt.zero_grad()
                loss.backward()
                opt.step()
                totals += [kl.item() * len(batch), nce.item() * len(batch)]
            row = {"epoch": epoch + 1, "train_kl": totals[0] / len(train), "train_nce": totals[1] / len(train)}
            if len(val) >= 2:
                aligner.eval()
                with torch.no_grad():
                    vkl, vnce = self.losses(index, val, aligner)
                row.update(val_kl=vkl.item(), val_nce=vnce.item())
            self.history.append(row)
            score = row.get("val_kl", row["train_kl"])
            if score < best:
                best = score
                best_state = {k: v.detach().clone() for k, v in aligner.state_dict().items()}
        aligner.load_state_dict(best_state)
        aligner.eval()
        self.aligner = aligner
        return self

    def restore(self, index: GraphIndex, state: dict[str, torch.Tensor]) -> "AlignGRAG":
        """A trained aligner's weights (``aligner.state_dict()`` after ``fit``) over ``index``: ready to prune
        without training again."""
        aligner = GraphAligner(index.node_vectors.shape[1], self.config)
        aligner.load_state_dict(state)
        self.index, self.aligner = index, aligner.eval()
        return self

    def node_scores(self, sub: Subgraph) -> np.ndarray:
        """The aligner's score of every node of ``sub``."""
        if self.aligner is None or self.index is None:
            raise GraphError(f"{self.config.name}: call fit(index, examples) before asking for a subgraph")
        with torch.no_grad():
            scores, _ = self.aligner(graph_batch(self.index, [sub]))
        return scores.numpy()

    def subgraph(self, question: str) -> Subgraph:
        """The plain subgraph for ``question``, pruned to the aligner's best ``keep_ratio`` of nodes."""
        if self.index is None:
            raise GraphError(f"{self.config.name}: call fit(index, examples) before asking for a subgraph")
        return self.prune(select_subgraph(self.index, self.index.encode([question])[0], self.config.subgraph))

    def prune(self, sub: Subgraph) -> Subgraph:
        """``sub`` cut to the aligner's best ``keep_ratio`` of nodes and the facts among them."""
        return prune(self.index, sub, self.node_scores(sub), self.config.keep_ratio, self.config.subgraph.max_edges)

    def context(self, question: str) -> str:
        """The pruned subgraph as text for the LLM."""
        return self.subgraph(question).text(self.index.graph)

    def retrieve(self, user_id: str, query: str, k: int) -> list[Hit]:
        """The pruned subgraph's facts as hits (``user_id`` is not used: the graph is public)."""
        return facts_as_hits(self.index, self.subgraph(query), k)


@register_model("align_grag", family="graphrag", config=AlignGRAGConfig, onnx=False, task="fit")
def build_align_grag(context: None, config: AlignGRAGConfig) -> AlignGRAG:
    """Align-GRAG: graph RAG pruned by a GNN aligned to LLM reasoning (KL node alignment + InfoNCE)."""
    return AlignGRAG(config)
