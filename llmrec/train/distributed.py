"""DDP through ``torchrun``: ``torchrun --nproc_per_node 2 -m llmrec.cli train --config cfg.yaml``.

``init_from_env`` joins the process group that torchrun describes in the environment (gloo on CPU,
NCCL on GPU); the ``Trainer`` then wraps the model in DDP and gives each rank its slice of every
global batch."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_from_env(device: str = "cpu") -> bool:
    """Initialize the default process group when launched by torchrun; returns True if distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if device.startswith("cuda") and torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def shutdown() -> None:
    """Tear down the torch.distributed process group if one was started."""
    if dist.is_initialized():
        dist.destroy_process_group()
