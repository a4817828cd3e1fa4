"""The experiment harness: one runner for the CLI (``llmrec experiment``) and every recommender benchmark in
``eval/``. An experiment YAML (``configs/experiments/<name>.yaml``) names data sets, model variants, seeds
and peers::

    name: ctr_benchmark
    output: eval/results/ctr_benchmark.json
    seeds: [2021, 2022, 2023]
    datasets:
      ml100k: {data: {source: movielens100k, path: ${LLMREC_DATA}/ml-100k}, trainer: {batch_size: 1024}}
    variants:
      - {model: {name: deepfm}}
      - {label: deepfm:bucket, model: {name: deepfm, numeric_embedding: bucket}}
      - {label: deepfm@bf16, model: {name: deepfm}, trainer: {precision: bf16}}
    peers: [{library: fuxictr, model: deepfm}, {library: deepctr, model: deepfm}]

Each (data set, variant) becomes a ``TrainJobConfig`` (the same one ``llmrec train`` reads) and trains once
per seed; with ``isolate`` each runs in its own process so its peak RSS is that model's alone. Peers (other
libraries, in their own virtual environment) train on the identically encoded split. The result JSON has the
command, git commit, the fully resolved config of every job, the seeds and the environment, every run and a
mean ± std summary per variant; a bar plot of the primary metric is written beside it. Every finished
(data set, variant) and (data set, peer) is kept in ``<output>.partial.json``: a killed run resumes there."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
from pydantic import Field, ValidationError, model_validator

from llmrec.config import StrictConfig, deep_merge, repo_root, validation_message
from llmrec.ctr.features import FeatureEncoder, FeatureSpec
from llmrec.data.registry import DataConfig, load_data, split_rows
from llmrec.data.views import GraphViewConfig, SequenceViewConfig, graph_split_rows, user_sequences
from llmrec.errors import BackendError, ConfigError
from llmrec.experiments.kinds import ExperimentKind, load_kind, validate
from llmrec.experiments.paper_code import PAPER_CODE, PAPER_PYTHON, graph_split_arrays, peer_command
from llmrec.train_job import (KnowledgeFeatures, Prepared, TrainJobConfig, make_trainer, prepare,
                                     train_prepared)
from llmrec.experiments.runner import Runner
from llmrec.knowledge.job import KnowledgeJobConfig, run_extraction
from llmrec.llm.registry import LLMConfig
from llmrec.metrics import auc
from llmrec.results import pyplot, save_figure
from llmrec.threads import peak_rss_mb
from llmrec.train import PointwiseTask, TrainerConfig
from llmrec.train.sam import frequent_feature_eigenvalue
from llmrec.train.tasks import MultiLabelTaskConfig, ScoreMatrix


class DatasetSpec(StrictConfig):
    """One data set of an experiment: its data config, trainer overrides and the sequence / graph views."""
    data: DataConfig = DataConfig()
    features: list[FeatureSpec] | None = None
    trainer: TrainerConfig = TrainerConfig()
    sequence: SequenceViewConfig = SequenceViewConfig()
    graph: GraphViewConfig = GraphViewConfig()
    multilabel: MultiLabelTaskConfig = MultiLabelTaskConfig()


class KnowledgeGate(StrictConfig):
    """Keep knowledge only if it earns its place on validation data (never on test data).

    Every subset of ``knowledge.kinds`` (up to ``exhaustive_up_to`` kinds; beyond that, one backward-elimination
    pass) is trained over the seeds; the subset with the best mean validation AUC is kept only if it beats the
    backbone without knowledge by more than the noise, ``max(min_gain, se(subset) + se(backbone))`` with se the
    standard error over seeds. Kinds that only help together (an item vector and a user vector) are judged
    together. The decision and every score are reported."""
    min_gain: float = Field(0.001, ge=0.0)
    exhaustive_up_to: int = Field(4, ge=1)


class Variant(StrictConfig):
    """One model variant of an experiment: a model spec, trainer overrides, knowledge features and a label."""
    label: str | None = None  # default: the model name
    model: dict[str, Any]  # {name: ..., overrides}; resolved against the registry per job
    trainer: dict[str, Any] = {}  # overrides of the data set's trainer
    sequence: dict[str, Any] = {}  # overrides of the data set's sequence view (e.g. ``train: prefixes``)
    graph: dict[str, Any] = {}  # overrides of the data set's graph view (e.g. ``negatives: in_batch``)
    multilabel: dict[str, Any] = {}  # overrides of the multilabel task (e.g. ``masking: attribution``)
    knowledge: KnowledgeFeatures | None = None
    gate: KnowledgeGate | None = None  # validation gate over the knowledge kinds (needs ``knowledge``)

    @model_validator(mode="after")
    def _gate_needs_knowledge(self) -> "Variant":
        if self.gate is not None and self.knowledge is None:
            raise ValueError("gate: a validation gate needs knowledge to gate")
        return self

    @property
    def key(self) -> str:
        """The variant's name in results: its label, else its model name."""
        return self.label or str(self.model.get("name"))


PEER_MODELS = {"fuxictr": ("deepfm", "dcnv2", "din"), "deepctr": ("deepfm", "din"),
               "recbole": ("sasrec", "gru4rec", "bpr", "lightgcn", "ngcf"),
               "helen": ("dnn", "deepfm"),  # the Helen authors' repository (`make peers-code`)
               "cigf": ("cigf", "lightgcn")}  # the CIGF authors' repository (TF 1.14, `make peers-code`)
RECBOLE_GRAPH = {"bpr": "BPR", "lightgcn": "LightGCN", "ngcf": "NGCF"}  # RecBole's general recommenders
RECBOLE_STOPPING_STEP = 10  # RecBole 1.2.1's default stopping_step
PARITY_METRICS = {"recbole": ("ndcg@10", "ndcg@20", "recall@20"), "fuxictr": ("auc", "logloss"),
                  "deepctr": ("auc", "logloss"), "helen": ("auc", "logloss"), "cigf": ("ndcg@10", "recall@20")}
LOWER_IS_BETTER = {"logloss"}


