"""Batched vs one-at-a-time generation on the default LLM, and first vs cached model load.

    python eval/bench_llm.py [--prompts 32 --batch-size 16 --max-new-tokens 48]

Writes eval/results/bench_llm.json. All ratios come from runs in this one process."""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from llmrec.results import write_result  # noqa: E402
from llmrec.llm import GenerationParams  # noqa: E402
from llmrec.llm.transformers import TransformersConfig, TransformersLLM  # noqa: E402

SUBJECTS = ["a funny movie", "a sad song", "a scary book", "a romantic dinner", "an epic board game",
            "a short city trip", "a long mountain hike", "French cheese", "a jazz album", "a cooking class"]
AUDIENCE = ["a friend", "a child", "a film critic", "a busy parent", "a student"]


def make_prompts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"In one or two sentences, tell {rng.choice(AUDIENCE)} why they might enjoy {SUBJECTS[i % len(SUBJECTS)]}"
            f" (request {i})." for i in range(n)]


def timed_load(home: str) -> float:
    code = ("import time,os;t=time.perf_counter();"
            "from llmrec.llm.transformers import TransformersLLM;TransformersLLM();"
            "print(time.perf_counter()-t)")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, LLMREC_HOME=home),
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def naive_generate(llm: TransformersLLM, prompts: list[str], params: GenerationParams, bs: int) -> int:
    """Baseline: plain `model.generate` on left-padded static batches (what most code does)."""
    tok, model = llm.tokenizer, llm.model
    tok.padding_side = "left"
    texts = [llm.render(p) for p in prompts]
    n = 0
    for i in range(0, len(texts), bs):
        enc = tok(texts[i : i + bs], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=params.max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id, temperature=None, top_p=None, top_k=None)
        new = out[:, enc["input_ids"].shape[1]:]
        for row in new.tolist():
            n += next((j for j, t in enumerate(row) if t in llm._eos_ids), len(row))
    return n


def measure(llm: TransformersLLM, prompts: list[str], params: GenerationParams, singles: int) -> dict:
    llm.generate(prompts[:2], params)  # warm-up
    t = time.perf_counter()
    one = [llm.generate([p], params)[0] for p in prompts[:singles]]
    t_one = time.perf_counter() - t
    t = time.perf_counter()
    batched = llm.generate(prompts, params)
    t_batch = time.perf_counter() - t
    t = time.perf_counter()
    naive_tokens = naive_generate(llm, prompts, params, llm.config.batch_size)
    t_naive = time.perf_counter() - t
    one_tps = sum(g.completion_tokens for g in one) / t_one
    batch_tps = sum(g.completion_tokens for g in batched) / t_batch
    naive_tps = naive_tokens / t_naive
    same = sum(a.text == b.text for a, b in zip(one, batched[:singles]))
    return {
        "one_at_a_time_tokens_per_s": one_tps,
        "batched_tokens_per_s": batch_tps,
        "naive_static_batch_tokens_per_s": naive_tps,
        "speedup_batched_vs_one": batch_tps / one_tps,
        "speedup_naive_vs_one": naive_tps / one_tps,
        "greedy_outputs_identical_to_one_at_a_time": f"{same}/{singles}",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=48)
    ap.add_argument("--singles", type=int, default=16, help="prompts timed one at a time")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--out", default="eval/results/bench_llm.json")
    a = ap.parse_args()

    home = tempfile.mkdtemp(prefix="llmrec-bench-home-")
    try:
        first = timed_load(home)
        cached = timed_load(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)

    prompts = make_prompts(a.prompts)
    params = GenerationParams(max_new_tokens=a.max_new_tokens)
    results = {}
    for dtype in ("float32", "bfloat16"):
        llm = TransformersLLM(TransformersConfig(batch_size=a.batch_size, dtype=dtype))
        results[dtype] = measure(llm, prompts, params, a.singles)
        print(dtype, {k: round(v, 2) if isinstance(v, float) else v for k, v in results[dtype].items()}, flush=True)
        del llm
    payload = {
        "model": "SmolLM2-135M-Instruct (bundled GGUF, dequantized)",
        "settings": vars(a),
        "load_seconds": {"first_load_with_gguf_conversion": first, "cached_load": cached,
                         "ratio": first / cached},
        "generation": results,
        "target": "batched >= 8x one-at-a-time tokens/s at batch 16",
    }
    print("load", payload["load_seconds"])
    print("wrote", write_result(Path(a.out), payload, config=vars(a)))


if __name__ == "__main__":
    main()
