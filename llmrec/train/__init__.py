"""One training loop for every model family, the tasks it trains on, checkpoints, DDP and export."""
from llmrec.train.loop import FitResult, Trainer, TrainerConfig, seed_everything, world
from llmrec.train.tasks import TASKS, BPRTask, NextItemTask, PointwiseTask, Task

__all__ = ["FitResult", "Trainer", "TrainerConfig", "seed_everything", "world", "TASKS", "BPRTask", "NextItemTask",
           "PointwiseTask", "Task"]
