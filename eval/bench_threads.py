"""Thread oversubscription: batched generation (the demo's knowledge extraction step) while 0, 1 or 2 other
CPU-bound processes run, with torch left at the machine's thread count vs set by LLMREC_THREADS.

    python eval/bench_threads.py [--prompts 16 --max-new-tokens 32 --others 0 1 2]

Each measurement is a fresh subprocess (threads are fixed when torch starts); the busy processes are pure
Python loops (one core each). Writes eval/results/bench_threads.json and a plot. Ratios are within this run."""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llmrec.results import save_bar_chart, write_result  # noqa: E402
from llmrec.threads import available_cores  # noqa: E402

CHILD = """
import json, sys, time
from llmrec.threads import configure_threads
n = configure_threads()
import torch
from llmrec.llm import GenerationParams, LLMConfig, make_llm
llm = make_llm(LLMConfig(dtype="bfloat16"))
prompts = [f"In two sentences, describe movie number {{i}} for a friend." for i in range({prompts})]
p = GenerationParams(max_new_tokens={tokens})
llm.generate(prompts[:2], GenerationParams(max_new_tokens=4))  # warm-up
t = time.perf_counter()
gens = llm.generate(prompts, p)
dt = time.perf_counter() - t
print(json.dumps({{"threads": torch.get_num_threads(), "tokens_per_second": sum(g.completion_tokens for g in gens) / dt}}))
"""


def busy(stop) -> None:
    x = 0
    while not stop.is_set():
        x = (x * 1103515245 + 12345) % 2**31


def measure(threads: str | None, others: int, prompts: int, tokens: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("LLMREC_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads:
        env["LLMREC_THREADS"] = threads
    stop = mp.Event()
    procs = [mp.Process(target=busy, args=(stop,), daemon=True) for _ in range(others)]
    for p in procs:
        p.start()
    try:
        out = subprocess.run([sys.executable, "-c", CHILD.format(prompts=prompts, tokens=tokens)], env=env,
                             capture_output=True, text=True, check=True)
    finally:
        stop.set()
        for p in procs:
            p.join(5)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--others", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="eval/results/bench_threads.json")
    a = ap.parse_args()
    cores = available_cores()
    rows = []
    for others in a.others:
        for label, threads in (("all cores (default)", None), ("LLMREC_THREADS=1", "1")):
            r = measure(threads, others, a.prompts, a.max_new_tokens)
            rows.append({"other_processes": others, "setting": label, **r})
            print(json.dumps(rows[-1]), flush=True)
    path = write_result(Path(a.out), {"cores": cores, "prompts": a.prompts, "max_new_tokens": a.max_new_tokens,
                                      "results": rows}, config=vars(a))
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    save_bar_chart(path.with_suffix(".png"), [str(o) for o in a.others],
                   {s: [next(r["tokens_per_second"] for r in rows if r["setting"] == s and r["other_processes"] == o)
                        for o in a.others] for s in settings},
                   ylabel="generated tokens / s (batch of 16)", xlabel=f"other CPU-bound processes ({cores} cores)",
                   size=(6, 3.6))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
