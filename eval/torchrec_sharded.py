"""DeepFM through TorchRec, sharded table-wise across the ranks of a torchrun job (CPU + gloo here, GPU + nccl
where there is one), trained by llmrec's trainer; rank 0 writes the result JSON.

    torchrun --nproc_per_node 2 eval/torchrec_sharded.py SHARDS_DIR OUT.json [--backend gloo]

SHARDS_DIR: a shard set (``llmrec data generate criteo --out DIR``); its days: all but the last train, the
last tests. Also trains the same model unsharded in one process (rank 0, before sharding) for the AUC
comparison."""
from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist

from llmrec.ctr.ids import IdEncoder, IdEncoderConfig, StreamData
from llmrec.ctr.torchrec_table import shard_model
from llmrec.data.shards import open_shards
from llmrec.models import build_model
from llmrec.results import write_result
from llmrec.train import Trainer, TrainerConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("shards")
    ap.add_argument("out")
    ap.add_argument("--backend", default="gloo")
    ap.add_argument("--table-rows", type=int, default=50_000)
    a = ap.parse_args()
    dist.init_process_group(a.backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if a.backend == "nccl" else "cpu"
    if device != "cpu":
        torch.cuda.set_device(device)
    torch.set_num_threads(1)
    s = open_shards(a.shards)
    train, test = s.select(s.days[:-1]), s.select(s.days[-1:])
    enc = IdEncoder(IdEncoderConfig(mode="hash", table_rows=a.table_rows), s.categorical, s.numerical).fit(
        train, progress=False)
    spec = {"name": "deepfm", "hidden_units": [64, 64], "numeric_embedding": "bucket", "embedding_dim": 8,
            "embedding_table": {"kind": "torchrec"}}
    # dense part trained by the trainer's Adam; tables by TorchRec's fused kernel (Adam on GPU; FBGEMM's CPU
    # kernels refuse Adam, so row-wise Adagrad there), no embedding L2 term
    tc = TrainerConfig(batch_size=1024, epochs=1, embedding_l2=0.0, progress=False, device=device)
    torch.manual_seed(0)
    model = build_model(enc, spec)
    t0 = time.perf_counter()
    fused = ("adam", tc.learning_rate) if device != "cpu" else ("rowwise_adagrad", 0.05)
    dmp = shard_model(model, optimizer=fused[0], learning_rate=fused[1], device=device)
    trainer = Trainer(tc)
    fit = trainer.fit(dmp, StreamData(train, enc), StreamData(test, enc, shuffle=False))
    res = trainer.evaluate(dmp, StreamData(test, enc, shuffle=False))
    plan = {str(k): {t: {"sharding": p.sharding_type, "ranks": p.ranks} for t, p in v.items()}
            for k, v in dmp.plan.plan.items()}
    out = {"rank": rank, "world": world, "auc": res["auc"], "fused_optimizer": fused, "seconds": time.perf_counter() - t0,
           "samples_per_second": fit.samples_per_second}
    gathered = [None] * world
    dist.all_gather_object(gathered, out)
    if rank == 0:
        write_result(a.out, {"ranks": gathered, "plan": plan, "backend": a.backend,
                             "torch": torch.__version__}, None, [0])
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
