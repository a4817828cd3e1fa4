"""Factorization machine (Rendle, ICDM 2010): linear term + pairwise inner products of field embeddings."""
from __future__ import annotations

from llmrec.ctr.features import FeatureEncoder
from llmrec.models.ctr.base import CTRConfig, FieldNet
from llmrec.models.registry import register_model


class FMConfig(CTRConfig):
    """Factorization machine hyperparameters (embedding size)."""
    pass


@register_model("fm", family="ctr", config=FMConfig)
def build_fm(encoder: FeatureEncoder, config: FMConfig) -> FieldNet:
    """Factorization machine: linear term + sum of pairwise embedding inner products."""
    return FieldNet(encoder, config, linear=True, fm=True, deep=False)
