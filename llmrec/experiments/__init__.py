"""Training jobs (``llmrec train``) and the experiment harness (``llmrec experiment``, ``eval/`` scripts)."""
from llmrec.experiments.jobs import (KnowledgeFeatures, Prepared, TrainJobConfig, evaluate_saved, load_job_config,
                                     prepare, run_training, train_prepared)

__all__ = ["KnowledgeFeatures", "Prepared", "TrainJobConfig", "evaluate_saved", "load_job_config", "prepare",
           "run_training", "train_prepared"]
