"""TorchRec path (``model.embedding_table: {kind: torchrec}``): the categorical fields as a TorchRec
``EmbeddingBagCollection`` (one table per field, sum pooling of the field's one id), so a model can be
sharded by ``DistributedModelParallel`` under ``torchrun`` (``shard_model``). TorchRec and
``fbgemm-gpu-cpu`` are optional (``make install`` puts them in): the pair that loads beside torch 2.13.0+cpu is
torchrec 1.8.0 with fbgemm-gpu-cpu 1.8.0 (fbgemm-gpu-cpu 1.9.0 from PyPI asks for ``libtorch_cuda.so``).

Unsharded, the table is an ordinary module: the trainer's dense Adam and whole-table L2 apply to its
weights, and a model gives the plain path's results (tested against ``nn.Embedding`` with the same
initial rows). Sharded, TorchRec's fused kernels own the embedding update (optimizer in backward, set by
``shard_model``'s ``optimizer`` / ``learning_rate`` / ``weight_decay``), DMP keeps the dense part data
parallel, and the trainer optimizes only what is not fused."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from llmrec.errors import BackendError, ConfigError


def torchrec_api() -> SimpleNamespace:
    """TorchRec's classes, imported on first use: importing torchrec takes ~7 s (its distributed stack), which
    every CTR model would otherwise pay. A named error when it is missing or its fbgemm does not load."""
    try:
        from fbgemm_gpu.split_embedding_configs import EmbOptimType
        from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor
        from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
        from torchrec.distributed.model_parallel import DistributedModelParallel
        from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
    except (ImportError, OSError) as e:  # OSError: an fbgemm library that does not load beside this torch
        raise BackendError(f"embedding_table.kind: 'torchrec' needs torchrec 1.8.0 and fbgemm-gpu-cpu 1.8.0 "
                           f"(`make install` installs the pair): {e}") from None
    return SimpleNamespace(EmbOptimType=EmbOptimType, EmbeddingBagCollection=EmbeddingBagCollection,
                           EmbeddingBagConfig=EmbeddingBagConfig, KeyedJaggedTensor=KeyedJaggedTensor,
                           EmbeddingBagCollectionSharder=EmbeddingBagCollectionSharder,
                           DistributedModelParallel=DistributedModelParallel,
                           EmbeddingShardingPlanner=EmbeddingShardingPlanner,
                           ParameterConstraints=ParameterConstraints, Topology=Topology)


class TorchRecTable(nn.Module):
    """One EmbeddingBagCollection table per field; ``forward(ids [B, F])`` takes rows of llmrec's shared
    table (field offsets included) and returns ``[B, F, dim]``."""

    def __init__(self, sizes: list[int], dim: int, init_std: float = 1e-4, device: str | None = None) -> None:
        super().__init__()
        tr = self._tr = torchrec_api()
        if not sizes:
            raise ConfigError("embedding_table: the torchrec table needs at least one categorical field")
        self.keys = [f"f{j}" for j in range(len(sizes))]
        self.dim = dim
        self.register_buffer("offsets", torch.tensor([sum(sizes[:j]) for j in range(len(sizes))], dtype=torch.long),
                             persistent=False)
        tables = [tr.EmbeddingBagConfig(name=f"t{j}", embedding_dim=dim, num_embeddings=n, feature_names=[k])
                  for j, (k, n) in enumerate(zip(self.keys, sizes))]
        self.ebc = tr.EmbeddingBagCollection(tables=tables, device=torch.device(device or "cpu"))
        if device != "meta":
            for p in self.ebc.parameters():
                nn.init.normal_(p, std=init_std)

    def weights(self) -> list[torch.Tensor]:
        """Each field's table; none once sharded (the fused kernels own them)."""
        if not hasattr(self.ebc, "embedding_bags"):
            return []
        return [self.ebc.embedding_bags[f"t{j}"].weight for j in range(len(self.keys))]

    def load_rows(self, table: torch.Tensor) -> None:
        """Set every field's rows from one shared ``[rows, dim]`` table (to start from a plain model's rows)."""
        with torch.no_grad():
            for j, w in enumerate(self.weights()):
                w.copy_(table[int(self.offsets[j]): int(self.offsets[j]) + w.shape[0]])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        b, f = ids.shape
        local = (ids - self.offsets[:f]).t().reshape(-1)  # field-major, as a KeyedJaggedTensor wants
        kjt = self._tr.KeyedJaggedTensor.from_lengths_sync(keys=self.keys[:f], values=local,
                                                  lengths=torch.ones(b * f, dtype=torch.int32, device=ids.device))
        return self.ebc(kjt).values().view(b, f, self.dim)


def is_sharded(model: nn.Module) -> bool:
    """Whether ``model`` is wrapped by TorchRec's DistributedModelParallel (without importing torchrec)."""
    return type(model).__name__ == "DistributedModelParallel" and hasattr(model, "plan")


def shard_model(model: nn.Module, optimizer: str = "adam", learning_rate: float = 1e-3, weight_decay: float = 0.0,
                sharding: str = "table_wise", device: str = "cpu") -> Any:
    """The model under TorchRec's ``DistributedModelParallel`` (inside an initialized process group): every
    ``EmbeddingBagCollection`` sharded ``sharding`` (table_wise, row_wise, data_parallel ...) across the
    ranks, its update fused into backward with ``optimizer`` (adam, adagrad, sgd: TorchRec's
    ``EmbOptimType``; Adam only on GPU: FBGEMM's CPU kernels refuse it), the rest data parallel."""
    tr = torchrec_api()
    if not (dist.is_available() and dist.is_initialized()):
        raise ConfigError("shard_model: needs an initialized process group (run under torchrun)")
    opt = {"adam": tr.EmbOptimType.ADAM, "adagrad": tr.EmbOptimType.EXACT_ADAGRAD,
           "rowwise_adagrad": tr.EmbOptimType.EXACT_ROWWISE_ADAGRAD, "sgd": tr.EmbOptimType.EXACT_SGD}
    if optimizer not in opt:
        raise ConfigError(f"optimizer: {optimizer!r} is not one of {sorted(opt)}")
    if optimizer == "adam" and device == "cpu":  # FBGEMM's CPU kernels: "Optimizer adam is not supported"
        raise ConfigError("optimizer: FBGEMM's fused Adam runs on GPU only; on CPU use adagrad, "
                          "rowwise_adagrad or sgd")
    configs = [c for m in model.modules() if isinstance(m, tr.EmbeddingBagCollection) for c in m.embedding_bag_configs()]
    odd = [c.name for c in configs if c.embedding_dim % 4]
    if odd:
        raise ConfigError(f"embedding_dim: FBGEMM's sharded kernels need a multiple of 4 (tables {odd} have "
                          f"{configs[0].embedding_dim})")
    names = [c.name for c in configs]
    sharder = tr.EmbeddingBagCollectionSharder(fused_params={"optimizer": opt[optimizer], "learning_rate": learning_rate,
                                                          "weight_decay": weight_decay})
    planner = tr.EmbeddingShardingPlanner(
        topology=tr.Topology(world_size=dist.get_world_size(), compute_device=device),
        constraints={n: tr.ParameterConstraints(sharding_types=[sharding]) for n in names})
    plan = planner.collective_plan(model, [sharder], dist.GroupMember.WORLD)
    return tr.DistributedModelParallel(model, device=torch.device(device), plan=plan, sharders=[sharder])
