"""CTR benchmark: every registered CTR model (3 seeds) and the peer libraries on identical splits.

    python eval/ctr_benchmark.py [--dataset ml100k] [--variant deepfm] [--seeds 3]

A thin entry point over the experiment harness: the data sets, variants, seeds and peers are in
configs/experiments/ctr_benchmark.yaml (the same as `llmrec experiment ctr_benchmark`); per-model
hyperparameters in configs/defaults/models/. Peers (FuxiCTR DeepFM and DCNv2, DeepCTR-Torch DeepFM) run from
their own virtual environment (`make peers`). Writes eval/results/ctr_benchmark.json and a plot."""
from llmrec.cli import app

if __name__ == "__main__":
    import sys

    app(["experiment", "ctr_benchmark", *sys.argv[1:]])
