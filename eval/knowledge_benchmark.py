"""Knowledge benchmark: does LLM knowledge improve CTR models (KAR, LLM4MSR), with shuffled controls?

    python eval/knowledge_benchmark.py [--dataset synthetic] [--variant deepfm+KAR] [--seeds 3]

A thin entry point over the experiment harness: extraction settings, data sets, variants and seeds are in
configs/experiments/knowledge_benchmark.yaml (the same as `llmrec experiment knowledge_benchmark`). A
stronger LLM is one edit there (``knowledge.llm``). Extraction cost on the default LLM (batched vs one at a
time) is measured by eval/bench_extraction.py. Writes eval/results/knowledge_benchmark.json and a plot."""
from llmrec.cli import app

if __name__ == "__main__":
    import sys

    app(["experiment", "knowledge_benchmark", *sys.argv[1:]])
