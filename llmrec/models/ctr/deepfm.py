"""DeepFM (Guo et al., IJCAI 2017): FM and an MLP over shared embeddings, logits summed. ``deepfm_p`` feeds the
MLP the pairwise inner products too (the "-P" variant of the PNN/DeepFM comparisons)."""
from __future__ import annotations

from llmrec.ctr.features import FeatureEncoder
from llmrec.ctr.layers import InnerProduct
from llmrec.models.ctr.base import DeepCTRConfig, FieldNet
from llmrec.models.registry import register_model


class DeepFMConfig(DeepCTRConfig):
    """DeepFM hyperparameters (embedding size, DNN tower, dropout)."""
    pass


@register_model("deepfm", family="ctr", config=DeepFMConfig)
def build_deepfm(encoder: FeatureEncoder, config: DeepFMConfig) -> FieldNet:
    """DeepFM: linear + FM + MLP over shared field embeddings (DeepFM-D)."""
    return FieldNet(encoder, config, linear=True, fm=True)


@register_model("deepfm_p", family="ctr", config=DeepFMConfig)
def build_deepfm_p(encoder: FeatureEncoder, config: DeepFMConfig) -> FieldNet:
    """DeepFM-P: DeepFM whose MLP also reads the pairwise inner products."""
    return FieldNet(encoder, config, linear=True, fm=True, product=lambda n, d: InnerProduct(n))
