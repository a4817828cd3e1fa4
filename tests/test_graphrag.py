"""Issue 20, Align-GRAG (papers.md §12): the textual graph (parsing, grounding, isolated nodes), plain graph
RAG's subgraph, the aligner's pruning, the graph as the research agent's public source, and the experiment."""
import math

import numpy as np
import pytest

from llmrec.data.schema import DataFormatError
from llmrec.data.textgraph import (GraphError, TextGraph, Triple, build_graph, parse_triples, read_triples,
                                   sentences, write_triples)
from llmrec.data.qa import QAQuery, load_ares_nq
from llmrec.experiments.graphrag import choose_queries, control_scores, run_graphrag
from llmrec.experiments.kinds import load_kind
from llmrec.knowledge.graph import extract_triples, extraction_prompt
from llmrec.llm.base import Generation
from llmrec.models import build_model
from llmrec.models.graphrag.align_grag import prune
from llmrec.models.graphrag.retriever import GraphIndex, SubgraphConfig, select_subgraph
from llmrec.research import GraphSource, MemorySource, PersonalizedResearcher, ResearchConfig
from conftest import shared


def test_parse_triples_keeps_grounded_facts_and_counts_the_rest():
    sentence = "The Eiffel Tower was designed by Gustave Eiffel and opened in 1889."
    reply = ("Eiffel Tower | designed by | Gustave Eiffel\n"
             "- eiffel tower | opened in | 1889.\n"
             "Eiffel Tower | designed by | Gustave Eiffel\n"  # repeated
             "Marie Curie | born in | Warsaw\n"  # copied from nowhere: ungrounded
             "Eiffel Tower | opened in 1889\n"  # two parts
             "\n")
    kept, counts = parse_triples(reply + "Eiffel Tower | a | b | c\n", sentence, source="doc1", two_part=False)
    assert kept == [Triple("Eiffel Tower", "designed by", "Gustave Eiffel", "doc1"),
                    Triple("eiffel tower", "opened in", "1889", "doc1")]
    assert counts == {"lines": 6, "malformed": 2, "ungrounded": 1, "repeated": 1, "two_part": 0}
    kept, counts = parse_triples(reply + "Gustave Eiffel | engineer\n", sentence, source="doc1")
    assert kept[2] == Triple("Eiffel Tower", "is", "opened in 1889", "doc1")  # the two-part line, grounded
    assert counts == {"lines": 6, "malformed": 0, "ungrounded": 2, "repeated": 1, "two_part": 1}
    kept, counts = parse_triples("Marie Curie | born in | Warsaw", sentence, grounded=False)
    assert len(kept) == 1 and counts["ungrounded"] == 0


def test_sentences_cut_at_ends_and_join_short_pieces():
    text = "Google was founded in 1998. It grew. Its headquarters is the Googleplex! Is it big? Yes."
    assert sentences(text) == ["Google was founded in 1998.", "It grew. Its headquarters is the Googleplex!",
                               "Is it big? Yes."]
    assert sentences("Dr. Smith arrived late") == ["Dr. Smith arrived late"]


def test_build_graph_merges_nodes_counts_loops_and_isolated_nodes():
    triples = [Triple("Google", "founded by", "Larry Page", "p1"), Triple("google", "founded by", "Larry  Page", "p2"),
               Triple("Google", "is", "GOOGLE", "p1"), Triple("Larry Page", "CEO of", "Alphabet", "p3")]
    g = build_graph(triples, nodes=["Sergey Brin", "google"])
    assert g.nodes == ["Google", "Larry Page", "Alphabet"]
    assert g.edges.tolist() == [[0, 1], [1, 2]] and g.sources == ["p1", "p3"]
    assert g.report == {"facts_in": 4, "duplicates": 1, "self_loops": 1, "isolated_nodes": 1}
    assert g.fact(1) == "Larry Page | CEO of | Alphabet"
    assert g.textualize([0, 1]) == "Google | founded by | Larry Page"
    assert g.textualize([0, 2]) == "Other entities: Google; Alphabet"
    with pytest.raises(GraphError, match="node 'Sergey Brin' is isolated"):
        build_graph(triples, nodes=["Sergey Brin"], on_isolated="error")
    with pytest.raises(GraphError, match="no facts left"):
        build_graph([Triple("a", "is", "A")])
    with pytest.raises(GraphError, match="node index out of range"):
        TextGraph(["a"], np.array([[0, 1]]), ["r"], ["s"])


