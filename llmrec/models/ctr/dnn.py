"""A plain MLP over the concatenated field embeddings."""
from __future__ import annotations

from llmrec.ctr.features import FeatureEncoder
from llmrec.models.ctr.base import DeepCTRConfig, FieldNet
from llmrec.models.registry import register_model


class DNNConfig(DeepCTRConfig):
    """Plain DNN hyperparameters over concatenated field embeddings."""
    pass


@register_model("dnn", family="ctr", config=DNNConfig)
def build_dnn(encoder: FeatureEncoder, config: DNNConfig) -> FieldNet:
    """MLP over concatenated field embeddings."""
    return FieldNet(encoder, config)
