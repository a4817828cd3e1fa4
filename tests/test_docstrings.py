"""Every public class and function of llmrec has a docstring. Methods that implement a protocol member
(``forward`` of torch modules, and the members of llmrec's protocols: LLM, Embedder, Retriever, Reranker,
Task, ...) are documented once, on the protocol, which this test checks too."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "llmrec"
PROTOCOL_MEMBERS = {"forward", "model_id", "generate", "encode", "dim", "retrieve", "rerank", "score", "make_batch",
                    "row_loss", "evaluate", "autocast", "pair_logits", "trainable", "predict"}
PROTOCOLS = {("llm/base.py", "LLM"), ("embed.py", "Embedder"), ("retrieval.py", "Retriever"),
             ("rerank/base.py", "Reranker"), ("train/tasks.py", "Task"), ("train/tasks.py", "EvalContext"),
             ("rerank/radio.py", "PairScorer")}


def test_public_definitions_have_docstrings():
    missing = []
    for f in sorted(ROOT.rglob("*.py")):
        rel = f.relative_to(ROOT).as_posix()
        if rel.startswith("_") or "/_" in rel or rel == "cli.py":  # cli: typer shows each command's docstring
            continue
        tree = ast.parse(f.read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                if not ast.get_docstring(node):
                    missing.append(f"{rel}:{node.lineno} {node.name}")
                if isinstance(node, ast.ClassDef):
                    protocol = (rel, node.name) in PROTOCOLS
                    for m in node.body:
                        if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and not m.name.startswith("_"):
                            exempt = m.name in PROTOCOL_MEMBERS and not protocol
                            if not exempt and not ast.get_docstring(m):
                                missing.append(f"{rel}:{m.lineno} {node.name}.{m.name}")
    assert not missing, f"{len(missing)} public definitions without a docstring: {missing[:20]}"


def test_cli_commands_and_options_have_help():
    import typer.main

    from llmrec.cli import app

    group = typer.main.get_command(app)
    todo = [(group.name, group)]
    bare = []
    while todo:
        name, cmd = todo.pop()
        if not (cmd.help or "").strip():
            bare.append(name)
        for p in cmd.params:
            if getattr(p, "help", None) in (None, "") and p.param_type_name == "option" and p.name != "help":
                bare.append(f"{name} --{p.name}")
        for sub_name, sub in getattr(cmd, "commands", {}).items():
            todo.append((f"{name} {sub_name}", sub))
    assert not bare, bare
