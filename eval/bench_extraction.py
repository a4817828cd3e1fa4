"""Knowledge extraction throughput on the default LLM: batch 16 vs one prompt at a time, fp32 and bf16,
and a cached rerun (which must generate nothing).

    python eval/bench_extraction.py [--prompts 48 --singles 16]

Item prompts of the synthetic world's training split. All ratios come from runs in this one process.
Writes eval/results/bench_extraction.json."""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llmrec.data.registry import DataConfig, load_data  # noqa: E402
from llmrec.jobs import extract  # noqa: E402
from llmrec.knowledge.requests import PROMPTS, build_requests  # noqa: E402
from llmrec.llm import GenerationParams  # noqa: E402
from llmrec.llm.transformers import TransformersConfig, TransformersLLM  # noqa: E402
from llmrec.results import write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=48)
    ap.add_argument("--singles", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--out", default="eval/results/bench_extraction.json")
    a = ap.parse_args()
    data = load_data(DataConfig(source="synthetic"))
    reqs = build_requests(data, data.chronological_split()[0], "item")[: a.prompts]
    params = GenerationParams(max_new_tokens=a.max_new_tokens)
    out = {}
    for dtype in ("float32", "bfloat16"):
        tmp = Path(tempfile.mkdtemp(prefix="llmrec-extract-bench-"))
        try:
            batched = TransformersLLM(TransformersConfig(batch_size=16, dtype=dtype))
            batched.generate(["warm up"], GenerationParams(max_new_tokens=4))
            rb = extract(batched, "item", PROMPTS["item"], reqs, tmp / "b", params, chunk_size=len(reqs), progress=False)
            single = TransformersLLM(TransformersConfig(batch_size=1, dtype=dtype))
            r1 = extract(single, "item", PROMPTS["item"], reqs[: a.singles], tmp / "s", params, chunk_size=1,
                         progress=False)
            t = time.perf_counter()
            again = extract(batched, "item", PROMPTS["item"], reqs, tmp / "b", params, progress=False)
            rerun_s = time.perf_counter() - t
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        out[dtype] = {"batched_tokens_per_s": rb.tokens_per_second, "one_at_a_time_tokens_per_s": r1.tokens_per_second,
                      "speedup": rb.tokens_per_second / r1.tokens_per_second,
                      "batched_rows_per_s": rb.rows_per_second, "one_at_a_time_rows_per_s": r1.rows_per_second,
                      "cached_rerun": {"generated": again.generated, "cached": again.cached, "seconds": rerun_s}}
        print(dtype, out[dtype], flush=True)
    print("wrote", write_result(Path(a.out), {"data": data.name, "prompts": len(reqs), "throughput": out},
                                config=vars(a)))


if __name__ == "__main__":
    main()