class Peer(StrictConfig):
    """A peer library's model run on the same split with the settings of the variant it copies."""
    library: Literal["fuxictr", "deepctr", "recbole", "helen", "cigf"]
    model: Literal["deepfm", "dcnv2", "din", "sasrec", "gru4rec", "bpr", "lightgcn", "ngcf", "dnn", "cigf"] = "deepfm"
    variant: str | None = None  # the llmrec variant whose hyperparameters it copies (default: model name)
    optimizer: Literal["helen", "adam"] | None = None  # helen (the authors' code): their optimizer config

    @model_validator(mode="after")
    def _library_has_model(self) -> "Peer":
        if self.model not in PEER_MODELS[self.library]:
            raise ValueError(f"model: {self.library} runs {list(PEER_MODELS[self.library])} here, not {self.model!r}")
        if (self.optimizer is None) != (self.library != "helen"):
            raise ValueError("optimizer: set it (helen or adam) for the helen library and only there")
        return self

    @property
    def key(self) -> str:
        """How results name the peer: library:model, plus :optimizer for a paper's code."""
        return f"{self.library}:{self.model}" + (f":{self.optimizer}" if self.optimizer else "")


class KnowledgeExtraction(StrictConfig):
    """LLM knowledge extracted (cached, resumable) for every data set before its variants train; variants
    with ``knowledge`` and no ``dir`` read this extraction."""
    kinds: list[str] = ["item", "user"]
    llm: LLMConfig = LLMConfig(dtype="bfloat16")
    max_new_tokens: int = 48


class ExperimentConfig(StrictConfig):
    """A recommender experiment: data sets x variants x seeds, optional knowledge extraction and peers."""
    name: str
    output: str | None = None  # default eval/results/<name>.json
    seeds: list[int] = [2021, 2022, 2023]
    datasets: dict[str, DatasetSpec]
    variants: list[Variant]
    peers: list[Peer] = []
    knowledge: KnowledgeExtraction | None = None
    peer_python: str = ".venv-peers/bin/python"  # relative to the checkout
    isolate: bool = True  # one process per (data set, variant)
    # CTR: after training, the top Hessian eigenvalue w.r.t. the most frequent feature value's embedding
    # on 4,096 training rows (Helen's diagnostic, ``llmrec.train.sam.frequent_feature_eigenvalue``)
    sharpness_diagnostic: bool = False
    # CTR: test AUC apart for rows whose user had <= N training rows ("sparse") and the others ("dense")
    user_activity: int | None = Field(None, ge=0)
    # CTR: test AUC apart for each value of this data column (e.g. ``searched``: users with / without an
    # earlier search, QueryRec)
    test_by: str | None = None


def load_experiment(path_or_name: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """A recommender experiment by file or name (``configs/experiments/<name>.yaml``), ``--set`` overrides applied."""
    return load_kind(path_or_name, "recommender", overrides)


def _load(raw: dict, path: Path) -> ExperimentConfig:
    exp = validate(ExperimentConfig, raw, path)
    keys = [v.key for v in exp.variants]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ConfigError(f"{path}: variants: duplicate labels {dup}")
    for i, peer in enumerate(exp.peers):
        if (peer.variant or peer.model) not in keys:
            raise ConfigError(f"{path}: peers[{i}]: no variant {peer.variant or peer.model!r} to copy settings from")
    for ds in exp.datasets:  # every job resolves now: a typo fails before hours of training
        for v in exp.variants:
            job_config(exp, ds, v, exp.seeds[0])
    return exp


def job_config(exp: ExperimentConfig, dataset: str, variant: Variant, seed: int) -> TrainJobConfig:
    """The training job of one (data set, variant, seed) of an experiment."""
    ds = exp.datasets[dataset]
    # only what the experiment sets: the model's family fills the rest (TrainJobConfig)
    trainer = deep_merge(ds.trainer.model_dump(exclude_unset=True), {**variant.trainer, "seed": seed, "progress": False})
    knowledge = None if variant.knowledge is None else variant.knowledge.model_dump()
    if knowledge is not None and exp.knowledge is not None and "llm" not in variant.knowledge.model_fields_set:
        knowledge["llm"] = exp.knowledge.llm.model_dump()  # the experiment's own extraction
    try:
        return TrainJobConfig.model_validate({
            "data": ds.data.model_dump(), "features": None if ds.features is None else [f.model_dump() for f in ds.features],
            "knowledge": knowledge, "sequence": deep_merge(ds.sequence.model_dump(), variant.sequence),
            "graph": deep_merge(ds.graph.model_dump(), variant.graph),
            "multilabel": deep_merge(ds.multilabel.model_dump(), variant.multilabel),
            "model": variant.model, "trainer": trainer, "output_dir": f"runs/{exp.name}/{dataset}/{variant.key}"})
    except ValidationError as e:
        raise ConfigError(f"experiment {exp.name}: datasets.{dataset} x variant {variant.key}: "
                          f"{validation_message(e, '')}") from None


def train_flops_per_sample(model: torch.nn.Module) -> float:
    """~3x the forward FLOPs of every Linear layer (forward + two backward matmuls)."""
    return 3 * sum(2 * m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))


def _valid_mean_std(r: dict) -> tuple[float, float]:
    v = np.array([run["valid"][r["primary_metric"]] for run in r["runs"]], dtype=np.float64)
    return float(v.mean()), float(v.std())


def run_gated(exp: ExperimentConfig, dataset: str, variant: Variant, seeds: list[int]) -> dict:
    """A gated variant: the knowledge subsets ``KnowledgeGate`` compares, each over every seed; the chosen
    subset's runs are the variant's result, with the decision under ``gate``."""
    from itertools import combinations

    k, gate = variant.knowledge, variant.gate
    assert k is not None and gate is not None
    tried: dict[tuple[str, ...], dict] = {}

    def runs(kinds: tuple[str, ...]) -> dict:
        if kinds not in tried:
            kn = None if not kinds else k.model_copy(update={"kinds": list(kinds),
                                                             "shuffle": [x for x in k.shuffle if x in kinds]})
            tried[kinds] = run_variant(exp, dataset, variant.model_copy(update={"knowledge": kn, "gate": None}), seeds)
        return tried[kinds]

    def score(kinds: tuple[str, ...]) -> tuple[float, float]:  # mean, standard error over seeds
        mean, std = _valid_mean_std(runs(kinds))
        return mean, std / max(1.0, (len(seeds) - 1) ** 0.5)

    kinds = tuple(k.kinds)
    if len(kinds) <= gate.exhaustive_up_to:
        candidates = [c for n in range(1, len(kinds) + 1) for c in combinations(kinds, n)]
    else:  # backward elimination: drop a kind whenever validation does not fall without it
        kept = kinds
        for kind in kinds:
            without = tuple(x for x in kept if x != kind)
            if without and score(without)[0] >= score(kept)[0]:
                kept = without
        candidates = [kept]
    best = max(candidates, key=lambda c: score(c)[0])
    (b_mean, b_se), (base_mean, base_se) = score(best), score(())
    noise = max(gate.min_gain, b_se + base_se)
    chosen = best if b_mean > base_mean + noise else ()
    result = dict(runs(chosen))
    result["gate"] = {"kept": list(chosen), "candidate": list(best), "valid_candidate": b_mean,
                      "valid_backbone": base_mean, "noise": noise,
                      "valid_by_subset": {"+".join(s) or "(backbone)": _valid_mean_std(r)[0] for s, r in tried.items()},
                      "runs_trained": len(tried) * len(seeds)}
    return result