def test_graph_file_round_trip_and_bad_lines_name_the_field(tmp_path):
    triples = [Triple("Google", "founded by", "Larry Page", "p1"), Triple("Larry Page", "CEO of", "Alphabet")]
    path = write_triples(tmp_path / "g" / "graph.jsonl", triples)
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"node": "Sergey Brin"}\n')
    back, lone = read_triples(path)
    assert back == triples and lone == ["Sergey Brin"]
    assert build_graph(back, lone).report["isolated_nodes"] == 1
    (tmp_path / "bad.jsonl").write_text('{"head": "a", "relation": "", "tail": "b"}\n')
    with pytest.raises(DataFormatError, match="relation"):
        read_triples(tmp_path / "bad.jsonl")


class Hand:
    """Hand-made unit vectors for a handful of texts (geometry chosen by the test)."""
    model_id, dim = "hand", 4

    def __init__(self, table):
        self.table = {k: np.asarray(v, dtype=np.float32) / np.linalg.norm(v) for k, v in table.items()}

    def encode(self, texts):
        return np.stack([self.table.get(t, np.array([0, 0, 0, 1], dtype=np.float32)) for t in texts])


def test_subgraph_joins_terminals_through_the_cheapest_path():
    # a - b - c - d, plus a - x - y - d: terminals a and d, reached through the relevant facts (b, c)
    triples = [Triple(h, "r", t) for h, t in [("a", "b"), ("b", "c"), ("c", "d"), ("a", "x"), ("x", "y"),
                                              ("y", "d"), ("e", "f")]]
    g = build_graph(triples)
    q = [1, 0, 0, 0]
    table = {"a": q, "d": [0.9, 0.1, 0, 0], "b": [0, 1, 0, 0], "c": [0, 1, 0, 0], "x": [0, 0, 1, 0],
             "y": [0, 0, 1, 0], "e": [0.2, 0, 1, 0], "f": [0, 0, 1, 0], "question": q,
             "a | r | b": [1, 1, 0, 0], "b | r | c": [1, 1, 0, 0], "c | r | d": [1, 1, 0, 0]}
    index = GraphIndex(g, Hand(table))
    sub = select_subgraph(index, index.encode(["question"])[0], SubgraphConfig(top_nodes=3, top_edges=0))
    names = sorted(g.nodes[v] for v in sub.nodes)
    assert names == ["a", "b", "c", "d", "e"]  # e is a terminal alone in its component; x, y are dearer
    assert sorted(g.fact(e) for e in sub.edges) == ["a | r | b", "b | r | c", "c | r | d"]
    capped = select_subgraph(index, index.encode(["question"])[0],
                             SubgraphConfig(top_nodes=3, top_edges=0, max_nodes=4))
    assert len(capped.nodes) == 4 and {"a", "d", "e"} <= {g.nodes[v] for v in capped.nodes}
    pruned = prune(index, sub, np.array([5.0, 4, 3, 0, 0]), 0.5, 10)  # nodes in index order a, b, c, d, e
    assert [g.nodes[v] for v in pruned.nodes] == ["a", "b", "c"] and len(pruned.edges) == 2
    with pytest.raises(GraphError, match="scores: 2 scores for 5 nodes"):
        prune(index, sub, np.zeros(2), 0.5, 10)
    # the pruning oracle keeps the nodes that name the reference answer first, the question's cosine breaking ties
    answer = QAQuery("q1", "question", ["p1"], ["c"])
    rng = np.random.default_rng(0)
    oracle = control_scores("answer_oracle", index, sub, answer, rng)
    cosine = control_scores("question_cosine", index, sub, answer, rng)
    assert [g.nodes[v] for v in sub.nodes[np.argsort(-oracle)][:2]] == ["c", "a"]
    assert np.allclose(oracle - cosine, [10.0 * (g.nodes[v] == "c") for v in sub.nodes])
    kept = prune(index, sub, oracle, 0.4, 10)
    by_cosine = prune(index, sub, cosine, 0.4, 10)
    assert "c" in {g.nodes[v] for v in kept.nodes} and "c" not in {g.nodes[v] for v in by_cosine.nodes}


def company_world(n=36):
    """Companies with a founder, a city and a product each; reasoning texts name the founder."""
    rng = np.random.default_rng(0)
    first = ["Alice", "Bruno", "Chen", "Dara", "Emil", "Fatima", "Goran", "Hana", "Ivan", "Jun", "Kofi", "Lena"]
    last = ["Moreau", "Novak", "Okafor", "Perez", "Quinn", "Rossi"]
    cities = ["Oslo", "Lima", "Pune", "Cairo", "Quito", "Porto"]
    goods = ["bicycles", "coffee", "violins", "tents", "lamps", "kayaks"]
    triples, questions, reasons, founders = [], [], [], []
    for i in range(n):
        company = f"Company {chr(65 + i % 26)}{i}"
        founder = f"{first[i % 12]} {last[(i // 12 + i) % 6]}"
        triples += [Triple(company, "founded by", founder), Triple(company, "based in", cities[rng.integers(6)]),
                    Triple(company, "makes", goods[rng.integers(6)]),
                    Triple(founder, "studied in", cities[rng.integers(6)])]
        questions.append(f"Who founded {company}?")
        reasons.append(f"{company} was founded by {founder}.")
        founders.append(founder)
    return build_graph(triples), questions, reasons, founders


