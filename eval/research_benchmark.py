"""Personalized research benchmark: the PDR loop with vs without its private stage, scored by the hybrid
evaluation (lexical metrics + an LLM judge panel), with the judge's measured agreement with humans beside it.

    python eval/research_benchmark.py [--set tasks=30] [--set llm.backend=openai --set llm.model=NAME ...]

A thin entry point over the experiment harness: settings are configs/experiments/research_pdr.yaml (the same as
`llmrec experiment research_pdr`); the runner is llmrec/experiments/research.py. Writes
eval/results/research_benchmark.json and a plot."""
from llmrec.cli import app

if __name__ == "__main__":
    import sys

    app(["experiment", "research_pdr", *sys.argv[1:]])