def run_variant(exp: ExperimentConfig, dataset: str, variant: Variant, seeds: list[int]) -> dict:
    """Every seed of one (data set, variant), in this process (a gated variant: ``run_gated``)."""
    if variant.gate is not None:
        return run_gated(exp, dataset, variant, seeds)
    first = job_config(exp, dataset, variant, seeds[0])
    p = prepare(first)
    runs, model = [], None
    for seed in seeds:
        job = job_config(exp, dataset, variant, seed)
        model, r = train_prepared(job, p)
        runs.append({"seed": seed, "best_epoch": r["best_epoch"], "valid": r["valid"], "test": r["test"],
                     "test_by_scenario": r["test_by_scenario"], "history": r["history"],
                     "train_samples_per_second": r["train_samples_per_second"], "model": r["model"],
                     **({"train_pairs_per_second": r["train_pairs_per_second"]} if r.get("train_pairs_per_second") else {}),
                     **({"epoch_seconds": r["epoch_seconds"]} if r.get("epoch_seconds") else {})})
        if exp.sharpness_diagnostic:
            sample = p.train.slice(torch.arange(min(len(p.train), 4096)))
            runs[-1]["sharpness"] = frequent_feature_eigenvalue(model, PointwiseTask().row_loss, sample)
        if exp.user_activity is not None:
            runs[-1]["test_by_user_activity"] = user_activity_auc(job, p, model, exp.user_activity)
        if exp.test_by is not None:
            runs[-1]["test_by_column"] = column_auc(job, p, model, exp.test_by)
    return {"runs": runs, "job": first.model_dump(mode="json"), "primary_metric": r["primary_metric"],
            "parameters": int(sum(q.numel() for q in model.parameters())),
            "train_flops_per_sample": train_flops_per_sample(model),
            "peak_rss_mb": peak_rss_mb()}


def user_activity_auc(job: TrainJobConfig, p: Prepared, model: torch.nn.Module, at_most: int) -> dict:
    """Test AUC and row count for rows whose user had <= ``at_most`` training rows ("sparse") and the rest
    ("dense"); users absent from training count as 0 rows."""
    tr, _, _ = split_rows(p.data, job.data)
    users, counts = np.unique(p.data.columns[p.data.user_col][tr], return_counts=True)
    seen = dict(zip(users.tolist(), counts.tolist()))
    n = np.array([seen.get(u, 0) for u in p.test_groups.tolist()])
    return _group_auc(job, p, model, {"sparse": n <= at_most, "dense": n > at_most})


def column_auc(job: TrainJobConfig, p: Prepared, model: torch.nn.Module, column: str) -> dict:
    """Test AUC and row count per value of a data column."""
    if column not in p.data.columns:
        raise ConfigError(f"test_by: {column!r} is not a column of {p.data.name}")
    _, _, te = split_rows(p.data, job.data)
    values = np.asarray(p.data.columns[column][te]).astype(str)
    return {"column": column, "groups": _group_auc(job, p, model, {v: values == v for v in sorted(set(values.tolist()))})}


def _group_auc(job: TrainJobConfig, p: Prepared, model: torch.nn.Module, groups: dict[str, np.ndarray]) -> dict:
    """Test AUC and row count of each group of test rows (a mask each); AUC None for an empty or one-class group."""
    pred, y = make_trainer(job, p).predict(model, p.test), p.test.label.numpy()
    out = {}
    for name, m in groups.items():
        a = auc(y[m], pred[m]) if m.any() else float("nan")
        out[name] = {"auc": None if np.isnan(a) else a, "rows": int(m.sum())}
    return out


def _summarize_groups(runs: list[dict], groups_of: Callable[[dict], dict], prefix: Callable[[str], str],
                      out: dict) -> None:
    """Mean / std over seeds of each group's AUC (seeds where it is None left out) into ``out``, keys
    ``<prefix(group)>_auc_mean`` / ``_std`` and ``_rows``."""
    for g, first in groups_of(runs[0]).items():
        v = np.array([groups_of(r)[g]["auc"] for r in runs if groups_of(r).get(g, {}).get("auc") is not None])
        out[f"{prefix(g)}_auc_mean"], out[f"{prefix(g)}_auc_std"] = ((float(v.mean()), float(v.std())) if len(v)
                                                                   else (None, None))
        out[f"{prefix(g)}_rows"] = first["rows"]


def summarize(runs: list[dict]) -> dict:
    """Mean and standard deviation over seeds of every test metric of a variant's runs."""
    out: dict[str, float] = {}
    for k in runs[0]["test"]:
        v = np.array([r["test"][k] for r in runs], dtype=np.float64)
        out[f"{k}_mean"], out[f"{k}_std"] = float(v.mean()), float(v.std())
    out["train_samples_per_second"] = float(np.median([r["train_samples_per_second"] for r in runs]))
    if all(r.get("train_pairs_per_second") for r in runs):  # sequential: (prefix -> next) pairs per second
        out["train_pairs_per_second"] = float(np.median([r["train_pairs_per_second"] for r in runs]))
    if all(r.get("epoch_seconds") for r in runs):  # training seconds per epoch (validation excluded)
        out["epoch_seconds"] = float(np.median([r["epoch_seconds"] for r in runs]))
    if all(r.get("sharpness") for r in runs):
        v = np.array([r["sharpness"]["top_eigenvalue"] for r in runs])
        out["top_eigenvalue_mean"], out["top_eigenvalue_std"] = float(v.mean()), float(v.std())
    if runs[0].get("test_by_user_activity"):
        _summarize_groups(runs, lambda r: r["test_by_user_activity"], lambda g: f"{g}_users", out)
    if runs[0].get("test_by_column"):
        col = runs[0]["test_by_column"]["column"]
        _summarize_groups(runs, lambda r: r["test_by_column"]["groups"], lambda g: f"{col}_{g}", out)
    if runs[0].get("test_by_scenario"):
        out["by_scenario_mean"] = {s: {k: float(np.mean([r["test_by_scenario"][s][k] for r in runs])) for k in m}
                                   for s, m in runs[0]["test_by_scenario"].items()}
    return out


