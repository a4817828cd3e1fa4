"""RADIO reranking benchmark on ARES NQ-synthetic + MT-RAG passages.

    python eval/rerank_benchmark.py [--set training.epochs=2] [--set llm.backend=openai --set llm.model=NAME ...]

A thin entry point over the experiment harness: the settings are configs/experiments/rerank_radio.yaml (the same
as `llmrec experiment rerank_radio`); the runner is llmrec/experiments/rerank.py. Writes
eval/results/rerank_benchmark.json and a plot."""
from llmrec.cli import app

if __name__ == "__main__":
    import sys

    app(["experiment", "rerank_radio", *sys.argv[1:]])
