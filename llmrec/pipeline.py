"""The quickstart job: synthetic world -> knowledge -> DeepFM with and without it -> metrics side by side,
written as JSON, with a plain verdict per knowledge variant (helped / within noise / hurt).

Three kinds of knowledge: generated (the bundled LLM writes about every item and user, MiniLM embeds the
text), encoder-role (the same item and user texts the prompts show, embedded directly, no generation), and
option scores (the LLM's probabilities of the world's six style words for every item and user, by likelihood;
transformers backend only)."""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from llmrec.config import StrictConfig, llmrec_home
from llmrec.ctr import FeatureEncoder, FeatureSpec
from llmrec.data.synthetic import THEMES, SyntheticConfig, generate_world
from llmrec.embed import Embedder, default_embedder
from llmrec.data.registry import DataConfig
from llmrec.knowledge.encode import encoder_slug
from llmrec.knowledge.text import option_knowledge, text_knowledge
from llmrec.knowledge.job import (KnowledgeJobConfig, knowledge_feature_name, knowledge_specs, knowledge_tables,
                                  run_extraction)
from llmrec.llm import LLMConfig, make_llm
from llmrec.llm.base import LLM
from llmrec.models import build_model
from llmrec.models.registry import ModelSpec
from llmrec.train import Trainer, TrainerConfig


class QuickstartConfig(StrictConfig):
    """The quickstart: synthetic world size, LLM, generation length, seeds and work folder."""
    world: SyntheticConfig = SyntheticConfig(n_users=300, n_items=300, impressions_per_user=80)
    llm: LLMConfig = LLMConfig(dtype="bfloat16")
    max_new_tokens: int = 48
    history_items: int = 8
    seeds: list[int] = [2021, 2022]
    model: ModelSpec = Field({"name": "deepfm", "hidden_units": [200, 200], "dropout": 0.2}, validate_default=True)
    trainer: TrainerConfig = TrainerConfig(batch_size=512, embedding_l2=0.005)
    work_dir: str | None = None  # knowledge shards and text/option vectors; default under LLMREC_HOME/knowledge/<world>/
    progress: bool = True


def verdict(v: dict, base: dict) -> str:
    """helped / within noise / hurt: the test AUC gain against the larger seed spread (at least 0.002)."""
    gain = v["test_auc_mean"] - base["test_auc_mean"]
    noise = max(0.002, v["test_auc_std"], base["test_auc_std"])
    if gain > noise:
        return f"helped: AUC {gain:+.4f} (noise ~{noise:.4f})"
    if gain < -noise:
        return f"did not help, it hurt: AUC {gain:+.4f} (noise ~{noise:.4f})"
    return f"did not help: AUC {gain:+.4f} is within the noise (~{noise:.4f})"


def run_quickstart(config: QuickstartConfig | None = None, llm: LLM | None = None,
                   embedder: Embedder | None = None) -> dict:
    """The main job: extract LLM knowledge on the synthetic world, train DeepFM with and without it over the
    seeds, and report both."""
    c = config or QuickstartConfig()
    t_start = time.perf_counter()
    data = generate_world(c.world)
    tr, va, te = data.chronological_split()
    embedder = embedder or default_embedder(cache_path=str(llmrec_home() / "embeddings.sqlite"))
    job = KnowledgeJobConfig(data=DataConfig(synthetic=c.world), kinds=["item", "user"], llm=c.llm,
                             out_dir=c.work_dir, max_new_tokens=c.max_new_tokens, history_items=c.history_items,
                             progress=c.progress)
    llm = llm or make_llm(c.llm)
    knowledge = run_extraction(job, llm=llm, embedder=embedder, data=data)
    tabs = knowledge_tables(knowledge["out_dir"], ["item", "user"], encoder_slug(embedder.model_id))
    tables = {knowledge_feature_name(k): v for k, v in tabs.items()}
    # with a work dir every cache of this run lives there; otherwise under LLMREC_HOME/knowledge/<world>/
    text_cache = Path(c.work_dir) / "text" if c.work_dir else None
    option_cache = Path(c.work_dir) / "options" if c.work_dir else None
    text_tabs = text_knowledge(data, tr, ["item", "user"], embedder, c.history_items, cache_dir=text_cache)
    text_tables = {knowledge_feature_name(k): v for k, v in text_tabs.items()}
    scoring: dict = {}
    option_tabs = None
    if hasattr(llm, "score_options"):  # the LLM scores the world's style words for every item and user
        option_tabs = option_knowledge(data, tr, ["item", "user"], llm, list(THEMES), c.history_items,
                                       cache_dir=option_cache, report=scoring)

    base_specs = [FeatureSpec(name=n, type=t) for n, t in data.fields.items()]
    know_specs = base_specs + knowledge_specs(data, tabs)
    text_specs = base_specs + knowledge_specs(data, text_tabs)
    variants = {}
    plan = [("deepfm", base_specs, tables), ("deepfm+knowledge", know_specs, tables),
            ("deepfm+text knowledge", text_specs, text_tables)]
    if option_tabs is not None:
        plan.append(("deepfm+LLM option scores", base_specs + knowledge_specs(data, option_tabs),
                     {knowledge_feature_name(k): v for k, v in option_tabs.items()}))
    for variant, specs, tables_v in plan:
        enc = FeatureEncoder(specs).fit(data.take(tr))
        batches = [enc.transform(data.take(rows), label=data.label, dense_tables=tables_v) for rows in (tr, va, te)]
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
    base = variants["deepfm"]
    for name, v in variants.items():
        if name != "deepfm":
            v["verdict"] = verdict(v, base)
    return {
        "job": "quickstart",
        "data": {"name": data.name, "rows": len(data), "train": len(tr), "valid": len(va), "test": len(te),
                 "positive_rate": float(data.columns[data.label].mean())},
        "llm": knowledge["model_id"],
        "embedder": embedder.model_id,
        "knowledge_dir": knowledge["out_dir"],
        "extraction": knowledge["extraction"],
        "option_scoring": {"options": list(THEMES), **scoring},
        "variants": variants,
        "config": json.loads(c.model_dump_json()),
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform()},
        "seconds": time.perf_counter() - t_start,
    }
