"""Graph benchmark: BPR-MF and LightGCN (3 seeds) beside RecBole 1.2.1's BPR, LightGCN and NGCF on one identical
MovieLens-100K split; quality (Recall / NDCG @10 / @20) and training seconds per epoch.

    python eval/graph_benchmark.py [--dataset ml100k] [--variant lightgcn] [--seeds 3]

A thin entry point over the experiment harness: configs/experiments/graph_benchmark.yaml (the same as
`llmrec experiment graph_benchmark`). Peers run from their own virtual environment (`make peers`). Writes
eval/results/graph_benchmark.json and a plot."""
from llmrec.cli import app

if __name__ == "__main__":
    import sys

    app(["experiment", "graph_benchmark", *sys.argv[1:]])