@pytest.mark.slow  # seconds of generation or serving: kept out of the 2-minute fast lane (CI runs it)
def test_align_grag_learns_to_keep_the_nodes_the_reasoning_names(embedder):
    graph, questions, reasons, founders = company_world(60)
    index = GraphIndex(graph, embedder)
    model = build_model(None, {"name": "align_grag", "epochs": 20, "keep_ratio": 0.25, "seed": 0,
                               "subgraph": {"top_nodes": 6, "top_edges": 4}})
    model.fit(index, model.examples(index, questions[:48], reasons[:48]))
    assert min(h["val_kl"] for h in model.history) < model.history[0]["val_kl"] / 2
    agree, kept_founder = [], []
    for q, r, f in zip(questions[48:], reasons[48:], founders[48:]):
        sub = select_subgraph(index, index.encode([q])[0], model.config.subgraph)
        pruned = model.subgraph(q)
        keep = math.ceil(0.25 * len(sub.nodes))
        assert len(pruned.nodes) == keep and set(pruned.nodes) <= set(sub.nodes)
        assert f in {graph.nodes[v] for v in sub.nodes}
        target = sub.nodes[np.argsort(-(index.node_vectors[sub.nodes] @ index.encode([r])[0]))[:keep]]
        agree.append(len(set(target) & set(pruned.nodes)) / keep)
        kept_founder.append(f in {graph.nodes[v] for v in pruned.nodes})
    # a random quarter would agree with the reasoning's top quarter, and keep the founder, a quarter of the time
    assert np.mean(agree) >= 0.55 and np.mean(kept_founder) >= 0.4
    hits = model.retrieve("anyone", questions[50], k=2)
    assert hits and all(h.unit == "fact" for h in hits) and len(hits) <= 2


