"""The impression data view of the CTR and multi-task families: typed feature specs, encoders fitted on
train, the ``Batch`` they produce, and the layers CTR models are composed of (models: ``llmrec.models``;
training: ``llmrec.train``)."""
from llmrec.ctr.features import Batch, FeatureEncoder, FeatureSpec

__all__ = ["Batch", "FeatureEncoder", "FeatureSpec"]
