"""Logistic regression over every field: the first-order term alone."""
from __future__ import annotations

from llmrec.ctr.features import FeatureEncoder
from llmrec.models.ctr.base import CTRConfig, FieldNet
from llmrec.models.registry import register_model


class LRConfig(CTRConfig):
    """Logistic regression over the encoded features."""
    pass


@register_model("lr", family="ctr", config=LRConfig)
def build_lr(encoder: FeatureEncoder, config: LRConfig) -> FieldNet:
    """Logistic regression: a learned weight per field value plus a bias."""
    return FieldNet(encoder, config, linear=True, deep=False)