class Scripted:
    """A fake LLM for the agent loop: plans the question itself, is satisfied, writes one cited claim."""
    model_id = "scripted"

    def generate(self, prompts, params):
        out = []
        for p in prompts:
            text = p[-1]["content"]
            reply = "yes" if "enough to answer" in text else ("Who founded Company A0?" if "queries" in text.lower()
                                                             else "Company A0 was founded by Alice Moreau [1].")
            out.append(Generation(text=reply, prompt_tokens=len(text) // 4, completion_tokens=8, finish_reason="stop"))
        return out


def test_the_graph_is_a_public_source_of_the_research_agent(embedder, tmp_path):
    from llmrec.memory import Memory
    from llmrec.store import VectorStore

    graph, *_ = company_world(8)
    plain = build_model(None, {"name": "graph_rag"}).fit(GraphIndex(graph, embedder))
    source = GraphSource(plain)
    ev = source.retrieve("u", "Who founded Company A0?", 3)
    assert ev and ev[0].id.startswith("graph:fact") and not ev[0].private
    assert any("Alice" in e.text for e in ev)
    mem = Memory(VectorStore(tmp_path / "mem"), embedder)
    mem.add("alice", "I research small companies.", "s1")
    res = PersonalizedResearcher(Scripted(), [MemorySource(mem)], [source],
                                 config=ResearchConfig(max_iterations=1)).run("alice", "Who founded Company A0?")
    assert any(e.source == "graph" for e in res.evidence)
    with pytest.raises(TypeError, match="graph_rag"):
        GraphSource(object())
    with pytest.raises(GraphError, match="call fit"):
        build_model(None, {"name": "graph_rag"}).context("anything")


@pytest.mark.slow  # seconds of generation or serving: kept out of the 2-minute fast lane (CI runs it)
def test_extraction_prompt_and_parsing_on_the_bundled_model(llm):
    msgs = extraction_prompt("Nick Lowe wrote the song.")
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    triples, stats = extract_triples(llm, {"p1": "The Googleplex is the headquarters of Google in Mountain View. "
                                                  "Larry Page and Sergey Brin founded Google in 1998."},
                                     progress=False)
    assert stats.sentences == 2 and stats.facts == len(triples)
    assert stats.counts["lines"] >= stats.facts
    text = "the googleplex is the headquarters of google in mountain view. larry page and sergey brin founded google in 1998."
    assert all(t.source == "p1" and t.head.casefold() in text and t.tail.casefold() in text for t in triples)


@pytest.mark.slow
def test_experiment_slice_on_ares(tmp_path):
    ares = shared("ares_nq_synthetic")
    out = tmp_path / "g.json"
    exp = load_kind("graphrag_align", "graphrag",
                    [f"ares_path={ares}", "train_queries=6", "test_queries=2", "seeds=[0]", "reasoning=answer",
                     "extraction_tokens=24", "answer_tokens=8",
                     "controls=[question_cosine, answer_oracle, gold_passage]",
                     f"work_dir={tmp_path / 'w'}", "variants=[{label: Align-GRAG, overrides: {epochs: 2}}]"])
    res = run_graphrag(exp, out)
    r = res["results"]
    assert set(r) == {"no context (LLM alone)", "plain graph RAG", "Align-GRAG", "question cosine pruning (control)",
                      "answer oracle pruning (oracle)", "gold passages (oracle)"}
    # the gold-passage oracle reads the test questions' own gold passages; the pruning oracle keeps at least as
    # much of the answer as the cosine control, with the same number of nodes
    corpus = load_ares_nq(ares)
    _, test = choose_queries(corpus.queries, 6, 2, 0)
    words = np.mean([len("\n".join(corpus.passages[g] for g in q.gold).split()) for q in test])
    assert r["gold passages (oracle)"]["context_words"] == pytest.approx(words)
    oracle, cosine = r["answer oracle pruning (oracle)"], r["question cosine pruning (control)"]
    assert oracle["answer_coverage"] >= cosine["answer_coverage"]
    assert r["Align-GRAG"]["prompt_tokens"] <= r["plain graph RAG"]["prompt_tokens"]
    assert 0 <= r["plain graph RAG"]["token_f1"] <= 1 and out.with_suffix(".png").exists()
    assert (tmp_path / "w" / "graph.jsonl").exists()


@pytest.mark.slow
def test_align_grag_builds_saves_and_answers_on_your_own_passages(tmp_path, monkeypatch):
    """``llmrec graphrag build`` on a user's passages and questions files (the bundled LLM extracts the facts,
    ``reasoning: answer`` targets): the folder loads without the LLM and prunes exactly as the trained
    retriever did; ``graphrag ask`` prints the facts as JSON; bad files name their row and column."""
    import json as _json

    from typer.testing import CliRunner

    from llmrec.cli import app
    from llmrec.knowledge.graphrag import GraphRAGBuild, build_retriever, load_retriever

    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))
    (tmp_path / "docs.jsonl").write_text("\n".join(_json.dumps(r) for r in [
        {"doc": "g", "body": "The Googleplex is the headquarters of Google in Mountain View. Larry Page and "
                             "Sergey Brin founded Google in 1998."},
        {"doc": "m", "body": "Microsoft was founded by Bill Gates and Paul Allen in 1975. Its headquarters is "
                             "in Redmond, Washington."}]) + "\n")
    (tmp_path / "qa.csv").write_text("q,a\nWho founded Google?,Larry Page and Sergey Brin\n"
                                     "Where is the headquarters of Google?,Mountain View\n"
                                     "Who founded Microsoft?,Bill Gates and Paul Allen\n"
                                     "Where is the headquarters of Microsoft?,Redmond\n")
    cfg = {"passages": {"path": "docs.jsonl", "id": "doc", "text": "body"},
           "questions": {"path": "qa.csv", "question": "q", "answer": "a"},
           "model": {"name": "align_grag", "epochs": 3, "hidden": 16, "val_fraction": 0.0},
           "reasoning": "answer", "extraction_tokens": 32, "output_dir": str(tmp_path / "rag")}
    trained = build_retriever(GraphRAGBuild.model_validate(cfg), base=tmp_path)
    assert trained.index.graph.n_edges > 0 and (tmp_path / "rag" / "aligner.pt").exists()
    loaded = load_retriever(tmp_path / "rag")
    q = "Who founded Google?"
    assert loaded.context(q) == trained.context(q)
    assert [h.text for h in loaded.retrieve("", q, 5)] == [h.text for h in trained.retrieve("", q, 5)]
    res = CliRunner().invoke(app, ["graphrag", "ask", str(tmp_path / "rag"), q, "--k", "3", "--json"])
    assert res.exit_code == 0, res.output
    facts = _json.loads(res.output)
    # the CLI prints what the loaded retriever returns: the same facts, scores and source passages
    expected = loaded.retrieve("", q, 3)
    assert facts and [f["fact"] for f in facts] == [h.text for h in expected]
    assert [f["source"] for f in facts] == [h.metadata["source"] for h in expected]
    assert [f["score"] for f in facts] == pytest.approx([h.score for h in expected])
    (tmp_path / "bad.csv").write_text("q,a\nWho founded Google?,\n")
    with pytest.raises(DataFormatError, match=r"bad.csv.*2.*a"):
        build_retriever(GraphRAGBuild.model_validate({**cfg, "questions": {"path": "bad.csv", "question": "q",
                                                                           "answer": "a"}}), base=tmp_path)
    with pytest.raises(ValueError, match="questions: align_grag trains its aligner"):
        GraphRAGBuild.model_validate({**cfg, "questions": None})
