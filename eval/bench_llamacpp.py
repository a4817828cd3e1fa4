"""llama.cpp backend vs transformers backend on the bundled SmolLM2-135M: single-stream and batch-16 tokens/s.

    python eval/bench_llamacpp.py [--max-new-tokens 64 --batch 16]

The llama.cpp backend runs the GGUF as shipped (quantized, no dequantization step); transformers runs the
dequantized weights (bf16 and fp32) with continuous batching. Greedy decoding, the same prompts, the same
thread count (LLMREC_THREADS or the available cores), all in this one process. Writes
eval/results/bench_llamacpp.json and a plot."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llmrec.llm import GenerationParams, LLMConfig, make_llm  # noqa: E402
from llmrec.results import save_bar_chart, write_result  # noqa: E402
from llmrec.threads import configure_threads  # noqa: E402

PROMPTS = [f"Write two sentences about {t}." for t in (
    "a rainy afternoon", "a mountain village", "an old library", "a jazz concert", "a spicy curry", "a chess game",
    "a night train", "a desert sunrise", "a robot gardener", "a lighthouse", "a street market", "a snowy forest",
    "a science fair", "a pirate ship", "a quiet cafe", "a football final")]


def tokens_per_second(llm, prompts: list[str], params: GenerationParams) -> tuple[float, int]:
    llm.generate(prompts[:1], GenerationParams(max_new_tokens=4))  # warm-up
    t = time.perf_counter()
    gens = llm.generate(prompts, params)
    dt = time.perf_counter() - t
    n = sum(g.completion_tokens for g in gens)
    return n / dt, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", default="eval/results/bench_llamacpp.json")
    a = ap.parse_args()
    threads = configure_threads()
    params = GenerationParams(max_new_tokens=a.max_new_tokens)
    backends = {"llama.cpp (GGUF as shipped)": LLMConfig(backend="llamacpp"),
                "transformers bf16": LLMConfig(dtype="bfloat16", batch_size=a.batch),
                "transformers fp32": LLMConfig(dtype="float32", batch_size=a.batch)}
    rows = {}
    for name, cfg in backends.items():
        t = time.perf_counter()
        llm = make_llm(cfg)
        load = time.perf_counter() - t
        single, n1 = tokens_per_second(llm, PROMPTS[:1], params)
        batch, nb = tokens_per_second(llm, PROMPTS[:a.batch], params)
        rows[name] = {"load_seconds": load, "single_stream_tokens_per_second": single,
                      f"batch{a.batch}_tokens_per_second": batch, "tokens_single": n1, "tokens_batch": nb,
                      "model_id": llm.model_id}
        print(name, {k: round(v, 1) if isinstance(v, float) else v for k, v in rows[name].items()}, flush=True)
        del llm
    base = rows["transformers bf16"]
    ratios = {name: {"single_vs_transformers_bf16": r["single_stream_tokens_per_second"] /
                     base["single_stream_tokens_per_second"],
                     f"batch{a.batch}_vs_transformers_bf16": r[f"batch{a.batch}_tokens_per_second"] /
                     base[f"batch{a.batch}_tokens_per_second"]} for name, r in rows.items()}
    path = write_result(Path(a.out), {"threads": threads, "max_new_tokens": a.max_new_tokens, "results": rows,
                                      "ratios": ratios}, config=vars(a))
    names = list(rows)
    save_bar_chart(path.with_suffix(".png"), [n.replace(" ", "\n", 1) for n in names],
                   {"one prompt": [rows[n]["single_stream_tokens_per_second"] for n in names],
                    f"{a.batch} prompts together": [rows[n][f"batch{a.batch}_tokens_per_second"] for n in names]},
                   ylabel="generated tokens / s",
                   title=f"SmolLM2-135M backends ({threads} threads, greedy, {a.max_new_tokens} new tokens)")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