def extract_knowledge(exp: ExperimentConfig, dataset: str) -> dict:
    """The experiment's LLM knowledge for one data set (rows already in the shards cost nothing)."""
    k = exp.knowledge
    t = time.perf_counter()
    report = run_extraction(KnowledgeJobConfig(data=exp.datasets[dataset].data, kinds=k.kinds, llm=k.llm,
                                               max_new_tokens=k.max_new_tokens))
    print(f"[{dataset}] knowledge ready in {time.perf_counter() - t:.1f} s:",
          [(r["kind"], r["cached"], r["generated"]) for r in report["extraction"]], flush=True)
    return report


def _run_isolated(exp: ExperimentConfig, dataset: str, variant: Variant, seeds: list[int]) -> dict:
    # only what the experiment set: a full dump would pin TrainerConfig's defaults over the model family's
    job = json.dumps({"experiment": exp.model_dump(mode="json", exclude_unset=True), "dataset": dataset,
                      "variant": variant.model_dump(mode="json", exclude_unset=True), "seeds": seeds})
    out = subprocess.run([sys.executable, "-m", "llmrec.experiments.harness", "--worker"], input=job,
                         capture_output=True, text=True)
    if out.returncode:
        raise BackendError(f"experiment {exp.name}: {dataset} x {variant.key} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def matmul_gflops(dtype: torch.dtype) -> float:
    """This machine's matmul rate at the MLP's shape (the denominator of ``matmul_utilization``)."""
    a, b = torch.randn(1024, 400, dtype=dtype), torch.randn(400, 400, dtype=dtype)
    for _ in range(5):
        a @ b
    t, n = time.perf_counter(), 200
    for _ in range(n):
        a @ b
    return 2 * 1024 * 400 * 400 * n / (time.perf_counter() - t) / 1e9


def export_split(enc: FeatureEncoder, p: Prepared, path: Path, hp: dict) -> Path:
    """Identically encoded per-field arrays for the peer libraries, plus the spec they read."""
    arrays, offsets = {}, enc.offsets()
    for part, b in zip(("train", "valid", "test"), (p.train, p.valid, p.test)):
        for k, s in enumerate(enc.categorical):
            arrays[f"{part}/{s.name}"] = (b.cat[:, k] - offsets[s.name]).numpy().astype(np.int64)
        for k, s in enumerate(enc.numerical):
            arrays[f"{part}/{s.name}"] = b.num[:, k].numpy().astype(np.float32)
        for s in enc.multi_hot:
            arrays[f"{part}/{s.name}"] = b.seq[s.name].numpy().astype(np.int64)
        for s in enc.behavior:  # ids within the target field + 1, 0 = padding
            v = b.seq[s.name].numpy().astype(np.int64)
            arrays[f"{part}/{s.name}"] = np.where(v > 0, v - offsets[s.target], 0)
        arrays[f"{part}/label"] = b.label.numpy().astype(np.float32)
    np.savez(path / "split.npz", **arrays)
    card = enc.cardinalities()
    feats = ([{"name": s.name, "type": "categorical", "vocab": card[s.name]} for s in enc.categorical]
             + [{"name": s.name, "type": "numerical"} for s in enc.numerical]
             + [{"name": s.name, "type": "multi_hot", "vocab": card[s.name], "max_len": s.max_len}
                for s in enc.multi_hot]
             + [{"name": s.name, "type": "behavior", "target": s.target, "vocab": card[s.target] + 1,
                 "max_len": s.max_len} for s in enc.behavior])
    (path / "spec.json").write_text(json.dumps({"features": feats, "hp": hp}))
    return path


def peer_hyperparameters(job: TrainJobConfig) -> dict:
    """The hyperparameters a peer library is given so it trains what the variant trains."""
    m = job.model.model_dump()
    t = job.trainer
    return {"embedding_dim": m["embedding_dim"], "hidden_units": m["hidden_units"], "dropout": m["dropout"],
            "batch_size": t.batch_size, "learning_rate": t.learning_rate, "embedding_l2": t.embedding_l2,
            "epochs": t.epochs, "patience": t.patience,
            **{k: m[k] for k in ("cross_layers", "structure", "low_rank", "experts", "attention_units", "activation",
                                 "attention_softmax") if k in m}}


def _settings(exp: ExperimentConfig, dataset: str, variant: Variant, seeds: list[int]) -> dict:
    return {"job": job_config(exp, dataset, variant, seeds[0]).model_dump(mode="json", exclude_defaults=True),
            "variant": variant.model_dump(mode="json", exclude_defaults=True), "seeds": seeds}


def run_peers(exp: ExperimentConfig, dataset: str, seeds: list[int], variants: list[str] | None = None,
              runner: Runner | None = None) -> dict:
    """Each peer on the split of the variant it copies; with ``variants``, only the peers of those variants;
    with ``runner``, a peer that already finished with the same settings is not run again."""
    root = repo_root() or Path.cwd()
    python = Path(exp.peer_python) if Path(exp.peer_python).is_absolute() else root / exp.peer_python
    if not exp.peers:
        return {}
    if not python.exists() and any(p.library not in PAPER_PYTHON for p in exp.peers):
        print(f"peers skipped: {python} not found (run `make peers`)", flush=True)
        return {}
    by_key = {v.key: v for v in exp.variants}
    out: dict[str, dict] = {}
    for peer in exp.peers:
        if variants and (peer.variant or peer.model) not in variants:
            continue
        base = by_key[peer.variant or peer.model]
        key = peer.key
        missing = [x for x in (PAPER_CODE.get(peer.library), PAPER_PYTHON.get(peer.library)) if x and not (root / x).exists()]
        if missing:
            print(f"peer {key} skipped: {', '.join(missing)} not found (run `make peers-code`)", flush=True)
            continue
        own = root / PAPER_PYTHON[peer.library] if peer.library in PAPER_PYTHON else python
        compute = (lambda peer=peer, base=base, own=own: run_peer(exp, dataset, peer, base, seeds, own, root))
        settings = {**_settings(exp, dataset, base, seeds), "peer": peer.model_dump(mode="json")}
        out[key] = (runner.cached({"label": f"{dataset}/peer/{key}", "settings": settings}, compute)
                    if runner is not None else compute())
    return out


def run_peer(exp: ExperimentConfig, dataset: str, peer: Peer, base: Variant, seeds: list[int], python: Path,
             root: Path) -> dict:
    """One peer library's model over every seed on the split of the variant ``base`` it copies."""
    job = job_config(exp, dataset, base, seeds[0])
    if peer.library == "recbole":
        run = run_recbole_graph if peer.model in RECBOLE_GRAPH else run_recbole
        return run(python, root, exp, dataset, base, seeds, peer.model)
    if peer.library == "cigf":
        return run_graph_paper_code(python, root, exp, dataset, peer, base, seeds)
    p = prepare(job)
    runs, rss = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        export_split(p.context, p, Path(tmp), peer_hyperparameters(job))
        for seed in seeds:
            cmd = peer_command(root, Path(tmp), peer.library, peer.model, seed, peer.optimizer)
            res = subprocess.run([str(python), *cmd], capture_output=True, text=True)
            if res.returncode:
                raise BackendError(f"peer {peer.key} failed:\n{(res.stderr or res.stdout)[-3000:]}")
            r = json.loads(res.stdout.strip().splitlines()[-1])
            rss = max(rss, r.pop("peak_rss_mb"))
            runs.append({"seed": seed, "test": {"auc": r.pop("auc"), "logloss": r.pop("logloss")},
                         "train_samples_per_second": r.pop("train_samples_per_second"), **r})
    out = {"runs": runs, "peak_rss_mb": rss, "primary_metric": "auc", **summarize(runs)}
    print(dataset, "peer", peer.key, round(out["auc_mean"], 4), flush=True)
    return out


def plot(results: dict, path: Path) -> None:
    """Horizontal bars of each data set's primary metric per variant and peer (zoomed axis, labelled as such);
    sequential runs add a row of training throughput ((prefix -> next) pairs per second, log axis)."""
    plt = pyplot()
    pairs = any("train_pairs_per_second" in v for r in results.values()
                for v in list(r["variants"].values()) + list(r["peers"].values()))
    height = 0.35 * max(len(r["variants"]) + len(r["peers"]) for r in results.values()) + 2
    fig, axes = plt.subplots(2 if pairs else 1, len(results), figsize=(7 * len(results), height * (2 if pairs else 1)),
                             squeeze=False)
    for ax, (ds, res) in zip(axes[1] if pairs else [], results.items()):
        rows = [(k, v) for k, v in res["variants"].items()] + [(f"peer:{k}", v) for k, v in res["peers"].items()]
        rows = [(k, v) for k, v in rows if v.get("train_pairs_per_second")]
        ax.barh([k for k, _ in rows], [v["train_pairs_per_second"] for _, v in rows],
                color=["tab:gray" if k.startswith("peer:") else "tab:blue" for k, _ in rows])
        ax.set_xscale("log")
        ax.set_xlabel("training (prefix -> next) pairs per second (median over seeds, log axis)")
        ax.set_title(f"{ds}: training throughput")
    for ax, (ds, res) in zip(axes[0], results.items()):
        rows = [(k, v) for k, v in res["variants"].items()] + [(f"peer:{k}", v) for k, v in res["peers"].items()]
        metrics = [v.get("primary_metric", "auc") for _, v in rows]
        ax.barh([f"{k} ({m})" for (k, _), m in zip(rows, metrics)], [v[f"{m}_mean"] for (_, v), m in zip(rows, metrics)],
                xerr=[v[f"{m}_std"] for (_, v), m in zip(rows, metrics)],
                color=["tab:blue"] * len(res["variants"]) + ["tab:gray"] * len(res["peers"]))
        vals = [v[f"{m}_mean"] for (_, v), m in zip(rows, metrics)]
        lo = max(0.0, min(vals) - 0.02)
        ax.set_xlim(lo, max(vals) + 0.01)  # differences are ~0.01: zoomed, and the label says so
        ax.set_xlabel(f"test {metrics[0]} (mean ± std over seeds; axis starts at {lo:.2f}, not 0)" if lo > 0
                      else f"test {metrics[0]} (mean ± std over seeds)")
        ax.set_title(f"{ds}: test primary metric (blue: llmrec, grey: peers)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    if task_aucs(results):
        plot_breakdown(results, lambda res: [(t, f"auc_{t}") for t in task_aucs({"": res})], "AUC per label",
                       path.with_name(path.stem + "_tasks.png"))
    if group_aucs(results):
        plot_breakdown(results, lambda res: [(g, f"{g}_auc") for g in group_aucs({"": res})],
                       "AUC per group of test rows", path.with_name(path.stem + "_groups.png"))


def task_aucs(results: dict) -> list[str]:
    """The tasks of a multi-label run (summaries with ``auc_<task>_mean``), in the order the runs report them."""
    for res in results.values():
        for v in res["variants"].values():
            names = [k[len("auc_"):-len("_mean")] for k in v if k.startswith("auc_") and k.endswith("_mean")
                     and k != "auc_mean"]
            if names:
                return names
    return []


def group_aucs(results: dict) -> list[str]:
    """The ``test_by`` groups of a run (summaries with ``<column>_<value>_auc_mean``), e.g. ``searched_yes``."""
    for res in results.values():
        for v in res["variants"].values():
            names = [k[: -len("_auc_mean")] for k in v if k.endswith("_auc_mean") and not k.startswith(("sparse_", "dense_"))
                     and v.get(k) is not None]
            if names:
                return names
    return []


def plot_breakdown(results: dict, series: Callable[[dict], list[tuple[str, str]]], title: str, path: Path) -> None:
    """Grouped horizontal bars of several AUCs per variant, one panel per data set (``series(its result)``:
    legend label, summary key without ``_mean`` / ``_std``)."""
    plt = pyplot()
    rows = max(len(r["variants"]) for r in results.values())
    width = max(len(series(r)) for r in results.values())
    fig, axes = plt.subplots(1, len(results), figsize=(8 * len(results), 0.3 * rows * width + 2), squeeze=False)
    for ax, (ds, res) in zip(axes[0], results.items()):
        names = list(res["variants"])
        have = [(lab, key) for lab, key in series(res) if all(res["variants"][n].get(f"{key}_mean") is not None
                                                         for n in names)]
        h = 0.8 / max(1, len(have))
        for j, (lab, key) in enumerate(have):
            ax.barh([i + j * h for i in range(len(names))], [res["variants"][n][f"{key}_mean"] for n in names],
                    height=h, xerr=[res["variants"][n][f"{key}_std"] for n in names], label=lab)
        ax.set_yticks([i + 0.4 - h / 2 for i in range(len(names))], names)
        vals = [res["variants"][n][f"{key}_mean"] for n in names for _, key in have] or [0.5]
        lo = max(0.0, min(vals) - 0.02)
        ax.set_xlim(lo, max(vals) + 0.01)
        ax.set_xlabel(f"test AUC (mean ± std over seeds; axis starts at {lo:.2f})")
        ax.set_title(f"{ds}: {title}")
        if have:
            ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def parity(exp: ExperimentConfig, results: dict) -> list[dict]:
    """Paired comparison of each variant with the peers that copy it, pooled over data sets (e.g. split seeds)
    and seeds: one pair = the same data set and seed in both libraries. Parity holds when the mean paired
    difference (ours - peer; for a lower-is-better metric, peer - ours) is within one standard deviation of
    the differences and never below -0.005. Time ratio = the peer's median training seconds per epoch (per
    sample where one side does not report epochs) over ours."""
    rows = []
    for peer in exp.peers:
        variant, key = peer.variant or peer.model, peer.key
        pairs: dict[str, list[float]] = {}
        ours_s, theirs_s, where = [], [], []
        for ds, res in results.items():
            ours, theirs = res["variants"].get(variant), res["peers"].get(key)
            if ours is None or theirs is None:
                continue
            where.append(ds)
            by_seed = {r["seed"]: r for r in theirs["runs"]}
            for run in ours["runs"]:
                other = by_seed.get(run["seed"])
                if other is None:
                    continue
                for m in PARITY_METRICS[peer.library]:
                    if m in run["test"] and m in other["test"]:
                        sign = -1.0 if m in LOWER_IS_BETTER else 1.0
                        pairs.setdefault(m, []).append(sign * (run["test"][m] - other["test"][m]))
                        pairs.setdefault(f"ours:{m}", []).append(run["test"][m])
                        pairs.setdefault(f"peer:{m}", []).append(other["test"][m])
            # one unit for both sides: seconds per training epoch where both report it, else per sample
            unit = "epoch_seconds" if ours.get("epoch_seconds") and theirs.get("epoch_seconds") else None
            for summary, out in ((ours, ours_s), (theirs, theirs_s)):
                if unit:
                    out.append(summary[unit])
                elif summary.get("train_samples_per_second"):
                    out.append(1.0 / summary["train_samples_per_second"])
        for m in PARITY_METRICS[peer.library]:
            d = np.array(pairs.get(m, []))
            if not len(d):
                continue
            mean, std = float(d.mean()), float(d.std(ddof=1)) if len(d) > 1 else 0.0
            ours_v, peer_v = np.array(pairs[f"ours:{m}"]), np.array(pairs[f"peer:{m}"])
            rows.append({"variant": variant, "peer": key, "metric": m, "datasets": where, "pairs": int(len(d)),
                         "ours_mean": float(ours_v.mean()), "ours_std": float(ours_v.std()),
                         "peer_mean": float(peer_v.mean()), "peer_std": float(peer_v.std()),
                         "diff_mean": mean, "diff_std": std, "diff_min": float(d.min()),
                         "parity": bool(mean >= -std and mean >= -0.005),
                         "time_ratio": (round(float(np.median(theirs_s) / np.median(ours_s)), 2)
                                        if ours_s and theirs_s else None)})
    return rows


def lean_curves(results: dict) -> None:
    """Every run's per-epoch history cut to what its curve needs (epoch, training loss, lr and the primary
    validation metric), in place: the result JSON keeps the curves, not every metric of every epoch."""
    for res in results.values():
        for summary in list(res["variants"].values()) + list(res["peers"].values()):
            m = summary.get("primary_metric")
            keep = {"epoch", "train_loss", "lr", m, f"valid_{m}"}
            for run in summary.get("runs", []):
                if run.get("history"):
                    run["history"] = [{k: v for k, v in h.items() if k in keep} for h in run["history"]]


def plot_curves(results: dict, path: Path) -> None:
    """Per-epoch validation curves of the primary metric: one panel per data set, every run of every variant
    (solid) and peer (dashed) that recorded one, a colour per series; a marker at each run's last epoch."""
    panels = [(ds, res) for ds, res in results.items()
              if any(r.get("history") for v in list(res["variants"].values()) + list(res["peers"].values())
                     for r in v["runs"])]
    if not panels:
        return
    plt = pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.2 * len(panels)), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (ds, res) in zip(axes[:, 0], panels):
        series = [(k, v, colours(i % 10)) for i, (k, v) in enumerate(res["variants"].items())]
        series += [(f"peer:{k}", v, colours((len(series) + i) % 10)) for i, (k, v) in enumerate(res["peers"].items())]
        for label, summary, colour in series:
            metric = summary.get("primary_metric", "ndcg@10")
            for n, run in enumerate(summary["runs"]):
                h = run.get("history") or []
                ys = [e.get(f"valid_{metric}", e.get(metric)) for e in h]
                if not ys or any(y is None for y in ys):
                    continue
                xs = [e["epoch"] for e in h]
                ax.plot(xs, ys, color=colour, lw=1, alpha=0.8, ls="--" if label.startswith("peer:") else "-",
                        label=label if n == 0 else None)
                ax.plot(xs[-1:], ys[-1:], "o", color=colour, ms=3)
        ax.set_title(f"{ds}: validation curves (dots: where each run stopped; dashed: peers)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation primary metric")
        ax.legend(loc="lower right", fontsize=7)
    save_figure(fig, path)


def recbole_hyperparameters(job: TrainJobConfig) -> dict:
    """The variant's model settings under RecBole's names (SASRec / GRU4Rec)."""
    m = job.model.model_dump()
    if m["name"] == "sasrec":
        return {"n_layers": m["n_layers"], "n_heads": m["n_heads"], "hidden_size": m["hidden_size"],
                "inner_size": m["inner_size"], "hidden_dropout_prob": m["hidden_dropout"],
                "attn_dropout_prob": m["attn_dropout"], "hidden_act": "gelu", "layer_norm_eps": 1e-12,
                "initializer_range": 0.02}
    if m["name"] == "gru4rec":
        return {"embedding_size": m["embedding_size"], "hidden_size": m["hidden_size"], "num_layers": m["n_layers"],
                "dropout_prob": m["dropout"]}
    raise ConfigError(f"peers: recbole copies sasrec or gru4rec variants, not {m['name']!r}")


def run_recbole(python: Path, root: Path, exp: ExperimentConfig, dataset: str, variant: Variant,
                seeds: list[int], model: str | None = None) -> dict:
    """RecBole's SASRec / GRU4Rec on the variant's exact sequences (``eval/peers/peer_recbole.py``), per seed."""
    runs = []
    for seed in seeds:
        job = job_config(exp, dataset, variant, seed)
        _, by_user, _ = user_sequences(load_data(job.data), job.sequence)
        t = job.trainer
        spec = {"model": job.model.name, "seed": seed, "max_len": job.sequence.max_len, "epochs": t.epochs,
                "patience": t.patience, "batch_size": t.batch_size, "learning_rate": t.learning_rate,
                "hyperparameters": recbole_hyperparameters(job), "sequences": {str(u): s for u, s in by_user.items()}}
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "in.json").write_text(json.dumps(spec))
            res = subprocess.run([str(python), str(root / "eval" / "peers" / "peer_recbole.py"), f"{tmp}/in.json",
                                  f"{tmp}/out.json"], capture_output=True, text=True,
                                 cwd=tmp)  # RecBole writes log_tensorboard/ into its working directory
            if res.returncode:
                raise BackendError(f"peer recbole:{job.model.name} failed:\n{res.stderr[-3000:]}")
            r = json.loads(Path(tmp, "out.json").read_text())
        runs.append({"seed": seed, "test": r["test"], "valid": r["valid"], "epochs": r["epochs"],
                     "train_samples_per_second": r["train_pairs_per_second"],
                     "train_pairs_per_second": r["train_pairs_per_second"], "parameters": r["parameters"],
                     "torch_threads": r.get("torch_threads"), "history": r.get("history", [])})
        print(dataset, "peer recbole", job.model.name, "seed", seed, "ndcg@10", round(r["test"]["ndcg@10"], 4),
              f"{r['train_pairs_per_second']:.0f} pairs/s", flush=True)
    return {"runs": runs, "version": r["version"], "primary_metric": "ndcg@10", **summarize(runs)}


