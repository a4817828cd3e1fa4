"""CTR backbones: feature specs and encoders, shared layers, models, one trainer."""
from llmrec.ctr.features import Batch, FeatureEncoder, FeatureSpec
from llmrec.ctr.models import ModelConfig, build_model
from llmrec.ctr.trainer import FitResult, Trainer, TrainerConfig

__all__ = ["Batch", "FeatureEncoder", "FeatureSpec", "ModelConfig", "build_model", "FitResult", "Trainer",
           "TrainerConfig"]
