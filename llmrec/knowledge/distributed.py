"""The extraction job on Ray: Ray Data ``map_batches`` with one LLM per worker (an actor pool).

The driver plans (validation, cache check, foreign-model check) exactly as ``extract`` does, streams
pending rows through the workers, and is the only writer of the shard, so the result (and resuming
after a kill) is the same as a local run. On a cluster, pass ``address`` (or set RAY_ADDRESS)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from llmrec.jobs import (ExtractionReport, KnowledgeRequest, ShardWriter, generate_rows,
                                      plan_extraction)
from llmrec.llm.base import GenerationParams
from llmrec.llm.registry import LLMConfig, make_llm, model_id_for


class _Worker:
    """Ray Data callable class: builds its LLM once per worker, then generates batch after batch."""

    def __init__(self, llm_config: dict, params: dict, max_retries: int, min_words: int) -> None:
        self.llm = make_llm(LLMConfig.model_validate(llm_config))
        self.params = GenerationParams.model_validate(params)
        self.max_retries, self.min_words = max_retries, min_words

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        chunk = [(str(i), json.loads(m), str(h)) for i, m, h in zip(batch["id"], batch["messages"], batch["prompt_hash"])]
        rows = generate_rows(self.llm, chunk, self.params, self.max_retries, self.min_words)
        return {"row": np.array([json.dumps(r) for r in rows], dtype=object)}


def extract_ray(
    llm_config: LLMConfig,
    kind: str,
    prompt_name: str,
    requests: Sequence[KnowledgeRequest],
    out_dir: str | Path,
    params: GenerationParams | None = None,
    workers: int = 2,
    chunk_size: int = 16,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    address: str | None = None,
    progress: bool = True,
    max_retries: int = 2,
    min_words: int = 3,
    retry_failed: bool = False,
) -> ExtractionReport:
    """Knowledge extraction on Ray Data workers (one model per worker), writing the same resumable shards."""
    try:
        import ray
    except ImportError:
        raise ImportError("--ray needs Ray Data: pip install 'llmrec[ray]'") from None
    params = params or GenerationParams(max_new_tokens=64)
    model_id = model_id_for(llm_config)
    plan = plan_extraction(model_id, kind, prompt_name, requests, out_dir, retry_failed)
    writer = ShardWriter(plan, model_id, progress)
    try:
        if plan.pending:
            if not ray.is_initialized():
                ray.init(address=address, num_cpus=None if address else max(workers, 1) * max(cpus_per_worker, 1),
                         include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False
            items = [{"id": i, "messages": json.dumps(m), "prompt_hash": h} for i, m, h in plan.pending]
            ds = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // chunk_size)))
            out = ds.map_batches(
                _Worker, batch_size=chunk_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=cpus_per_worker, num_gpus=gpus_per_worker,
                fn_constructor_kwargs={"llm_config": llm_config.model_dump(), "params": params.model_dump(),
                                       "max_retries": max_retries, "min_words": min_words},
            )
            for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
                writer.write([json.loads(r) for r in batch["row"]])
    finally:
        report = writer.close()
    return report