def recbole_graph_hyperparameters(job: TrainJobConfig, model: str) -> dict:
    """RecBole's settings for BPR / LightGCN / NGCF copying the variant's width (and LightGCN's layers and
    L2); NGCF keeps RecBole's own defaults otherwise (three layers, message dropout 0.1)."""
    m = job.model.model_dump()
    hp: dict[str, Any] = {"embedding_size": m.get("embedding_dim", 64)}
    if model == "lightgcn":
        hp.update(n_layers=m.get("n_layers", 2), reg_weight=m.get("reg_weight", 1e-5),
                  require_pow=m.get("require_pow", False))
    if model == "ngcf":
        hp.update(hidden_size_list=[hp["embedding_size"]] * 3)
    return hp


def graph_split_files(job: TrainJobConfig) -> dict[str, list[list[str]]]:
    """The job's exact train / valid / test (user, item) rows, valid / test rows on items never trained on
    dropped (as llmrec's view drops them), for a peer to read as fixed benchmark files."""
    data = load_data(job.data)
    tr, va, te, _ = graph_split_rows(data, job.data.split, job.graph)
    users = np.asarray(data.columns[data.user_col]).astype(str)
    items = np.asarray(data.columns[data.item_col]).astype(str)
    known = set(items[tr])
    return {part: [[users[r], items[r]] for r in rows if part == "train" or items[r] in known]
            for part, rows in (("train", tr), ("valid", va), ("test", te))}


