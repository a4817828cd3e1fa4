"""The offline knowledge job (``llmrec extract`` and the Python API): data set -> prompts -> LLM
(local batches or Ray workers) -> JSONL shards -> vectors, all cached and resumable.

    from llmrec.knowledge import KnowledgeJobConfig, run_extraction, knowledge_tables
    report = run_extraction(KnowledgeJobConfig(kinds=["item", "user"]))
    tables = knowledge_tables(report["out_dir"], ["item", "user"])  # kind -> id -> vector
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

import numpy as np

from llmrec.config import StrictConfig, llmrec_home, validation_message
from llmrec.configfiles import find_config, read_config_file
from llmrec.errors import ConfigError
from llmrec.ctr.features import FeatureSpec
from llmrec.data.registry import DataConfig, load_data, split_rows
from llmrec.data.schema import RecData
from llmrec.embed import Embedder, LLMHiddenEncoder, default_embedder
from llmrec.knowledge.distributed import extract_ray
from llmrec.knowledge.encode import encode_kind, encoder_slug, load_vectors
from llmrec.jobs import extract
from llmrec.knowledge.requests import PROMPTS, KnowledgeKind, build_requests, key_column
from llmrec.llm.base import LLM, GenerationParams
from llmrec.llm.registry import LLMConfig, make_llm, model_id_for
from llmrec.prompts import load_prompt


class KnowledgeJobConfig(StrictConfig):
    """An extraction job: data, kinds, LLM, output folder, generation settings, Ray and the encoder."""
    data: DataConfig = DataConfig()
    kinds: list[KnowledgeKind] = ["item", "user"]
    llm: LLMConfig = LLMConfig(dtype="bfloat16")
    out_dir: str | None = None  # default: LLMREC_HOME/knowledge/<data set>/<model id>
    max_new_tokens: int = 48
    history_items: int = 8
    chunk_size: int = 64
    max_retries: int = 2  # extra attempts (sampled) for empty or malformed generations
    min_words: int = 3
    retry_failed: bool = False  # re-attempt rows recorded as failed by an earlier run
    ray: bool = False
    ray_workers: int = 2
    ray_address: str | None = None
    encoder: Literal["minilm", "llm", "none"] = "minilm"  # llm: mean-pooled last hidden states
    encode_inputs: list[KnowledgeKind] = ["user", "user_scenario"]  # kinds encoded as prompt inputs + answer (KAR)
    progress: bool = True
    limit: int | None = Field(None, ge=1)  # only the first N prompts of each kind (a slice; cached rows stay)
    # your own prompt per kind: a bundled template's name or a .txt file (relative to the config with ./);
    # it may use any variable the kind's requests carry (items: title, category, description and every text
    # column of your items file; users: profile, history and your users file's text columns)
    prompts: dict[str, str] = {}


def load_extraction_config(path: str | Path, overrides: list[str] | None = None) -> KnowledgeJobConfig:
    """An extraction job from YAML (``llmrec extract --config``), ``--set`` overrides applied; a prompt file
    given as ``./x.txt`` is relative to the YAML."""
    p = find_config(path)
    try:
        return KnowledgeJobConfig.model_validate(read_config_file(p, overrides))
    except ValidationError as e:
        raise ConfigError(f"{p}: {validation_message(e, '')}") from None


def default_out_dir(data: RecData, model_id: str) -> Path:
    """Default shard folder: ``LLMREC_HOME/knowledge/<data set>/<model id>``."""
    return llmrec_home() / "knowledge" / data.name / encoder_slug(model_id)


def run_extraction(config: KnowledgeJobConfig, llm: LLM | None = None, embedder: Embedder | None = None,
                   data: RecData | None = None) -> dict:
    """Extract every kind in ``config.kinds`` (cached rows cost nothing) and encode the shards."""
    c = config
    t0 = time.perf_counter()
    data = data or load_data(c.data)
    train_rows = split_rows(data, c.data)[0]
    model_id = llm.model_id if llm is not None else model_id_for(c.llm)
    out = Path(c.out_dir) if c.out_dir else default_out_dir(data, model_id)
    params = GenerationParams(max_new_tokens=c.max_new_tokens)
    reports, inputs = [], {}
    unknown = sorted(set(c.prompts) - set(c.kinds))
    if unknown:
        raise ConfigError(f"prompts: {unknown} are not among the kinds extracted ({c.kinds})")
    for kind in c.kinds:
        reqs = build_requests(data, train_rows, kind, c.history_items)[:c.limit]
        template = c.prompts.get(kind, PROMPTS[kind])
        if reqs:  # checked before any generation: a template variable no request carries is a config error
            missing = sorted(load_prompt(template).variables - set(reqs[0].variables))
            if missing:
                raise ConfigError(f"prompts.{kind}: {template} uses {missing}, which {kind} requests do not carry "
                                  f"(they have {sorted(reqs[0].variables)})")
        if kind in c.encode_inputs:
            inputs[kind] = {r.id: "\n".join(str(v) for v in r.variables.values()) for r in reqs}
        if c.ray and llm is None:
            rep = extract_ray(c.llm, kind, template, reqs, out, params, workers=c.ray_workers,
                              chunk_size=min(c.chunk_size, c.llm.batch_size), address=c.ray_address,
                              progress=c.progress, max_retries=c.max_retries, min_words=c.min_words,
                              retry_failed=c.retry_failed)
        else:
            if llm is None:
                llm = make_llm(c.llm)
            rep = extract(llm, kind, template, reqs, out, params, chunk_size=c.chunk_size, progress=c.progress,
                          max_retries=c.max_retries, min_words=c.min_words, retry_failed=c.retry_failed)
        reports.append(rep)
    vectors = {}
    if c.encoder != "none":
        if embedder is None:
            if c.encoder == "llm":
                if llm is None:
                    llm = make_llm(c.llm)
                embedder = LLMHiddenEncoder(llm)
            else:
                embedder = default_embedder(cache_path=str(llmrec_home() / "embeddings.sqlite"))
        for kind in c.kinds:
            _, path = encode_kind(out, kind, embedder, inputs.get(kind))
            vectors[kind] = str(path)
    return {
        "data": data.name, "model_id": model_id, "out_dir": str(out),
        "encoder": embedder.model_id if embedder is not None else None, "vectors": vectors,
        "extraction": [r.__dict__ | {"tokens_per_second": r.tokens_per_second, "rows_per_second": r.rows_per_second}
                       for r in reports],
        "seconds": time.perf_counter() - t0,
    }


def knowledge_tables(out_dir: str | Path, kinds: list[str], encoder: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """kind -> id -> vector, from ``<kind>.<encoder>.npz`` next to the shards. ``encoder`` picks among several
    vector files by a substring of the encoder id (e.g. "MiniLM" or "hidden")."""
    out = {}
    for kind in kinds:
        files = sorted(Path(out_dir).glob(f"{kind}.*.npz"))
        files = [f for f in files if not f.name.endswith(".tmp.npz") and (encoder is None or encoder_slug(encoder) in f.name)]
        if not files:
            raise FileNotFoundError(f"knowledge.kinds: no vectors for {kind!r} in {out_dir}"
                                    + (f" matching encoder {encoder!r}" if encoder else "") + "; run `llmrec extract`")
        if len(files) > 1:
            raise ValueError(f"knowledge.encoder: several vector files for {kind!r} ({[f.name for f in files]}); "
                             "name the encoder")
        out[kind] = load_vectors(files[0])[0]
    return out


def knowledge_feature_name(kind: str) -> str:
    """The feature name of a knowledge kind (``item`` -> ``item_knowledge``)."""
    return f"{kind}_knowledge"


def knowledge_specs(data: RecData, tables: dict[str, dict[str, np.ndarray]]) -> list[FeatureSpec]:
    """Dense ``FeatureSpec``s (one per kind) keyed by the column each kind describes."""
    return [FeatureSpec(name=knowledge_feature_name(k), type="dense", key=key_column(data, k),
                        dim=len(next(iter(t.values())))) for k, t in tables.items()]
