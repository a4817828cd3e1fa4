"""FGCNN (Liu et al., WWW 2019): a CNN generates new fields from the embeddings (convolution, pooling,
recombination); an IPNN then runs over raw + generated fields."""
from __future__ import annotations

from llmrec.ctr.features import FeatureEncoder
from llmrec.ctr.layers import FGCNNGenerator, InnerProduct
from llmrec.models.ctr.base import DeepCTRConfig, FieldNet
from llmrec.models.registry import register_model


class FGCNNConfig(DeepCTRConfig):
    """FGCNN hyperparameters: convolution channels, kernel heights, pooling and recombination sizes."""
    fgcnn_channels: list[int] = [14, 16]
    fgcnn_kernel: int = 7
    fgcnn_pool: int = 2
    fgcnn_recombine: int = 2


@register_model("fgcnn", family="ctr", config=FGCNNConfig)
def build_fgcnn(encoder: FeatureEncoder, config: FGCNNConfig) -> FieldNet:
    """FGCNN: CNN-generated fields + IPNN over raw and generated fields."""
    c = config
    return FieldNet(encoder, c, product=lambda n, d: InnerProduct(n),
                    generator=lambda n, d: FGCNNGenerator(n, d, c.fgcnn_channels, c.fgcnn_kernel, c.fgcnn_pool,
                                                          c.fgcnn_recombine))