def run_recbole_graph(python: Path, root: Path, exp: ExperimentConfig, dataset: str, variant: Variant,
                      seeds: list[int], model: str) -> dict:
    """RecBole's BPR / LightGCN / NGCF on the variant's exact split (``eval/peers/peer_recbole.py``), per seed."""
    runs = []
    job = job_config(exp, dataset, variant, seeds[0])
    split = graph_split_files(job)
    for seed in seeds:
        t = job_config(exp, dataset, variant, seed).trainer
        # RecBole stops by its own rule, as its users run it (stopping_step 10 on single epochs, ties at 4
        # decimals count as gains); llmrec's graph family judges a 10-epoch mean (configs/defaults/families)
        spec = {"family": "graph", "model": model, "seed": seed, "epochs": t.epochs, "patience": RECBOLE_STOPPING_STEP,
                "batch_size": t.batch_size, "learning_rate": t.learning_rate,
                "hyperparameters": recbole_graph_hyperparameters(job, model), "split": split}
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "in.json").write_text(json.dumps(spec))
            res = subprocess.run([str(python), str(root / "eval" / "peers" / "peer_recbole.py"), f"{tmp}/in.json",
                                  f"{tmp}/out.json"], capture_output=True, text=True, cwd=tmp)
            if res.returncode:
                raise BackendError(f"peer recbole:{model} failed:\n{res.stderr[-3000:]}")
            r = json.loads(Path(tmp, "out.json").read_text())
        runs.append({"seed": seed, "test": r["test"], "valid": r["valid"], "epochs": r["epochs"],
                     "train_samples_per_second": r["train_pairs_per_second"],
                     "epoch_seconds": r["train_seconds"] / max(1, r["epochs"]), "parameters": r["parameters"],
                     "torch_threads": r.get("torch_threads"), "history": r.get("history", [])})
        print(dataset, "peer recbole", model, "seed", seed, "ndcg@20", round(r["test"]["ndcg@20"], 4),
              f"{runs[-1]['epoch_seconds']:.2f} s/epoch", flush=True)
    return {"runs": runs, "version": r["version"], "primary_metric": "ndcg@10", **summarize(runs)}


