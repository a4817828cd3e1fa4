"""`llmrec serve` head-of-line blocking: latency of a short request alone vs while a long one is generating,
with the token-level continuous scheduler and with the arrival-batch scheduler, in one process.

    python eval/bench_serve.py [--short-tokens 4 --long-tokens 200 --repeats 5]

Writes eval/results/bench_serve.json (want: continuous ratio <= 2)."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llmrec.llm.server import LLMServer  # noqa: E402
from llmrec.llm.transformers import TransformersLLM  # noqa: E402
from llmrec.results import write_result  # noqa: E402


def post(url: str, body: dict) -> float:
    t = time.perf_counter()
    req = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        json.loads(r.read())
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--short-tokens", type=int, default=4)
    ap.add_argument("--long-tokens", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="eval/results/bench_serve.json")
    a = ap.parse_args()
    llm = TransformersLLM()
    short = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": a.short_tokens}
    long_ = {"messages": [{"role": "user", "content": "Count from 1 to 500, separated by commas."}],
             "max_tokens": a.long_tokens}
    out = {}
    for scheduler in ("continuous", "batch"):
        srv = LLMServer(llm, port=0, scheduler=scheduler, max_tokens_limit=max(a.long_tokens, 128)).start()
        post(srv.url, short)  # warm up
        solo = [post(srv.url, short) for _ in range(a.repeats)]
        behind = []
        for _ in range(a.repeats):
            t = threading.Thread(target=post, args=(srv.url, long_))
            t.start()
            time.sleep(0.5)  # the long request is generating
            behind.append(post(srv.url, short))
            t.join()
        srv.stop()
        out[scheduler] = {"short_solo_s_median": statistics.median(solo),
                          "short_behind_long_s_median": statistics.median(behind),
                          "ratio": statistics.median(behind) / statistics.median(solo)}
        print(scheduler, out[scheduler], flush=True)
    print("wrote", write_result(Path(a.out), {"llm": llm.model_id, "results": out}, config=vars(a)))


if __name__ == "__main__":
    main()
