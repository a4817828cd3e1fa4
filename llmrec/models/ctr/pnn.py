"""The PNN family (Qu et al., TOIS 2018): an MLP over field embeddings plus their pairwise products.
IPNN: inner products; KPNN: kernel products (vector / matrix / number kernels); PIN: a micro-network per
field pair."""
from __future__ import annotations

from typing import Literal

from llmrec.ctr.features import FeatureEncoder
from llmrec.ctr.layers import InnerProduct, KernelProduct, PINMicroNet
from llmrec.models.ctr.base import DeepCTRConfig, FieldNet
from llmrec.models.registry import register_model


class IPNNConfig(DeepCTRConfig):
    """IPNN hyperparameters (inner-product layer + DNN)."""
    pass


class KPNNConfig(DeepCTRConfig):
    """KPNN hyperparameters (kernel outer-product layer + DNN)."""
    kpnn_kernel: Literal["vector", "matrix", "number"] = "vector"


class PINConfig(DeepCTRConfig):
    """PIN hyperparameters (a micro-network per field pair + DNN)."""
    pin_hidden: int = 40
    pin_out: int = 5


@register_model("ipnn", family="ctr", config=IPNNConfig)
def build_ipnn(encoder: FeatureEncoder, config: IPNNConfig) -> FieldNet:
    """IPNN: MLP over embeddings and their pairwise inner products."""
    return FieldNet(encoder, config, product=lambda n, d: InnerProduct(n))


@register_model("kpnn", family="ctr", config=KPNNConfig)
def build_kpnn(encoder: FeatureEncoder, config: KPNNConfig) -> FieldNet:
    """KPNN: MLP over embeddings and their kernel products."""
    return FieldNet(encoder, config, product=lambda n, d: KernelProduct(n, d, config.kpnn_kernel))


@register_model("pin", family="ctr", config=PINConfig)
def build_pin(encoder: FeatureEncoder, config: PINConfig) -> FieldNet:
    """PIN: MLP over embeddings and per-pair micro-network outputs."""
    return FieldNet(encoder, config, product=lambda n, d: PINMicroNet(n, d, config.pin_hidden, config.pin_out))