def run_graph_paper_code(python: Path, root: Path, exp: ExperimentConfig, dataset: str, peer: Peer, base: Variant,
                         seeds: list[int]) -> dict:
    """A paper's graph code (CIGF's, ``eval/peers/peer_cigf.py``) on the exact split of the variant ``base``,
    per seed: it trains, picks its epoch on validation and returns every user's item scores; llmrec's task
    evaluates those scores on validation and test as it evaluates its own models."""
    job = job_config(exp, dataset, base, seeds[0])
    p = prepare(job)
    ctx = make_trainer(job, p)  # the variant's own evaluation: its task, device and batch size
    task = ctx.task
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        split = Path(tmp, "split.npz")
        np.savez(split, **graph_split_arrays(p, len(job.graph.behaviours)))
        for seed in seeds:
            out = Path(tmp, f"out{seed}.npz")
            cmd = peer_command(root, Path(tmp), peer.library, peer.model, seed, None,
                               extra=[str(out), str(job_config(exp, dataset, base, seed).trainer.epochs)])
            res = subprocess.run([str(python), *cmd], capture_output=True, text=True,
                                 env={**os.environ, "LLMREC_THREADS": str(os.environ.get("LLMREC_THREADS", 1))})
            if res.returncode:
                raise BackendError(f"peer {peer.key} failed:\n{(res.stderr or res.stdout)[-3000:]}")
            r = np.load(out)
            model = ScoreMatrix(r["scores"])
            epochs = int(r["epochs"])
            runs.append({"seed": seed, "best_epoch": int(r["best_epoch"]), "epochs": epochs,
                         "valid": task.evaluate(model, p.valid, ctx), "test": task.evaluate(model, p.test, ctx),
                         "their_test": {"hit@10": float(r["their_test_hr"]), "ndcg@10": float(r["their_test_ndcg"])},
                         "valid_history": [float(x) for x in r["valid_ndcg10"]],
                         "epoch_seconds": float(r["train_seconds"]) / max(1, epochs),
                         "train_samples_per_second": 0.0, "embedding_dim": int(r["latdim"]) // 2,
                         "layers": int(r["layers"])})
            print(dataset, "peer", peer.key, "seed", seed, "ndcg@10", round(runs[-1]["test"]["ndcg@10"], 4),
                  f"best epoch {runs[-1]['best_epoch']}, {runs[-1]['epoch_seconds']:.2f} s/epoch", flush=True)
    return {"runs": runs, "primary_metric": "ndcg@10", **summarize(runs)}


