"""Where a SASRec training step's time goes, and what llmrec's two savings buy (issue 16's throughput target):

* the dropout mask drawn by ``uniform_`` (llmrec's ``dropout``) instead of ``bernoulli_`` (``F.dropout``,
  what ``nn.Dropout`` and RecBole use);
* with one target per row (RecBole's prefix batches), the last block computed for the last position only,
  against every position computed and the last one gathered (as RecBole's SASRec does).

    python eval/sequential_step.py [--batch 256 --items 1683 --steps 20]

Random histories of 50 items over MovieLens-100K's item count; forward + backward + Adam. Both sides of each
ratio run in this one process, one thread. Writes eval/results/sequential_step.json."""
from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F

from llmrec.data.views import ItemSpace
from llmrec.models import build_model, resolve_model_config
from llmrec.models.sequential import base, sasrec
from llmrec.models.sequential.base import dropout
from llmrec.results import write_result


def per_second(fn, n: int, units: int) -> float:
    """``units`` per second of ``fn`` over ``n`` calls, after two warm-up calls."""
    for _ in range(2):
        fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return units * n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--items", type=int, default=1683)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default="eval/results/sequential_step.json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(a.batch, 50, 64)
    masks = {"bernoulli (F.dropout)": per_second(lambda: F.dropout(x, 0.5, True), 50, x.numel()),
             "uniform (llmrec dropout)": per_second(lambda: dropout(x, 0.5, True), 50, x.numel())}
    space = ItemSpace(users={"u": 0}, items={str(i): i for i in range(1, a.items)})
    model = build_model(space, resolve_model_config({"name": "sasrec"})).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    items = torch.randint(1, a.items, (a.batch, 50))
    target = torch.randint(1, a.items, (a.batch,))

    def step(last: bool) -> None:
        table = model.item_table()
        h = model.encode(table[items], items, last=last)[:, -1]
        loss = F.cross_entropy(h @ table.T, target)
        opt.zero_grad()
        loss.backward()
        opt.step()

    steps = {"every position, last gathered": per_second(lambda: step(False), a.steps, a.batch),
             "last block at the last position": per_second(lambda: step(True), a.steps, a.batch)}
    # the whole step with torch's dropout everywhere (hidden and attention), every position: RecBole's way
    for module in (base, sasrec):  # the modules' own name for the mask, swapped for torch's and back
        module.dropout = F.dropout
    steps["torch dropout, every position"] = per_second(lambda: step(False), a.steps, a.batch)
    for module in (base, sasrec):
        module.dropout = dropout
    out = {"dropout_elements_per_second": masks,
           "dropout_ratio": masks["uniform (llmrec dropout)"] / masks["bernoulli (F.dropout)"],
           "train_pairs_per_second": steps,
           "last_position_ratio": steps["last block at the last position"] / steps["every position, last gathered"],
           "total_ratio": steps["last block at the last position"] / steps["torch dropout, every position"],
           "batch": a.batch, "items": a.items, "threads": 1}
    write_result(a.out, out)
    for k, v in out.items():
        print(k, v)


if __name__ == "__main__":
    main()
