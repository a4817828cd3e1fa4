"""LoCoMo session retrieval: random, BM25, dense, hybrid, MemGAS and RF-Mem over the llmrec memory API.

    python eval/memory_locomo.py [--set split=dev|heldout|all] [--set digest=false] [--set 'only=[memgas_hybrid]']

A thin entry point over the experiment harness: methods and settings are configs/experiments/memory_locomo.yaml
(the same as `llmrec experiment memory_locomo`); the runner is llmrec/experiments/memory.py. Writes
eval/results/memory_locomo_<split>[_nodigest].json and a plot."""
from llmrec.cli import app

if __name__ == "__main__":
    import sys

    app(["experiment", "memory_locomo", *sys.argv[1:]])