def run_experiment(exp: ExperimentConfig, datasets: list[str] | None = None, variants: list[str] | None = None,
                   n_seeds: int | None = None, out: str | Path | None = None) -> dict:
    """Run an experiment (optionally a slice: data sets, variants, first N seeds) and write one result JSON and
    plot."""
    seeds = exp.seeds[:n_seeds] if n_seeds else exp.seeds
    unknown = sorted(set(datasets or []) - set(exp.datasets)) + sorted(set(variants or []) - {v.key for v in exp.variants})
    if unknown:
        raise ConfigError(f"experiment {exp.name}: unknown data sets / variants {unknown}")
    peaks = {"fp32_gflops_1024x400x400": matmul_gflops(torch.float32),
             "bf16_gflops_1024x400x400": matmul_gflops(torch.bfloat16)}
    results, jobs = {}, {}
    # every (data set, variant) and (data set, peer) is one item of the runner, keyed by the settings it ran
    # with (its resolved job, the seeds, the peer): editing or adding variants keeps the others' finished runs
    runner = Runner(exp, exp.name, out)
    for ds in datasets or list(exp.datasets):
        try:
            load_data(exp.datasets[ds].data)
        except (FileNotFoundError, OSError) as e:
            print(f"skip {ds}: {e}", flush=True)
            continue
        res: dict[str, Any] = {"variants": {}, "peers": {}}
        chosen = [v for v in exp.variants if not variants or v.key in variants]
        if exp.knowledge is not None and any(v.knowledge is not None and v.knowledge.source == "generated"
                                             and v.knowledge.dir is None for v in chosen):
            res["knowledge"] = extract_knowledge(exp, ds)  # only when a variant of this run reads it
        for v in exp.variants:
            if variants and v.key not in variants:
                continue
            r = runner.cached({"label": f"{ds}/variant/{v.key}", "settings": _settings(exp, ds, v, seeds)},
                              lambda v=v, ds=ds: _run_isolated(exp, ds, v, seeds) if exp.isolate
                              else run_variant(exp, ds, v, seeds))
            s = summarize(r["runs"])
            peak = peaks["bf16_gflops_1024x400x400" if r["job"]["trainer"]["precision"] == "bf16"
                         else "fp32_gflops_1024x400x400"]
            if "gate" in r:
                s["gate"] = r["gate"]
                print(ds, v.key, "gate kept", r["gate"]["kept"] or "no knowledge (backbone)", flush=True)
            s.update(primary_metric=r["primary_metric"], parameters=r["parameters"], peak_rss_mb=r["peak_rss_mb"], runs=r["runs"],
                     matmul_utilization=s["train_samples_per_second"] * r["train_flops_per_sample"] / 1e9 / peak)
            res["variants"][v.key] = s
            jobs[f"{ds}/{v.key}"] = r["job"]
            m = r["primary_metric"]
            print(ds, v.key, f"{m} {s[f'{m}_mean']:.4f} ± {s[f'{m}_std']:.4f}",
                  f"{s['train_samples_per_second']:.0f} samples/s", flush=True)
        res["peers"] = run_peers(exp, ds, seeds, variants, runner)
        results[ds] = res
    lean_curves(results)
    table = parity(exp, results)
    for row in table:
        print(f"parity {row['variant']} vs {row['peer']} {row['metric']}: diff {row['diff_mean']:+.4f} ± "
              f"{row['diff_std']:.4f} over {row['pairs']} pairs -> {'parity' if row['parity'] else 'NO parity'}; "
              f"time ratio {row['time_ratio']}", flush=True)
    def plots(png: Path) -> None:
        if results and all(r["variants"] for r in results.values()):
            plot(results, png)
            plot_curves(results, png.with_name(png.stem + "_curves.png"))

    path = runner.write({"experiment": exp.name, "matmul_peaks": peaks, "datasets": results, "jobs": jobs,
                         **({"parity": table} if table else {})}, plot=plots, seeds=seeds,
                        config=exp.model_dump(mode="json"))
    return {"output": str(path), "datasets": results}


KIND = ExperimentKind(load=_load, run=lambda exp, out=None: run_experiment(exp, out=out))


def _worker() -> None:
    job = json.loads(sys.stdin.read())
    exp = ExperimentConfig.model_validate(job["experiment"])
    print(json.dumps(run_variant(exp, job["dataset"], Variant.model_validate(job["variant"]), job["seeds"]),
                     default=float))


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    _worker()
