"""Every benchmark is an experiment config run by `llmrec experiment NAME`: the shipped configs load into their
kind's typed config, bad input names the field, and each non-recommender kind runs end to end on a slice."""
import json
from pathlib import Path
import subprocess

import pytest
from typer.testing import CliRunner

from conftest import shared
from llmrec.cli import app
from llmrec.errors import ConfigError
from llmrec.experiments.augment import AugmentExperiment
from llmrec.experiments.ctr_incremental import IncrementalCTRExperiment
from llmrec.experiments.ctr_assign import AssignExperiment
from llmrec.experiments.ctr_select import SelectExperiment
from llmrec.experiments.ctr_scale import ScaleExperiment
from llmrec.experiments.incremental import IncrementalExperiment
from llmrec.experiments.scaling import PerformanceLawExperiment
from llmrec.experiments.judge import JudgeExperiment
from llmrec.experiments.harness import ExperimentConfig, load_experiment
from llmrec.configfiles import config_dirs
from llmrec.experiments.kinds import EXPERIMENT_KINDS, load_any
from llmrec.experiments.memory import MemoryExperiment, load_memory_experiment
from llmrec.experiments.push import PushExperiment
from llmrec.experiments.session import SessionExperiment
from llmrec.experiments.diversify import DiversifyExperiment
from llmrec.experiments.graphrag import GraphRAGExperiment
from llmrec.experiments.rl import RLExperiment
from llmrec.experiments.rerank import RerankExperiment
from llmrec.experiments.research import ResearchExperiment

KIND_CLASSES = {"recommender": ExperimentConfig, "memory": MemoryExperiment, "rerank": RerankExperiment,
                "research": ResearchExperiment, "judge": JudgeExperiment, "augment": AugmentExperiment,
                "performance_law": PerformanceLawExperiment, "incremental": IncrementalExperiment,
                "ctr_scale": ScaleExperiment, "ctr_incremental": IncrementalCTRExperiment,
                "ctr_assign": AssignExperiment, "ctr_select": SelectExperiment, "push": PushExperiment,
                "session": SessionExperiment, "rl": RLExperiment,
                "diversify": DiversifyExperiment, "graphrag": GraphRAGExperiment}


def test_every_shipped_experiment_loads_into_its_kinds_config():
    names = sorted(p.stem for d in config_dirs() for p in (d / "experiments").glob("*.yaml"))
    assert {"ctr_benchmark", "knowledge_benchmark", "memory_locomo", "rerank_radio", "research_pdr"} <= set(names)
    seen = set()
    for name in names:
        kind, cfg = load_any(name)
        assert isinstance(cfg, KIND_CLASSES[kind]) and cfg.name == name
        seen.add(kind)
    assert seen == set(EXPERIMENT_KINDS.names())  # every registered kind has a shipped benchmark


