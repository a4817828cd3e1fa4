"""The experiment harness (``llmrec experiment``, ``eval/`` scripts). The training job (``llmrec train``) is
``llmrec.train_job``, beside the Python API; its names are re-exported here for earlier imports."""
from llmrec.train_job import (KnowledgeFeatures, Prepared, TrainJobConfig, evaluate_saved, load_job_config, prepare,
                              run_training, train_prepared)

__all__ = ["KnowledgeFeatures", "Prepared", "TrainJobConfig", "evaluate_saved", "load_job_config", "prepare",
           "run_training", "train_prepared"]
