"""Memory benchmark settings and session ranking through the Retriever protocol: the methods of
``configs/experiments/memory_locomo.yaml`` (each a registered retriever with its config) and the helper that
turns any retriever's hits into a ranking of a user's sessions. Used by eval/memory_locomo.py,
eval/bench_memory.py and eval/memory_filter.py."""
from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from llmrec.config import StrictConfig
from llmrec.errors import ConfigError
from llmrec.experiments.harness import experiment_dirs
from llmrec.memory import retrievers  # noqa: F401  (registers the memory retrievers)
from llmrec.memory.api import Memory
from llmrec.config import validation_message
from llmrec.retrieval import Hit, Retriever, make_retriever, sessions_in_order


class MemoryMethod(StrictConfig):
    retriever: str
    config: dict[str, Any] = {}
    k: int | None = None  # None: every unit of the user (so every session is ranked)
    digest: bool = False  # needs the LLM-made summary / keywords units
    backfill: str | None = None  # another method whose ranking fills the sessions this one did not return


class MemoryExperiment(StrictConfig):
    name: str
    methods: dict[str, MemoryMethod]


def load_memory_experiment(name: str = "memory_locomo") -> MemoryExperiment:
    found = [d / f"{name}.yaml" for d in experiment_dirs() if (d / f"{name}.yaml").exists()]
    if not found:
        raise ConfigError(f"experiment {name!r}: no configs/experiments/{name}.yaml")
    try:
        exp = MemoryExperiment.model_validate(yaml.safe_load(found[0].read_text()))
    except ValidationError as e:
        raise ConfigError(f"{found[0]}: {validation_message(e, '')}") from None
    for label, m in exp.methods.items():
        if m.backfill is not None and m.backfill not in exp.methods:
            raise ConfigError(f"{found[0]}: methods.{label}.backfill: unknown method {m.backfill!r}")
    return exp


def build_retrievers(memory: Memory, exp: MemoryExperiment, digest: bool = True,
                     only: list[str] | None = None) -> dict[str, Retriever]:
    return {label: make_retriever(m.retriever, memory, m.config) for label, m in exp.methods.items()
            if (digest or not m.digest) and (only is None or label in only)}


def rank_sessions(hits: list[Hit], sessions: list[str], backfill: list[str] | None = None) -> list[str]:
    """Every session of the user, ranked: the hits' sessions by their best hit, then ``backfill``'s order,
    then session order."""
    ranked = sessions_in_order(hits)
    seen = set(ranked)
    for s in [*(backfill or []), *sessions]:
        if s not in seen:
            ranked.append(s)
            seen.add(s)
    return ranked
