"""What llmrec's sparse matmul buys a LightGCN step: a two-layer propagation (forward + backward) over a
graph's symmetric-normalized adjacency with torch's own autograd through ``torch.sparse.mm`` (CSR and COO,
COO being what RecBole's LightGCN uses) against ``llmrec.models.graph.base.spmm`` (the backward multiplies by
a stored transpose).

    python eval/graph_spmm.py [--data movielens100k | synthetic] [--width 64 --layers 2 --steps 50]

All variants run in this one process, one thread, on the same graph. Writes eval/results/graph_spmm.json."""
from __future__ import annotations

import argparse
import time

import torch

from llmrec.data.registry import DataConfig, load_data
from llmrec.data.views import GraphViewConfig, interaction_view
from llmrec.models.graph.base import spmm
from llmrec.results import write_result


def seconds_per_step(step, n: int) -> float:
    """Mean seconds of ``step`` over ``n`` calls, after three warm-up calls."""
    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="movielens100k", choices=["movielens100k", "synthetic"])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--out", default="eval/results/graph_spmm.json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    space, *_ = interaction_view(load_data(DataConfig(source=a.data)), config=GraphViewConfig(interactions="all"))
    csr = space.graph.adjacency("sym")
    coo = csr.to_sparse_coo().coalesce()
    x0 = torch.randn(csr.shape[0], a.width, requires_grad=True)

    def step(mul):
        def run():
            x, out = x0, [x0]
            for _ in range(a.layers):
                x = mul(x)
                out.append(x)
            torch.stack(out).mean(0).sum().backward()
        return run

    times = {"torch_coo_autograd": seconds_per_step(step(lambda x: torch.sparse.mm(coo, x)), a.steps),
             "torch_csr_autograd": seconds_per_step(step(lambda x: torch.sparse.mm(csr, x)), a.steps),
             "llmrec_spmm": seconds_per_step(step(lambda x: spmm(csr, x)), a.steps)}
    ratios = {k: v / times["llmrec_spmm"] for k, v in times.items()}
    print({k: f"{v * 1000:.2f} ms ({ratios[k]:.1f}x llmrec)" for k, v in times.items()})
    write_result(a.out, {"data": a.data, "nodes": csr.shape[0], "stored_entries": int(csr.values().numel()),
                         "width": a.width, "layers": a.layers, "seconds_per_step": times,
                         "ratio_to_llmrec": ratios}, config=vars(a))


if __name__ == "__main__":
    main()
