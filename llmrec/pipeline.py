"""The quickstart job: synthetic world -> LLM knowledge (cached) -> embeddings -> DeepFM with and
without knowledge features -> metrics side by side, written as JSON."""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from llmrec.config import StrictConfig, llmrec_home
from llmrec.ctr import FeatureEncoder, FeatureSpec, ModelConfig, Trainer, TrainerConfig, build_model
from llmrec.data.schema import RecData
from llmrec.data.synthetic import SyntheticConfig, generate_world
from llmrec.embed import Embedder, default_embedder
from llmrec.knowledge.encode import encode_knowledge
from llmrec.knowledge.extract import KnowledgeRequest, extract, load_knowledge
from llmrec.llm import GenerationParams, LLMConfig, make_llm
from llmrec.llm.base import LLM


class QuickstartConfig(StrictConfig):
    world: SyntheticConfig = SyntheticConfig(n_users=300, n_items=300, impressions_per_user=80)
    llm: LLMConfig = LLMConfig(dtype="bfloat16")
    max_new_tokens: int = 48
    history_items: int = 8
    seeds: list[int] = [2021, 2022]
    model: ModelConfig = ModelConfig(hidden_units=[200, 200], dropout=0.2)
    trainer: TrainerConfig = TrainerConfig(batch_size=512, embedding_l2=0.005)
    work_dir: str | None = None  # knowledge shards and vectors; default LLMREC_HOME/quickstart/<world>
    progress: bool = True


def user_histories(data: RecData, rows: np.ndarray, limit: int) -> dict[str, list[str]]:
    """Most recent clicked items per user within ``rows`` (train period only: no leakage)."""
    cols = data.take(rows[np.argsort(data.columns[data.time][rows], kind="stable")])
    hist: dict[str, list[str]] = {}
    for u, i, y in zip(cols[data.user_col], cols[data.item_col], cols[data.label]):
        if y > 0:
            hist.setdefault(str(u), []).append(str(i))
    return {u: h[-limit:] for u, h in hist.items()}


def knowledge_requests(data: RecData, train_rows: np.ndarray, history_items: int) -> tuple[list, list]:
    items = [KnowledgeRequest(i, info) for i, info in sorted(data.item_info.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else kv[0])]
    hist = user_histories(data, train_rows, history_items)
    users = []
    for u, info in data.user_info.items():
        titles = [data.item_info[i]["title"] for i in hist.get(u, [])]
        history = "\n".join(f"- {t}" for t in titles) if titles else "- (no clicks yet)"
        users.append(KnowledgeRequest(u, {"profile": info["profile"], "history": history}))
    return items, users


def run_quickstart(config: QuickstartConfig | None = None, llm: LLM | None = None,
                   embedder: Embedder | None = None) -> dict:
    c = config or QuickstartConfig()
    t_start = time.perf_counter()
    data = generate_world(c.world)
    tr, va, te = data.chronological_split()
    work = Path(c.work_dir) if c.work_dir else llmrec_home() / "quickstart" / data.name
    llm = llm or make_llm(c.llm)
    embedder = embedder or default_embedder(cache_path=str(llmrec_home() / "embeddings.sqlite"))

    item_reqs, user_reqs = knowledge_requests(data, tr, c.history_items)
    params = GenerationParams(max_new_tokens=c.max_new_tokens)
    reports = [
        extract(llm, "item", "item_knowledge", item_reqs, work, params, progress=c.progress),
        extract(llm, "user", "user_preference", user_reqs, work, params, progress=c.progress),
    ]
    item_vecs = encode_knowledge(load_knowledge(work, "item"), embedder)
    user_vecs = encode_knowledge(load_knowledge(work, "user"), embedder)
    tables = {"item_knowledge": item_vecs, "user_knowledge": user_vecs}

    base_specs = [FeatureSpec(name=n, type=t) for n, t in data.fields.items()]
    know_specs = base_specs + [
        FeatureSpec(name="item_knowledge", type="dense", key=data.item_col, dim=embedder.dim),
        FeatureSpec(name="user_knowledge", type="dense", key=data.user_col, dim=embedder.dim),
    ]
    variants = {}
    for variant, specs in (("deepfm", base_specs), ("deepfm+knowledge", know_specs)):
        enc = FeatureEncoder(specs).fit(data.take(tr))
        batches = [enc.transform(data.take(rows), label=data.label, dense_tables=tables) for rows in (tr, va, te)]
        runs = []
        for seed in c.seeds:
            torch.manual_seed(seed)
            model = build_model(enc, c.model)
            trainer = Trainer(c.trainer.model_copy(update={"seed": seed, "progress": False}))
            fit = trainer.fit(model, batches[0], batches[1])
            test = trainer.evaluate(model, batches[2], groups=data.columns[data.user_col][te])
            runs.append({"seed": seed, "best_epoch": fit.best_epoch, "valid": fit.best_valid, "test": test,
                         "samples_per_second": fit.samples_per_second})
        variants[variant] = {
            "runs": runs,
            "test_auc_mean": float(np.mean([r["test"]["auc"] for r in runs])),
            "test_auc_std": float(np.std([r["test"]["auc"] for r in runs])),
            "test_logloss_mean": float(np.mean([r["test"]["logloss"] for r in runs])),
            "test_logloss_std": float(np.std([r["test"]["logloss"] for r in runs])),
            "test_gauc_mean": float(np.mean([r["test"]["gauc"] for r in runs])),
        }
    return {
        "job": "quickstart",
        "data": {"name": data.name, "rows": len(data), "train": len(tr), "valid": len(va), "test": len(te),
                 "positive_rate": float(data.columns[data.label].mean())},
        "llm": llm.model_id,
        "embedder": embedder.model_id,
        "extraction": [r.__dict__ | {"tokens_per_second": r.tokens_per_second} for r in reports],
        "variants": variants,
        "config": json.loads(c.model_dump_json()),
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform()},
        "seconds": time.perf_counter() - t_start,
    }