def test_overrides_and_bad_input_name_the_field(tmp_path):
    _, cfg = load_any("rerank_radio", ["training.epochs=3", "variants=[radio]"])
    assert cfg.training.epochs == 3 and cfg.variants == ["radio"] and cfg.training.learning_rate == 1e-4
    with pytest.raises(ConfigError, match="training.epochs"):
        load_any("rerank_radio", ["training.epochs=many"])
    with pytest.raises(ConfigError, match="variants.0"):
        load_any("rerank_radio", ["variants=[bogus]"])
    with pytest.raises(ConfigError, match="a 'rerank' experiment, not a recommender experiment"):
        load_experiment("rerank_radio")
    with pytest.raises(ConfigError, match="conversations: \\['conv-44'\\] are not dev conversations"):
        load_memory_experiment("memory_locomo", ["conversations=[conv-44]"])  # held out: never on dev
    with pytest.raises(ConfigError, match="only: unknown methods \\['nope'\\]"):
        load_memory_experiment("memory_locomo", ["only=[nope]"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: magic\nname: x\n")
    with pytest.raises(ConfigError, match="kind: 'magic' is not an experiment kind"):
        load_any(bad)
    res = CliRunner().invoke(app, ["experiment", "rerank_radio", "--dataset", "ml100k"])
    assert res.exit_code == 2 and "select parts of recommender" in res.output


@pytest.mark.slow
def test_memory_experiment_on_one_dev_conversation(tmp_path):
    shared("locomo")
    out = tmp_path / "m.json"
    res = CliRunner().invoke(app, ["experiment", "memory_locomo", "--set", "conversations=[conv-26]",
                                   "--set", "digest=false", "--set", "only=[bm25_turn, memgas_hybrid]",
                                   "--set", "random_trials=5", "--set", "peers=[]", "--out", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["conversations"] == ["conv-26"] and r["config"]["split"] == "dev" and "git_commit" in r
    res_ = r["results"]
    assert set(res_) == {"bm25_turn", "memgas_hybrid", "random"}
    n = res_["random"]["n"]
    assert n > 50 and all(v["n"] == n for v in res_.values())
    for m in ("bm25_turn", "memgas_hybrid"):  # real retrieval beats the random floor by a wide margin
        assert res_[m]["overall"]["recall_any@5"] > res_["random"]["overall"]["recall_any@5"] + 0.2
    assert out.with_suffix(".png").exists()


@pytest.mark.slow
def test_mem0_peer_side_by_side(tmp_path):
    """mem0 storing every turn as is, with llmrec serve's MiniLM as its embedder, ranks sessions exactly as
    llmrec's dense turn retrieval does (same texts, same vectors): the side-by-side compares like with like."""
    shared("locomo")
    from llmrec.config import repo_root

    peers = (repo_root() or Path.cwd()) / ".venv-peers" / "bin" / "python"
    if not peers.exists() or subprocess.run([str(peers), "-c", "import mem0"], capture_output=True).returncode:
        pytest.skip("the peers environment with mem0ai is not built (make peers)")
    out = tmp_path / "m.json"
    res = CliRunner().invoke(app, ["experiment", "memory_locomo", "--set", "conversations=[conv-26]",
                                   "--set", "digest=false", "--set", "only=[dense_turn]", "--set", "random_trials=2",
                                   "--set", "peers=[{library: mem0}]", "--out", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    mine, theirs = r["results"]["dense_turn"], r["results"]["peer:mem0"]
    assert theirs["n"] == mine["n"] > 50
    assert theirs["overall"]["recall_all@5"] == pytest.approx(mine["overall"]["recall_all@5"], abs=0.01)
    assert r["peers"]["peer:mem0"]["memories"] == 419  # every turn of conv-26, none dropped


@pytest.mark.slow
def test_rerank_experiment_on_a_slice(tmp_path):
    shared("ares_nq_synthetic"), shared("mtrag_human_eval")
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["experiment", "rerank_radio", "--set", "train_queries=4", "--set", "test_queries=4",
                                   "--set", "answer_queries=1", "--set", "variants=[retrieval]", "--set", "seeds=[0]",
                                   "--set", f"work_dir={tmp_path / 'work'}", "--out", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["queries"]["train"] == 4 and r["queries"]["test"] == 4 and r["config"]["variants"] == ["retrieval"]
    assert r["training"]["retrieval"]["per_seed"]["0"]["steps"] >= 1 and r["seeds"] == [0]
    first = r["results"]["retriever only"]["test"]
    assert set(r["results"]) >= {"retriever only", "retrieval-labels fine-tuned"} and 0 <= first["ndcg@5"] <= 1


@pytest.mark.slow
def test_research_experiment_on_a_slice(tmp_path):
    for name in ("prefeval", "locomo", "ares_nq_synthetic", "mtrag_human_eval"):
        shared(name)
    out = tmp_path / "p.json"
    # the smallest slice that still runs every stage (both variants, panel, pairwise, calibration): the loop
    # itself is tested in tests/test_research.py; short generations, and float32 (2x faster than bfloat16 on
    # CPUs without bf16 units: a 900-token prompt took 24 s vs 48 s here), keep it to a few minutes on 2 cores
    res = CliRunner().invoke(app, ["experiment", "research_pdr", "--set", "tasks=2", "--set", "calibration_items=2",
                                   "--set", "research.max_iterations=1", "--set", "research.sub_queries=1",
                                   "--set", "research.max_new_tokens=24", "--set", "research.report_claims=2",
                                   "--set", "llm.dtype=float32", "--out", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["tasks"] == 2 and set(r["summary"]) == {"personalized", "no private stage"}
    assert r["runs"]["personalized"][0]["private_evidence"] >= 0 and r["config"]["max_iterations"] == 1
    assert r["config"]["sub_queries"] == 1 and r["judge_agreement_with_humans_mtrag"]
    assert r["pairwise_personalization"]["n"] == 2 and out.with_suffix(".png").exists()
